"""Long-run coverage of the bootstrap intervals of the ECE where the true ECE is known.

    python benchmarks/bootstrap_coverage.py [--datasets 1000] [--samples 200] [--resamples 200]

The data and the interval computation are tests/metrics/test_bootstrap_coverage.py's (the test
runs 200 datasets and asserts bounds three standard deviations around these long-run values):
confidences uniform on (1/2, 1), each prediction right with probability c − k (c − 1/2), so the
population ECE is exactly k / 4. Prints the share of datasets whose nominal 95 % interval holds
it, for the basic, BCa and percentile intervals (on the same resamples).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import machine

from tests.metrics.test_bootstrap_coverage import coverage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--k", type=float, default=0.2, help="true ECE = k / 4 (default 0.05)")
    args = parser.parse_args()
    start = time.perf_counter()
    rates = coverage(args.samples, args.k, args.resamples, args.datasets)
    print(machine("cpu"), end="")
    seconds = time.perf_counter() - start
    print(f"{args.datasets} datasets of {args.samples} samples, true ECE {args.k / 4:g}, "
          f"{args.resamples} resamples, nominal 95 % ({seconds:.0f} s):")  # fmt: skip
    for method, rate in rates.items():
        print(f"  {method:>10}: {rate:.3f}")


if __name__ == "__main__":
    main()
