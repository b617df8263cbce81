"""Independent float64 references: plain Python loops over samples, the formulas as published."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def rows(logits: Tensor, target: Tensor) -> list[tuple[list[float], int]]:
    """Every position of (N, C, d1, ...) logits as (list of C logits, target), in float64."""
    flat = logits.detach().double().movedim(1, -1).reshape(-1, logits.shape[1])
    return list(zip(flat.tolist(), target.reshape(-1).tolist(), strict=True))


def softmax(z: list[float]) -> list[float]:
    top = max(z)
    e = [math.exp(v - top) for v in z]
    return [v / sum(e) for v in e]


def focal(z: list[float], y: int, gamma: float) -> float:
    p = softmax(z)[y]
    return -((1.0 - p) ** gamma) * math.log(p)


def dual_focal(z: list[float], y: int, gamma: float) -> float:
    """Tao et al. (2023): -(1 - p_y + p_j)^γ log p_y, p_j the largest p_k < p_y (0 if none)."""
    p = softmax(z)
    p_j = max((q for q in p if q < p[y]), default=0.0)
    return -((1.0 - p[y] + p_j) ** gamma) * math.log(p[y])


def mbls(z: list[float], y: int, margin: float, alpha: float) -> float:
    """Liu et al. (2022): -log p_y + α/C · Σ_j max(0, max_k z_k - z_j - m)."""
    penalty = sum(max(0.0, max(z) - v - margin) for v in z) / len(z)
    return -math.log(softmax(z)[y]) + alpha * penalty


def flsd53_gamma(z: list[float], y: int) -> float:
    return 5.0 if softmax(z)[y] < 0.2 else 3.0


def brier(z: list[float], y: int) -> float:
    return sum((p - (k == y)) ** 2 for k, p in enumerate(softmax(z)))


def smoothed_ce(z: list[float], y: int, eps: float, weight: list[float]) -> float:
    """torch's label smoothing: (1-ε)·w_y·(-log p_y) + ε/C·Σ_k w_k·(-log p_k) ."""
    logp = [math.log(p) for p in softmax(z)]
    c = len(z)
    return (1 - eps) * weight[y] * -logp[y] + eps / c * sum(
        -w * lp for w, lp in zip(weight, logp, strict=True)
    )


def reduce(
    values: list[float], targets: list[int], weight: list[float] | None, ignore: int, reduction: str
) -> float | list[float]:
    """CrossEntropyLoss's reduction of unweighted per-sample values."""
    w = [0.0 if y == ignore else (1.0 if weight is None else weight[y]) for y in targets]
    weighted = [wi * v if wi else 0.0 for wi, v in zip(w, values, strict=True)]
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return sum(weighted)
    return sum(weighted) / sum(w) if sum(w) else math.nan


def loss_reference(per_sample, logits, target, weight=None, ignore=-100, reduction="mean"):
    """Apply `per_sample(z, y)` to every non-ignored position and reduce like CrossEntropyLoss."""
    pairs = rows(logits, target)
    values = [0.0 if y == ignore else per_sample(z, y) for z, y in pairs]
    w = None if weight is None else weight.double().tolist()
    out = reduce(values, [y for _, y in pairs], w, ignore, reduction)
    if reduction == "none":
        return torch.tensor(out, dtype=torch.float64).reshape(target.shape)
    return torch.tensor(out, dtype=torch.float64)


def mmce(logits: Tensor, target: Tensor, weighted: bool, h: float = 0.4, ignore: int = -100):
    """MMCE as Kumar et al. (2018) write it, as an O(M^2) double loop."""
    conf, corr = [], []
    for z, y in rows(logits, target):
        if y == ignore:
            continue
        p = softmax(z)
        conf.append(max(p))
        corr.append(p.index(max(p)) == y)

    def k(a: float, b: float) -> float:
        return math.exp(-abs(a - b) / h)

    if weighted:
        good = [r for r, c in zip(conf, corr, strict=True) if c]
        bad = [r for r, c in zip(conf, corr, strict=True) if not c]
        m, n = len(good), len(bad)
        total = 0.0
        if m:
            total += sum((1 - a) * (1 - b) * k(a, b) for a in good for b in good) / m**2
        if n:
            total += sum(a * b * k(a, b) for a in bad for b in bad) / n**2
        if m and n:
            total -= 2 * sum((1 - a) * b * k(a, b) for a in good for b in bad) / (m * n)
    else:
        total = (
            sum(
                (ci - ri) * (cj - rj) * k(ri, rj)
                for ri, ci in zip(conf, corr, strict=True)
                for rj, cj in zip(conf, corr, strict=True)
            )
            / max(len(conf), 1) ** 2
        )
    return math.sqrt(max(total, 0.0))
