"""The paper's baselines: cross-entropy, label smoothing, the Brier score and MMCE."""

from __future__ import annotations

import torch
from torch import Tensor

from focalcal.losses._common import (
    Reduction,
    check_inputs,
    check_target,
    cross_entropy_values,
    nll,
    reduce_loss,
)
from focalcal.losses.modules import WeightedLoss


def cross_entropy(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy, optionally label-smoothed (LS-ε), exactly as
    :func:`torch.nn.functional.cross_entropy` defines it, with focalcal's input checks.

    Example:
        >>> import torch
        >>> logits, target = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
        >>> cross_entropy(logits, target)
        tensor(0.1698)
        >>> cross_entropy(logits, target, label_smoothing=0.05)
        tensor(0.2532)
    """
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing!r}")
    logits, target, weight = check_inputs(logits, target, weight, reduction)
    values = cross_entropy_values(logits, target, weight, ignore_index, label_smoothing)
    return reduce_loss(values, target, weight, ignore_index, reduction, logits, weighted=True)


def brier_loss(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Brier score per sample, :math:`\sum_k (p_k - 1[y = k])^2` with ``p = softmax(logits)``.

    Example:
        >>> import torch
        >>> logits, target = torch.tensor([[0.0, 0.0]]), torch.tensor([1])
        >>> brier_loss(logits, target)  # (0.5 - 0)^2 + (0.5 - 1)^2
        tensor(0.5000)
    """
    logits, target, weight = check_inputs(logits, target, weight, reduction)
    check_target(target, logits.shape[1], ignore_index)
    valid = target != ignore_index
    probs = torch.softmax(logits, dim=1)
    one_hot = torch.zeros_like(probs).scatter_(1, torch.where(valid, target, 0).unsqueeze(1), 1.0)
    values = torch.where(valid, (probs - one_hot).square().sum(dim=1), 0.0)
    return reduce_loss(values, target, weight, ignore_index, reduction, logits)


def _mmce(
    logits: Tensor, target: Tensor, ignore_index: int, weighted: bool, bandwidth: float
) -> Tensor:
    r"""MMCE of checked inputs: :math:`\sqrt{\sum_{ij} s_i s_j k(r_i, r_j)}`.

    ``r`` is the top-label confidence; unweighted, :math:`s_i = (c_i - r_i) / n` with
    :math:`c_i = 1[\text{correct}]`; weighted, :math:`s_i = (1 - r_i) / m` for the ``m``
    correct samples and :math:`-r_i / n` for the ``n`` wrong ones (a group that is empty
    contributes nothing). With the Laplacian kernel :math:`k = e^{-|r_i - r_j| / h}` the
    double sum over a batch of ``M`` samples takes ``O(M log M)`` time and ``O(M)`` memory:
    sorted by ``r``, :math:`k(r_i, r_j) = e^{u_i} e^{-u_j}` for :math:`i < j`, with
    :math:`u = (r - 1/2) / h`, so the off-diagonal sum is a prefix sum.
    """
    confidence, prediction = torch.softmax(logits, dim=1).max(dim=1)
    r, target = confidence.flatten(), target.flatten()
    valid = target != ignore_index
    correct = (prediction.flatten() == target) & valid
    if weighted:
        wrong = valid & ~correct
        num_correct = correct.sum().clamp_min(1).to(r.dtype)
        num_wrong = wrong.sum().clamp_min(1).to(r.dtype)
        s = torch.where(correct, (1.0 - r) / num_correct, 0.0)
        s = s - torch.where(wrong, r / num_wrong, 0.0)
    else:
        count = valid.sum().clamp_min(1).to(r.dtype)
        s = torch.where(valid, (correct.to(r.dtype) - r) / count, 0.0)
    r_sorted, order = r.sort()
    s_sorted = s[order]
    u = (r_sorted - 0.5) / bandwidth
    left, right = s_sorted * u.exp(), s_sorted * (-u).exp()
    off_diagonal = (right * (left.cumsum(0) - left)).sum()
    squared = s.square().sum() + 2.0 * off_diagonal
    # The kernel is positive definite, so only rounding makes `squared` <= 0; the gradient of
    # the square root is then taken as 0 instead of infinity.
    positive = squared > 0
    return torch.where(positive, torch.where(positive, squared, 1.0).sqrt(), 0.0)


def _check_mmce(bandwidth: float, lam: float = 0.0) -> None:
    # Below 0.01, exp((r - 1/2) / h) leaves the float32 range.
    if not 0.01 <= bandwidth < float("inf"):
        raise ValueError(f"bandwidth must be a float >= 0.01, got {bandwidth!r}")
    if not 0.0 <= lam < float("inf"):
        raise ValueError(f"lam must be a finite float >= 0, got {lam!r}")


def mmce(
    logits: Tensor,
    target: Tensor,
    weighted: bool = False,
    bandwidth: float = 0.4,
    ignore_index: int = -100,
) -> Tensor:
    r"""Maximum mean calibration error (Kumar et al., ICML 2018) of a batch, a 0-d tensor.

    :math:`\mathrm{MMCE}^2 = \sum_{i,j} s_i s_j \, e^{-|r_i - r_j| / h}` over the batch (every
    position of ``(N, C, d1, ...)`` logits counts as a sample), ``r`` the top-label confidence,
    ``h`` the bandwidth (0.4). Unweighted (MMCE_m), :math:`s_i = (c_i - r_i) / n` with
    :math:`c_i = 1` when the prediction is right; weighted (MMCE_w), correct samples get
    :math:`s_i = (1 - r_i) / m` and the ``n`` wrong ones :math:`-r_i / n`. Both are the square
    root of the quadratic form, as in the MMCE paper (Mukhoti et al.'s code returns the
    unweighted one squared and sets the weighted one to 0 when a group is empty; here an empty
    group contributes nothing). Computed in ``O(M log M)`` time, ``O(M)`` memory.

    Example:
        >>> import torch
        >>> # one right with confidence 0.5, one wrong with confidence 0.5: calibrated
        >>> mmce(torch.tensor([[0.0, 0.0], [0.0, 0.0]]), torch.tensor([0, 1]))
        tensor(0.)
    """
    _check_mmce(bandwidth)
    logits, target, _ = check_inputs(logits, target, None, "mean")
    check_target(target, logits.shape[1], ignore_index)
    return _mmce(logits, target, ignore_index, weighted, bandwidth)


def mmce_loss(
    logits: Tensor,
    target: Tensor,
    lam: float = 2.0,
    weighted: bool = True,
    bandwidth: float = 0.4,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Cross-entropy plus ``lam`` times :func:`mmce` of the batch (the paper: weighted, λ = 2).

    Each element's value is :math:`\mathrm{CE}_i + \lambda\,\mathrm{MMCE}`, weighted and
    reduced like ``CrossEntropyLoss``; so ``mean`` is the mean cross-entropy plus
    :math:`\lambda\,\mathrm{MMCE}`, and ``sum`` adds the penalty once per (weighted) sample,
    keeping its strength relative to the cross-entropy whatever the reduction.

    Example:
        >>> import torch
        >>> logits, target = torch.randn(16, 10), torch.randint(10, (16,))
        >>> total = mmce_loss(logits, target, lam=2.0)
        >>> expected = cross_entropy(logits, target) + 2.0 * mmce(logits, target, weighted=True)
        >>> bool(torch.isclose(total, expected))
        True
    """
    _check_mmce(bandwidth, lam)
    logits, target, weight = check_inputs(logits, target, weight, reduction)
    values = nll(torch.log_softmax(logits, dim=1), target, ignore_index)
    penalty = _mmce(logits, target, ignore_index, weighted, bandwidth)
    values = torch.where(target != ignore_index, values + lam * penalty, 0.0)
    return reduce_loss(values, target, weight, ignore_index, reduction, logits)


class CrossEntropyLoss(WeightedLoss):
    """Module form of :func:`cross_entropy`."""

    def __init__(
        self,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing!r}")
        super().__init__(weight, ignore_index, reduction)
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return cross_entropy(
            logits, target, self.weight, self.ignore_index, self.reduction, self.label_smoothing
        )

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}, {super().extra_repr()}"


class LabelSmoothingLoss(CrossEntropyLoss):
    """Label smoothing LS-ε: :class:`CrossEntropyLoss` with ``label_smoothing=smoothing``."""

    def __init__(
        self,
        smoothing: float = 0.05,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(weight, ignore_index, reduction, label_smoothing=smoothing)


class BrierLoss(WeightedLoss):
    """Module form of :func:`brier_loss`."""

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return brier_loss(logits, target, self.weight, self.ignore_index, self.reduction)


class MMCELoss(WeightedLoss):
    """Module form of :func:`mmce_loss`; the defaults are the paper's (weighted, λ = 2)."""

    def __init__(
        self,
        lam: float = 2.0,
        weighted: bool = True,
        bandwidth: float = 0.4,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
    ) -> None:
        _check_mmce(bandwidth, lam)
        super().__init__(weight, ignore_index, reduction)
        self.lam, self.weighted, self.bandwidth = lam, weighted, bandwidth

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return mmce_loss(
            logits, target, self.lam, self.weighted, self.bandwidth, self.weight,
            self.ignore_index, self.reduction,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"lam={self.lam}, weighted={self.weighted}, bandwidth={self.bandwidth}, "
            f"{super().extra_repr()}"
        )
