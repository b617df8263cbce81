"""Seeded percentile bootstrap intervals for any metric."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from focalcal.metrics._inputs import checked


def bootstrap(
    statistic: Callable[[Tensor], dict[str, float]],
    num_samples: int,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    device: torch.device | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of ``statistic(index)`` over ``resamples`` resamples with
    replacement of ``range(num_samples)``; the indices come from a CPU generator seeded with
    ``seed``, so the intervals are the same on every machine and device."""
    if resamples < 2:
        raise ValueError(f"resamples must be >= 2, got {resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    generator = torch.Generator().manual_seed(seed)
    values: dict[str, list[float]] = {}
    for _ in range(resamples):
        index = torch.randint(num_samples, (num_samples,), generator=generator).to(device)
        for name, value in statistic(index).items():
            values.setdefault(name, []).append(value)
    tail = (1.0 - level) / 2
    quantiles = torch.tensor([tail, 1.0 - tail], dtype=torch.float64)
    intervals = {}
    for name, samples in values.items():
        low, high = torch.quantile(torch.tensor(samples, dtype=torch.float64), quantiles).tolist()
        intervals[name] = (low, high)
    return intervals


def bootstrap_interval(
    metric: Callable[..., Tensor],
    scores: Tensor,
    labels: Tensor,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    from_probs: bool = False,
    **kwargs: Any,
) -> tuple[float, float]:
    """Seeded percentile bootstrap interval of any ``metric(scores, labels, ...)``: samples
    (every position of N-d scores) are drawn with replacement ``resamples`` times.

    Example:
        >>> import torch
        >>> from focalcal.metrics import expected_calibration_error
        >>> logits, labels = torch.randn(500, 10), torch.randint(10, (500,))
        >>> low, high = bootstrap_interval(expected_calibration_error, logits, labels, 200)
        >>> low < float(expected_calibration_error(logits, labels)) < high
        True
    """
    flat, labels = checked(scores, labels, from_probs)

    def statistic(index: Tensor) -> dict[str, float]:
        return {"value": float(metric(flat[index], labels[index], from_probs=from_probs, **kwargs))}

    interval = bootstrap(statistic, len(labels), resamples, level, seed, flat.device)
    return interval["value"]
