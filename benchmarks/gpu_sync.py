"""Host synchronisations: every registered loss (forward + backward), every calibration metric
and ``CalibrationAccumulator.update``, at a classification and a segmentation shape.

    python benchmarks/gpu_sync.py --device cuda --json sync.json   # Markdown on stdout
    python benchmarks/gpu_sync.py --device cpu --tiny              # the same calls, unchecked

On CUDA each call runs once to warm up, then under ``torch.cuda.set_sync_debug_mode("error")``:
a call that synchronises raises there, and is run again under ``"warn"`` to list every line of
focalcal that synchronised (``file:line``, how many times). A loss must not synchronise; a
metric may (it checks its inputs and returns numbers), and the table says where. The CPU has no
such mode: the same calls run, so that they cannot rot, and read "ran (CPU: not checked)".
The goals are checked at the end; the exit status is 1 if one is missed.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _timing import Goals, machine
from torch import Tensor

import focalcal
from focalcal import metrics
from focalcal.losses import build_loss, loss_names
from focalcal.losses.hooks import EpochAware, EpochStart

SHAPES = {"128x10": (128, 10), "8x21x64x64": (8, 21, 64, 64)}
TINY_SHAPES = {"16x10": (16, 10), "2x5x8x8": (2, 5, 8, 8)}
EXAMPLES = {"fl-<x>": "fl-3", "ls-<x>": "ls-0.05", "dual-focal-<x>": "dual-focal-5"}
METRICS: dict[str, Callable[[Tensor, Tensor], object]] = {
    "reliability_bins": metrics.reliability_bins,
    "expected_calibration_error": metrics.expected_calibration_error,
    "maximum_calibration_error": metrics.maximum_calibration_error,
    "signed_calibration_error": metrics.signed_calibration_error,
    "adaptive_calibration_error": metrics.adaptive_calibration_error,
    "classwise_calibration_error": metrics.classwise_calibration_error,
    "negative_log_likelihood": metrics.negative_log_likelihood,
    "brier_score": metrics.brier_score,
    "error_rate": metrics.error_rate,
    "debiased_calibration_error": metrics.debiased_calibration_error,
    "smooth_calibration_error": metrics.smooth_calibration_error,
    "calibration_report": metrics.calibration_report,
}
SYNC_MESSAGE = "called a synchronizing CUDA operation"
PACKAGE = Path(focalcal.__file__).parent


def loss_call(name: str, logits: Tensor, target: Tensor) -> Callable[[], object]:
    criterion = build_loss(name).to(logits.device)

    def call() -> None:
        criterion(logits, target).backward()
        logits.grad = None

    return call


def hook_call(name: str, logits: Tensor, target: Tensor) -> Callable[[], object] | None:
    """The loss's once-per-epoch hook (``None`` for a loss without one)."""
    criterion = build_loss(name).to(logits.device)
    if not isinstance(criterion, EpochAware):
        return None
    scores, labels = logits.detach().movedim(1, -1).reshape(-1, logits.shape[1]), target.flatten()
    return lambda: criterion.start_epoch(EpochStart(1, 10, scores, labels))


def accumulator_call(logits: Tensor, target: Tensor, compute: bool) -> Callable[[], object]:
    accumulator = metrics.CalibrationAccumulator(logits.shape[1])
    if compute:
        accumulator.update(logits, target)
        return accumulator.compute
    return lambda: accumulator.update(logits, target)


def calls(shape: tuple[int, ...], device: str) -> dict[str, tuple[str, Callable[[], object]]]:
    """Every checked call at ``shape``: its name -> (kind, call)."""
    generator = torch.Generator().manual_seed(0)
    logits = (2 * torch.randn(shape, generator=generator)).to(device)
    n, c, *rest = shape
    target = torch.randint(c, (n, *rest), generator=generator).to(device)
    found: dict[str, tuple[str, Callable[[], object]]] = {}
    for registered in loss_names():
        name = EXAMPLES.get(registered, registered)
        found[name] = ("loss", loss_call(name, logits.clone().requires_grad_(), target))
        hook = hook_call(name, logits, target)
        if hook is not None:
            found[f"{name} start_epoch"] = ("loss hook", hook)
    for name, metric in METRICS.items():
        found[name] = ("metric", lambda metric=metric: metric(logits, target))  # type: ignore[misc]
    for compute in (False, True):
        name = f"CalibrationAccumulator.{'compute' if compute else 'update'}"
        found[name] = ("metric", accumulator_call(logits, target, compute))
    return found


def site(frames: traceback.StackSummary) -> str:
    """The innermost line of focalcal among ``frames`` (else the innermost line)."""
    ours = [f for f in frames if Path(f.filename).is_relative_to(PACKAGE)]
    frame = (ours or list(frames))[-1]
    where = Path(frame.filename)
    where = where.relative_to(PACKAGE.parent) if where.is_relative_to(PACKAGE) else where
    return f"{where}:{frame.lineno} ({frame.name})"


def sync_sites(call: Callable[[], object]) -> collections.Counter[str]:
    """Every line that synchronised during ``call``, with its count (CUDA's "warn" mode)."""
    sites: collections.Counter[str] = collections.Counter()

    def record(message: Any, *args: Any, **kwargs: Any) -> None:
        if SYNC_MESSAGE in str(message):  # the stack below the warnings module's frames
            frames = [f for f in traceback.extract_stack() if f.filename != warnings.__file__]
            sites[site(traceback.StackSummary.from_list(frames[:-1]))] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            call()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sites


def check(call: Callable[[], object], cuda: bool) -> dict[str, Any]:
    """Run ``call``: ``status`` is "no sync", "syncs" (with ``first`` and ``sites``), "ran
    (CPU: not checked)" or "error" (with ``error``)."""
    try:
        call()  # warm-up: lazy initialisation is not a step's cost
        if not cuda:
            return {"status": "ran (CPU: not checked)"}
        torch.cuda.set_sync_debug_mode("error")
        try:
            call()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return {"status": "no sync"}
    except RuntimeError as error:
        if not cuda or SYNC_MESSAGE not in str(error):
            return {"status": "error", "error": f"{type(error).__name__}: {error}"}
        first = site(traceback.extract_tb(error.__traceback__))
        return {"status": "syncs", "first": first, "sites": dict(sync_sites(call))}
    except Exception as error:  # recorded, so that the other calls still run
        return {"status": "error", "error": f"{type(error).__name__}: {error}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help=f"shapes {', '.join(TINY_SHAPES)}")
    parser.add_argument("--json", help="write every result to this file")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch.cuda.is_available() is False here")
    shapes = TINY_SHAPES if args.tiny else SHAPES
    results = []
    for shape_name, shape in shapes.items():
        for name, (kind, call) in calls(shape, args.device).items():
            results.append({"call": name, "kind": kind, "shape": shape_name, **check(call, cuda)})

    mode = 'set_sync_debug_mode("error")' if cuda else "the CPU, where no sync mode exists"
    print(f"{machine(args.device)}\nHost syncs under {mode}:\n")
    print("| call | kind | shape | result | where |")
    print("|---|---|---|---|---|")
    for r in results:
        where = r.get("error") or "; ".join(f"{s} ×{n}" for s, n in r.get("sites", {}).items())
        print(f"| {r['call']} | {r['kind']} | {r['shape']} | {r['status']} | {where} |")
    losses = [r for r in results if r["kind"] == "loss"]
    errors = [r for r in results if r["status"] == "error"]
    goals = Goals()
    print()
    if cuda:  # a metric and a loss's once-per-epoch hook may synchronise; a loss may not
        syncing = [r for r in losses if r["status"] != "no sync"]
        goals.check(not syncing, f"no host sync in a loss: {len(losses) - len(syncing)} of "
                    f"{len(losses)} loss calls (forward + backward)")  # fmt: skip
    goals.check(not errors, f"every call ran: {len(results) - len(errors)} of {len(results)}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"device": args.device, "results": results}, indent=2)
        )
    return 1 if goals.missed else 0


if __name__ == "__main__":
    sys.exit(main())
