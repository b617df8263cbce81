"""Seeded bootstrap intervals for any metric: basic (the default), BCa or percentile.

ECE-type metrics are biased upwards, and so are their resamples, by about as much again: the
percentile interval sits above the point estimate and, near a calibrated model, above the
true value too. The basic interval reflects the resamples about the estimate, 2θ̂ − q, which
subtracts the bias instead of adding it; BCa cannot do that, as it never leaves the range of
the resamples. Coverage on synthetic data with a known ECE: ``docs/metrics.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from focalcal.metrics._inputs import checked

IntervalMethod = Literal["basic", "bca", "percentile"]
METHODS: tuple[IntervalMethod, ...] = ("basic", "bca", "percentile")
JACKKNIFE_GROUPS = 20
"""BCa: the acceleration comes from a delete-a-group jackknife over this many groups (sample
``i`` in group ``i mod 20``), not from one statistic per left-out sample."""


def bootstrap(
    statistic: Callable[[Tensor], dict[str, float]],
    num_samples: int,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    device: torch.device | None = None,
    method: IntervalMethod = "basic",
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, tuple[float, float]]:
    """Intervals at ``level`` of each value of ``statistic(index)``, from ``resamples``
    resamples with replacement of ``index = range(num_samples)``.

    ``method``: ``"basic"`` (2θ̂ − q₁₋ₜ, 2θ̂ − qₜ) with θ̂ the statistic on every sample and
    q the quantiles of the resamples, t = (1 − level) / 2; ``"bca"`` (Efron 1987) the
    quantiles at levels corrected for the median bias z₀ = Φ⁻¹(share of resamples below θ̂,
    ties counted half, kept within [1/(2R), 1 − 1/(2R)]) and for the acceleration, the
    skewness of a delete-a-group jackknife (:data:`JACKKNIFE_GROUPS`) over 6;
    ``"percentile"`` (qₜ, q₁₋ₜ). Quantiles are linearly interpolated. Each interval is
    clipped to ``bounds[name]`` where given (the statistic's range: the basic interval can
    leave it). The indices come from a CPU generator seeded with ``seed``, so the intervals
    are the same on every machine and device.

    Example:
        >>> import torch
        >>> values = torch.rand(200, generator=torch.Generator().manual_seed(0))
        >>> interval = bootstrap(lambda i: {"mean": float(values[i].mean())}, 200, 100)
        >>> low, high = interval["mean"]
        >>> low < float(values.mean()) < high
        True
    """
    if resamples < 2:
        raise ValueError(f"resamples must be >= 2, got {resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    check_method(method)
    for name, (floor, ceiling) in (bounds or {}).items():
        if not floor <= ceiling:
            raise ValueError(f"bounds[{name!r}] must have low <= high, got {(floor, ceiling)}")
    position = torch.arange(num_samples, device=device)
    estimate = statistic(position)
    generator = torch.Generator().manual_seed(seed)
    values: dict[str, list[float]] = {}
    for _ in range(resamples):
        index = torch.randint(num_samples, (num_samples,), generator=generator).to(device)
        for name, value in statistic(index).items():
            values.setdefault(name, []).append(value)
    tail = (1.0 - level) / 2
    levels = torch.tensor([tail, 1.0 - tail], dtype=torch.float64)
    acceleration = _jackknife_acceleration(statistic, position) if method == "bca" else {}
    intervals = {}
    for name, samples in values.items():
        replicates, theta = torch.tensor(samples, dtype=torch.float64), estimate[name]
        if method == "bca":
            at = _bca_levels(replicates, theta, acceleration.get(name, 0.0), levels)
            low, high = torch.quantile(replicates, at).tolist()
        else:
            low, high = torch.quantile(replicates, levels).tolist()
            if method == "basic":
                low, high = 2 * theta - high, 2 * theta - low
        floor, ceiling = (bounds or {}).get(name, (-math.inf, math.inf))
        intervals[name] = (min(max(low, floor), ceiling), min(max(high, floor), ceiling))
    return intervals


def check_method(method: str) -> None:
    """Raise ``ValueError`` unless ``method`` is one of :data:`METHODS`."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def _bca_levels(replicates: Tensor, theta: float, acceleration: float, levels: Tensor) -> Tensor:
    """The levels of the resamples' quantiles that bound the BCa interval."""
    count = len(replicates)
    below = (replicates < theta).sum(dtype=torch.float64)
    below += 0.5 * (replicates == theta).sum(dtype=torch.float64)
    z0 = torch.special.ndtri((below / count).clamp(0.5 / count, 1.0 - 0.5 / count))
    w = z0 + torch.special.ndtri(levels)
    denominator = 1.0 - acceleration * w
    # past the pole of the correction the level runs off to the end the interval points to
    shifted = torch.where(denominator > 0, z0 + w / denominator, w.sign() * math.inf)
    at: Tensor = torch.special.ndtr(shifted)
    return at


def _jackknife_acceleration(
    statistic: Callable[[Tensor], dict[str, float]], position: Tensor
) -> dict[str, float]:
    """BCa's acceleration of each value: Σ d³ / (6 (Σ d²)^{3/2}), d the deviations of the
    statistic without one group from their mean (the grouped form of Efron's jackknife)."""
    groups = min(JACKKNIFE_GROUPS, len(position))
    if groups < 2:
        return {}
    left_out: dict[str, list[float]] = {}
    for group in range(groups):
        for name, value in statistic(position[position % groups != group]).items():
            left_out.setdefault(name, []).append(value)
    acceleration = {}
    for name, samples in left_out.items():
        deviation = torch.tensor(samples, dtype=torch.float64)
        deviation = deviation.mean() - deviation
        spread = float((deviation**2).sum())
        acceleration[name] = float((deviation**3).sum()) / (6 * spread**1.5) if spread else 0.0
    return acceleration


def bootstrap_interval(
    metric: Callable[..., Tensor],
    scores: Tensor,
    labels: Tensor,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    from_probs: bool = False,
    method: IntervalMethod = "basic",
    bounds: tuple[float, float] = (-math.inf, math.inf),
    **kwargs: Any,
) -> tuple[float, float]:
    """Seeded bootstrap interval (``method`` as in :func:`bootstrap`, basic by default) of any
    ``metric(scores, labels, ...)``: samples (every position of N-d scores) are drawn with
    replacement ``resamples`` times. The interval is clipped to ``bounds``, the metric's
    range: pass ``(0, 1)`` for ECE-type metrics, or the basic interval of a nearly calibrated
    model can start below 0.

    Example:
        >>> import torch
        >>> from focalcal.metrics import expected_calibration_error
        >>> logits, labels = torch.randn(500, 10), torch.randint(10, (500,))
        >>> ece = float(expected_calibration_error(logits, labels))
        >>> low, high = bootstrap_interval(
        ...     expected_calibration_error, logits, labels, 200, bounds=(0, 1)
        ... )
        >>> 0 <= low < ece < high <= 1
        True
    """
    flat, labels = checked(scores, labels, from_probs)

    def statistic(index: Tensor) -> dict[str, float]:
        return {"value": float(metric(flat[index], labels[index], from_probs=from_probs, **kwargs))}

    ranges = {"value": bounds}
    interval = bootstrap(
        statistic, len(labels), resamples, level, seed, flat.device, method, ranges
    )
    return interval["value"]
