"""Peak extra memory of calibration_report and Classwise-ECE, as a multiple of the input's size,
side by side: in one pass (the whole input as one chunk, as before issue 13) and in chunks.

    python benchmarks/bench_memory.py            # up to 4 GB of logits: 5 minutes, ~9 GB RAM
    python benchmarks/bench_memory.py --small    # a tenth of the rows, 2 minutes

Every case runs in a fresh subprocess: it warms the metric up on a tiny input (torch's lazily
made thread pool and kernels are not the input's doing), fills float32 logits and int64 labels
in place (no temporary copies), reads its resident set size (RSS), calls the metric once and
reads the peak RSS (``VmHWM``). Extra memory is the peak minus the RSS after making the
input; the input's size is the logits' bytes. The chunked cases run twice: with glibc's default
allocator, whose heap keeps freed blocks of up to 32 MiB and fragments by the threads' timing
(so below that size the figure varies from run to run), and with ``MALLOC_MMAP_THRESHOLD_``
fixed at 1 MiB, where every larger block is returned on free and RSS follows the live memory
(the one-pass cases run this way only). One pass is left out where it would need more than
``--max-gib`` of memory. The goal of issue 13 (extra <= 2x the input, chunked) is checked at
the end; the exit status is 1 if one is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import torch
from _timing import Goals, machine

import focalcal.metrics as metrics
import focalcal.metrics._inputs as inputs

BOUNDED = ["calibration_report", "classwise_ece"]  # issue 13's: chunked, checked against 2x
OTHERS = ["ece", "adaece", "mce", "debiased_calibration_error", "smooth_calibration_error"]
OTHERS += ["error_rate", "nll", "brier_score"]  # and entropy and a C = 2 report, below
SIZES = [(5_000_000, 10), (100_000, 1_000), (1_000_000, 1_000)]
ONE_PASS_FACTOR = 8  # one pass took up to 7.4x the input beyond it
MIB = 2**20


def rss_bytes() -> int:
    """The current resident set size (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def peak_rss_bytes() -> int:
    """The peak RSS of this process's memory (Linux ``VmHWM``). Not ``ru_maxrss``: a process
    started by ``vfork`` and ``exec`` (as ``subprocess`` does) inherits its parent's in it."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024  # kB


def measure(metric: str, n: int, c: int, one_pass: bool) -> dict[str, int]:
    """In this process: the input's bytes and the peak extra memory of one call."""
    if one_pass:
        inputs.CHUNK_ELEMENTS = n * c

    def fn(logits: torch.Tensor, labels: torch.Tensor) -> object:
        if metric == "entropy":
            return metrics.entropy(logits)
        return getattr(metrics, metric)(logits, labels)

    fn(torch.randn(64, c), torch.randint(c, (64,)))  # warm-up
    g = torch.Generator().manual_seed(0)
    logits = torch.empty(n, c).normal_(generator=g).mul_(3)
    labels = torch.randint(c, (n,), generator=g)
    before = rss_bytes()
    fn(logits, labels)
    return {"input": logits.nbytes, "extra": peak_rss_bytes() - before}


def in_subprocess(metric: str, n: int, c: int, one_pass: bool, live: bool) -> dict[str, int]:
    command = [sys.executable, __file__, "--child", metric, str(n), str(c), str(int(one_pass))]
    env = {**os.environ, **({"MALLOC_MMAP_THRESHOLD_": str(MIB)} if live else {})}
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(out.splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a tenth of the rows")
    parser.add_argument("--max-gib", type=float, default=12.0, help="memory for one pass")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        metric, n, c, one_pass = args.child
        print(json.dumps(measure(metric, int(n), int(c), one_pass == "1")))
        return 0
    print(machine("cpu"))
    sizes = [(n // 10, c) for n, c in SIZES] if args.small else SIZES
    print("| metric | float32 logits | input | one pass | ÷ input | chunks | ÷ input |", end="")
    print(" chunks, default allocator | ÷ input |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    goals, ratios = Goals(), {}
    for n, c in sizes:
        for metric in BOUNDED:
            row = f"| {metric} | {n:,} x {c:,} | {n * c * 4 / MIB:,.0f} MiB |"
            for one_pass, live in ((True, True), (False, True), (False, False)):
                if one_pass and n * c * 4 * (1 + ONE_PASS_FACTOR) > args.max_gib * 2**30:
                    row += " not run | |"
                    continue
                m = in_subprocess(metric, n, c, one_pass, live)
                r = m["extra"] / m["input"]
                if not one_pass:
                    ratios[metric, n, c, live] = r
                row += f" {m['extra'] / MIB:,.0f} MiB | {r:.2f}x |"
            print(row, flush=True)
    n, c = sizes[0]
    print(f"\nThe other metrics (probabilities held whole), chunks, live peak, {n:,} x {c}:\n")
    print("| metric | float32 logits | peak extra | ÷ input |")
    print("|---|---|---:|---:|")
    for metric, m, k in [(name, n, c) for name in [*OTHERS, "entropy"]] + [
        ("calibration_report", n * c // 2, 2)
    ]:
        result = in_subprocess(metric, m, k, one_pass=False, live=True)
        r = result["extra"] / result["input"]
        print(f"| {metric} | {m:,} x {k} | {result['extra'] / MIB:,.0f} MiB | {r:.2f}x |")
    print("\nGoals:")
    for (metric, n, c, live), r in ratios.items():
        kind = "live" if live else "default allocator"
        goals.check(r <= 2, f"{metric} at {n:,} x {c:,} ({kind}): extra = {r:.2f}x the input <= 2")
    return 1 if goals.missed else 0


if __name__ == "__main__":
    sys.exit(main())
