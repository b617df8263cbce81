"""Forward + backward time of every focalcal loss as a ratio to torch's cross-entropy.

    python benchmarks/bench_losses.py            # all sizes, CPU
    python benchmarks/bench_losses.py --sizes 128x10
    python benchmarks/bench_losses.py --device cuda --sync-debug

Every loss is timed side by side in one process, with torch's default thread count, in rounds
that visit the losses in a shuffled order; a round times a loop of calls lasting about
``--min-time`` seconds per loss. A loss's ratio is the median over rounds of its time divided
by cross-entropy's time in the same round: a shared machine's speed drifts over seconds, and
pairing within a round cancels the drift. The goals of
issues 2 and 17 are checked at the end (those of the sizes run); the exit status is 1 if one is
missed.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys

import torch
import torch.nn.functional as F
from _timing import Goals, machine, paired_times
from _timing import ratio as paired_ratio

from focalcal.losses import _focal_paths, build_loss

SIZES = {"128x10": (128, 10), "128x100": (128, 100), "1024x1000": (1024, 1000)}
SIZES["8x21x64x64"] = (8, 21, 64, 64)  # segmentation-shaped
NAMES = [
    "ce",
    "fl-3",
    "flsd-53",
    "flsd-532",
    "flsc-531",
    "brier",
    "ls-0.05",
    "mmce",
    "mmce-weighted",
]


PAPER_GAMMAS = {0.2: 5.0, 0.5: 3.0}  # the paper's code: γ by the first threshold above p_t


def paper_style_flsd53(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """FLSD-53 as the paper's code computes it: a Python loop over the samples reads each p_t
    with ``.item()`` and looks its γ up in a dict; the list then becomes a tensor."""
    if logits.dim() > 2:
        logits = logits.flatten(2).transpose(1, 2).reshape(-1, logits.shape[1])
    log_pt = F.log_softmax(logits, dim=1).gather(1, target.reshape(-1, 1)).view(-1)
    pt = log_pt.exp()
    gammas = []
    for i in range(pt.shape[0]):
        p = pt[i].item()
        if p >= 0.5:
            gammas.append(3.0)
            continue
        for threshold in sorted(PAPER_GAMMAS):
            if p < threshold:
                gammas.append(PAPER_GAMMAS[threshold])
                break
    gamma = torch.tensor(gammas).to(logits.device)
    return (-((1 - pt) ** gamma) * log_pt).mean()


BASELINE = "torch cross_entropy"


def on_torch_path(loss):
    """``loss`` with every input on the focal losses' torch path (small 2-D CPU logits take
    NumPy's otherwise: src/focalcal/losses/_focal_paths.py)."""

    def call(logits, target):
        small, _focal_paths.SMALL = _focal_paths.SMALL, 0
        try:
            return loss(logits, target)
        finally:
            _focal_paths.SMALL = small

    return call


def candidates() -> dict[str, object]:
    losses: dict[str, object] = {BASELINE: F.cross_entropy}
    losses.update({f"focalcal {name}": build_loss(name) for name in NAMES})
    losses["focalcal flsd-53, torch path"] = on_torch_path(build_loss("flsd-53"))
    losses["paper-style loop FLSD-53"] = paper_style_flsd53
    return losses


def time_all(shape, device, rounds, min_time):
    """Seconds per forward + backward of every candidate, one value per round."""
    g = torch.Generator().manual_seed(0)
    logits = (2 * torch.randn(shape, generator=g)).to(device).requires_grad_()
    n, c, *rest = shape
    target = torch.randint(c, (n, *rest), generator=g).to(device)

    def step(fn):
        fn(logits, target).backward()
        logits.grad = None

    steps = {name: functools.partial(step, fn) for name, fn in candidates().items()}
    sync = torch.cuda.synchronize if device.startswith("cuda") else lambda: None
    return paired_times(steps, rounds, min_time, sync)


def check_no_sync(device: str) -> None:
    """Run every loss under ``torch.cuda.set_sync_debug_mode("error")``."""
    logits = torch.randn(64, 10, device=device, requires_grad=True)
    target = torch.randint(10, (64,), device=device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for name in NAMES:
            build_loss(name).to(device)(logits, target).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    print(f"sync-debug: all {len(NAMES)} losses ran with set_sync_debug_mode('error')")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--min-time", type=float, default=0.02)
    parser.add_argument("--sync-debug", action="store_true", help="CUDA: no host sync in losses")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    args = parser.parse_args()
    if args.sync_debug:
        check_no_sync(args.device)

    print(machine(args.device))
    sizes = [size for size in SIZES if size in args.sizes]
    results = {size: time_all(SIZES[size], args.device, args.rounds, args.min_time)
               for size in sizes}  # fmt: skip

    def ratio(size: str, name: str, to: str = BASELINE) -> float:
        return paired_ratio(results[size], name, to)

    print("| loss | " + " | ".join(sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for name in candidates():
        cells = [f"{ratio(size, name):.2f}x ({statistics.median(results[size][name]) * 1e6:.0f} µs)"
                 for size in sizes]  # fmt: skip
        print(f"| {name} | " + " | ".join(cells) + " |")

    paths = (ratio(size, "focalcal flsd-53", "focalcal flsd-53, torch path") for size in sizes)
    print("\nFLSD-53 as dispatched / on the torch path: " + ", ".join(
        f"{r:.2f} ({size})" for size, r in zip(sizes, paths, strict=True)))  # fmt: skip
    goals = Goals()
    print("\nGoals (median of per-round ratios):")
    for size in sizes:
        r = ratio(size, "focalcal flsd-53", "focalcal fl-3")
        goals.check(r <= 1.3, f"{size}: FLSD-53 / FL-3 = {r:.2f} <= 1.3")
    for size, bound in (("128x10", 2.0), ("1024x1000", 1.5), ("8x21x64x64", 1.5)):
        for name in ("fl-3", "flsd-53") if size in results else ():
            r = ratio(size, f"focalcal {name}")
            goals.check(r <= bound, f"{size}: {name} / CE = {r:.2f} <= {bound}")
    if "128x10" in results:
        r = ratio("128x10", "paper-style loop FLSD-53", "focalcal flsd-53")
        goals.check(r >= 3.0, f"128x10: FLSD-53 is {r:.1f}x faster than the per-sample loop (>= 3)")
    return 1 if goals.missed else 0


if __name__ == "__main__":
    sys.exit(main())
