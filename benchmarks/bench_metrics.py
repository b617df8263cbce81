"""Calibration metrics against a plain softmax (the floor: every metric reads the logits once)
and against torchmetrics' ECE, side by side in one process.

    python benchmarks/bench_metrics.py

At 10 000 logits x 100 classes: ECE, AdaECE, Classwise-ECE and the whole calibration_report,
the last two also in one chunk (the cost of bounding their memory: see bench_memory.py), plus
a paper-style Classwise-ECE (a loop over classes and bins with a host sync per bin);
fit_temperature at 5 000 x 100. Ratios are medians over rounds of paired times (see
_timing.py). The goals of issue 3 are checked at the end; the exit status is 1 if one is missed.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from collections.abc import Callable

import torch
import torchmetrics.functional.classification as tmf
from _timing import Goals, machine, paired_times, ratio
from torch import Tensor

import focalcal.metrics._inputs as inputs
from focalcal.metrics import (
    adaptive_calibration_error,
    calibration_report,
    classwise_calibration_error,
    expected_calibration_error,
)
from focalcal.scaling import fit_temperature

SOFTMAX = "torch softmax (floor)"


def paper_style_classwise_ece(logits: torch.Tensor, labels: torch.Tensor, num_bins: int = 15):
    """Classwise-ECE the way the paper's evaluation code computes it: Python loops over the
    classes and the bins, reading every bin's count and means back to the host."""
    probs = torch.softmax(logits, dim=1)
    total = 0.0
    for k in range(probs.shape[1]):
        p, hit = probs[:, k], (labels == k).float()
        for b in range(num_bins):
            in_bin = (p > b / num_bins) & (p <= (b + 1) / num_bins)
            count = in_bin.sum().item()
            if count:
                gap = hit[in_bin].mean().item() - p[in_bin].mean().item()
                total += count / len(labels) * abs(gap)
    return total / probs.shape[1]


def one_chunk(
    metric: Callable[..., object], logits: Tensor, labels: Tensor
) -> Callable[[], object]:
    """``metric`` reading the logits in one chunk, as before issue 13 bounded its memory."""

    def call() -> object:
        chunk, inputs.CHUNK_ELEMENTS = inputs.CHUNK_ELEMENTS, logits.numel()
        try:
            return metric(logits, labels)
        finally:
            inputs.CHUNK_ELEMENTS = chunk

    return call


def candidates(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, object]:
    c = logits.shape[1]
    return {
        SOFTMAX: lambda: torch.softmax(logits, dim=1),
        "torchmetrics ECE": lambda: tmf.multiclass_calibration_error(logits, labels, c, 15),
        "focalcal ECE": lambda: expected_calibration_error(logits, labels),
        "focalcal AdaECE": lambda: adaptive_calibration_error(logits, labels),
        "focalcal Classwise-ECE": lambda: classwise_calibration_error(logits, labels),
        "focalcal calibration_report": lambda: calibration_report(logits, labels),
        "focalcal Classwise-ECE, one chunk": one_chunk(classwise_calibration_error, logits, labels),
        "focalcal calibration_report, one chunk": one_chunk(calibration_report, logits, labels),
        "paper-style Classwise-ECE loop": lambda: paper_style_classwise_ece(logits, labels),
    }


def data(n: int, c: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(n, c, generator=g)
    labels = torch.multinomial(torch.softmax(logits / 2, 1), 1, generator=g).squeeze(1)
    return logits.to(device), labels.to(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--min-time", type=float, default=0.05)
    args = parser.parse_args()
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else lambda: None
    print(machine(args.device))

    logits, labels = data(10_000, 100, args.device)
    metrics = candidates(logits, labels)
    times = paired_times(metrics, args.rounds, args.min_time, sync)
    print("10 000 x 100 logits:\n")
    print("| | vs softmax | vs torchmetrics ECE | median time |")
    print("|---|---:|---:|---:|")
    for name in metrics:
        print(f"| {name} | {ratio(times, name, SOFTMAX):.2f}x | "
              f"{ratio(times, name, 'torchmetrics ECE'):.2f}x | "
              f"{statistics.median(times[name]) * 1e3:.2f} ms |")  # fmt: skip

    small_logits, small_labels = data(5_000, 100, args.device)
    fits = {
        SOFTMAX: lambda: torch.softmax(small_logits, dim=1),
        "fit_temperature nll": functools.partial(
            fit_temperature, small_logits, small_labels, "nll"
        ),
        "fit_temperature ece": functools.partial(
            fit_temperature, small_logits, small_labels, "ece"
        ),
    }
    fit_times = paired_times(fits, args.rounds, args.min_time, sync)
    print("\n5 000 x 100 logits:\n")
    print("| | softmax-equivalents | median time |")
    print("|---|---:|---:|")
    for name in fits:
        print(f"| {name} | {ratio(fit_times, name, SOFTMAX):.1f} | "
              f"{statistics.median(fit_times[name]) * 1e3:.2f} ms |")  # fmt: skip

    goals = Goals()
    print("\nGoals (median of per-round ratios):")
    for name, bound in (
        ("focalcal ECE", 3),
        ("focalcal AdaECE", 3),
        ("focalcal Classwise-ECE", 10),
    ):
        r = ratio(times, name, SOFTMAX)
        goals.check(r <= bound, f"{name} = {r:.2f}x softmax <= {bound}")
    r = ratio(fit_times, "fit_temperature nll", SOFTMAX)
    goals.check(r < 20, f"fit_temperature nll = {r:.1f} softmax-equivalents < 20")
    return 1 if goals.missed else 0


if __name__ == "__main__":
    sys.exit(main())
