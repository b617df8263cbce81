"""Bootstrap intervals against an independent NumPy reference of each method."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from focalcal.metrics import bootstrap_interval, error_rate, expected_calibration_error
from focalcal.metrics.bootstrap import bootstrap


def data(n, c=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 2.5 * torch.randn(n, c, generator=g), torch.randint(c, (n,), generator=g)


def reference(statistic, n, resamples, level, seed, method, bounds=(-math.inf, math.inf)):
    """Davison & Hinkley's basic, Efron's BCa and the percentile interval, written out in
    NumPy; only the resampled indices (torch's generator) and the statistic are shared."""
    generator = torch.Generator().manual_seed(seed)
    theta = statistic(np.arange(n))
    replicates = np.array([
        statistic(torch.randint(n, (n,), generator=generator).numpy()) for _ in range(resamples)
    ])  # fmt: skip
    alpha = (1 - level) / 2
    if method == "bca":
        below = np.mean(replicates < theta) + 0.5 * np.mean(replicates == theta)
        z0 = norm.ppf(np.clip(below, 0.5 / resamples, 1 - 0.5 / resamples))
        groups = min(20, n)
        jackknife = np.array([statistic(np.flatnonzero(np.arange(n) % groups != g))
                              for g in range(groups)])  # fmt: skip
        d = jackknife.mean() - jackknife
        a = np.sum(d**3) / (6 * np.sum(d**2) ** 1.5)
        z = norm.ppf([alpha, 1 - alpha])
        low, high = np.quantile(replicates, norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z))))
    else:
        low, high = np.quantile(replicates, [alpha, 1 - alpha])
        if method == "basic":
            low, high = 2 * theta - high, 2 * theta - low
    return float(np.clip(low, *bounds)), float(np.clip(high, *bounds))


@pytest.mark.parametrize("method", ["basic", "bca", "percentile"])
def test_metric_intervals_match_the_reference(method):
    logits, labels = data(400, seed=3)

    def ece(index):
        return expected_calibration_error(logits[index], labels[index]).item()

    interval = bootstrap_interval(
        expected_calibration_error, logits, labels, 100, seed=5, method=method, bounds=(0, 1)
    )
    assert interval == pytest.approx(reference(ece, 400, 100, 0.95, 5, method), abs=1e-12)
    assert interval[0] <= ece(np.arange(400)) <= interval[1]
    other_seed = bootstrap_interval(expected_calibration_error, logits, labels, 100, seed=6)
    assert other_seed != interval


@pytest.mark.parametrize("method", ["basic", "bca", "percentile"])
def test_a_skewed_statistic_matches_the_reference(method):
    """The variance of exponential draws: skewed, so BCa's acceleration is far from 0."""
    values = torch.empty(300, dtype=torch.float64).exponential_(
        generator=torch.Generator().manual_seed(2)
    )

    def variance(index):
        return float(values.numpy()[index].var())

    interval = bootstrap(lambda i: {"var": variance(i)}, 300, 200, 0.9, 7, method=method)["var"]
    assert interval == pytest.approx(reference(variance, 300, 200, 0.9, 7, method), abs=1e-12)


def test_the_basic_interval_is_clipped_to_the_bounds():
    """A calibrated model: the ECE's resamples lie far above it, so 2θ̂ − q falls below 0."""
    g = torch.Generator().manual_seed(0)
    confidence = 0.5 + 0.5 * torch.rand(300, generator=g, dtype=torch.float64)
    right = torch.rand(300, generator=g, dtype=torch.float64) < confidence
    probs = torch.stack([confidence, 1 - confidence], 1)
    labels = (~right).long()
    free = bootstrap_interval(expected_calibration_error, probs, labels, 100, from_probs=True)
    clipped = bootstrap_interval(
        expected_calibration_error, probs, labels, 100, from_probs=True, bounds=(0, 1)
    )
    assert free[0] < 0 and clipped == (0.0, free[1])


def test_intervals_shrink_with_more_data():
    small = bootstrap_interval(error_rate, *data(200, seed=4), 200)
    large = bootstrap_interval(error_rate, *data(20000, seed=4), 200)
    assert large[1] - large[0] < (small[1] - small[0]) / 4


def test_bad_arguments():
    def statistic(index):
        return {"x": float(index.double().mean())}

    with pytest.raises(ValueError, match="method must be one of basic, bca, percentile, got 'BCa'"):
        bootstrap(statistic, 10, 5, method="BCa")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"bounds\['x'\] must have low <= high, got \(1, 0\)"):
        bootstrap(statistic, 10, 5, bounds={"x": (1, 0)})
    with pytest.raises(ValueError, match="resamples must be >= 2"):
        bootstrap(statistic, 10, 1)
    with pytest.raises(ValueError, match="level must lie in"):
        bootstrap(statistic, 10, 5, level=1.0)
