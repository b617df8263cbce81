"""The paper's baselines: cross-entropy, label smoothing, the Brier score and MMCE."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from focalcal.losses._common import (
    Reduction,
    check_inputs,
    check_target,
    cross_entropy_values,
    is_nan,
    kept_weight,
    nan_error,
    nll,
    reduce_loss,
    target_weights,
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
    args = (logits, target, weight, ignore_index, label_smoothing)
    # torch reduces: fewer ops and autograd nodes than reducing its values here. A mean over
    # no kept target, or over kept targets that all weigh 0, is 0 / 0 = NaN, as in torch; any
    # other NaN comes from the logits and is an error.
    loss = cross_entropy_values(*args, reduction)
    total = loss.sum() if reduction == "none" else loss

    def kept() -> Tensor:  # what the mean divides by
        weights = None if weight is None else target_weights(target, weight, ignore_index)
        return kept_weight(target, ignore_index, weights)

    if reduction == "mean" and total.is_cuda:  # the assertion may fire only where kept > 0
        total = torch.where(kept() > 0, total, 0.0)
    if is_nan(total) and (reduction != "mean" or kept() > 0):
        raise nan_error(logits, target, ignore_index)
    return loss


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


MMCEForm = Literal["kumar", "official-code"]
MMCE_FORMS: tuple[str, ...] = ("kumar", "official-code")
# The official code's guards: 1e-5 added to every denominator, 1e-10 under the square root.
_OFFICIAL_DENOMINATOR_GUARD, _OFFICIAL_ROOT_GUARD = 1e-5, 1e-10


def _kernel_sum(r: Tensor, a: Tensor, b: Tensor | None, bandwidth: float) -> Tensor:
    r""":math:`\sum_{ij} a_i b_j e^{-|r_i - r_j| / h}` (``b`` ``None``: ``b = a``) in
    ``O(M log M)`` time and ``O(M)`` memory: sorted by ``r``, :math:`k(r_i, r_j) = e^{u_i}
    e^{-u_j}` for :math:`i < j`, with :math:`u = (r - 1/2) / h`, so the off-diagonal sums are
    prefix sums."""
    r_sorted, order = r.sort()
    u = (r_sorted - 0.5) / bandwidth
    up, down = u.exp(), (-u).exp()
    a = a[order]
    below_a = (a * up).cumsum(0) - a * up  # sum over i < j of a_i e^{u_i}
    if b is None:
        return a.square().sum() + 2.0 * (a * down * below_a).sum()
    b = b[order]
    below_b = (b * up).cumsum(0) - b * up
    return (a * b).sum() + (b * down * below_a).sum() + (a * down * below_b).sum()


def _mmce(
    logits: Tensor,
    target: Tensor,
    ignore_index: int,
    weighted: bool,
    bandwidth: float,
    form: MMCEForm = "kumar",
) -> Tensor:
    r"""MMCE of checked inputs (see :func:`mmce` for ``form``).

    ``r`` is the top-label confidence; unweighted, :math:`s_i = (c_i - r_i) / n` with
    :math:`c_i = 1[\text{correct}]`; weighted, :math:`s_i = (1 - r_i) / m` for the ``m``
    correct samples and :math:`-r_i / n` for the ``n`` wrong ones (a group that is empty
    contributes nothing); MMCE is :math:`\sqrt{\sum_{ij} s_i s_j k(r_i, r_j)}`.
    """
    confidence, prediction = torch.softmax(logits, dim=1).max(dim=1)
    r, target = confidence.flatten(), target.flatten()
    valid = target != ignore_index
    correct = (prediction.flatten() == target) & valid
    if weighted and form == "official-code":
        return _official_weighted_mmce(r, correct, valid & ~correct, bandwidth)
    if weighted:
        wrong = valid & ~correct
        num_correct = correct.sum().clamp_min(1).to(r.dtype)
        num_wrong = wrong.sum().clamp_min(1).to(r.dtype)
        s = torch.where(correct, (1.0 - r) / num_correct, 0.0)
        s = s - torch.where(wrong, r / num_wrong, 0.0)
    else:
        count = valid.sum().clamp_min(1).to(r.dtype)
        s = torch.where(valid, (correct.to(r.dtype) - r) / count, 0.0)
    squared = _kernel_sum(r, s, None, bandwidth)
    if form == "official-code":  # the official unweighted MMCE is not square-rooted
        return squared
    # The kernel is positive definite, so only rounding makes `squared` <= 0; the gradient of
    # the square root is then taken as 0 instead of infinity.
    positive = squared > 0
    return torch.where(positive, torch.where(positive, squared, 1.0).sqrt(), 0.0)


def _official_weighted_mmce(r: Tensor, correct: Tensor, wrong: Tensor, bandwidth: float) -> Tensor:
    r"""The weighted MMCE of the paper's code: each of the three kernel sums is averaged over
    its pairs (divided by m², n², m n) and then divided again by m² + 10⁻⁵, n² + 10⁻⁵,
    m n + 10⁻⁵; the square root is taken of that plus 10⁻¹⁰, and the value is 0 when a group
    is empty."""
    x = torch.where(correct, 1.0 - r, 0.0)
    y = torch.where(wrong, r, 0.0)
    m, n = correct.sum().to(r.dtype), wrong.sum().to(r.dtype)
    guard = _OFFICIAL_DENOMINATOR_GUARD
    squared = (
        _kernel_sum(r, x, None, bandwidth) / (m.square().clamp_min(1) * (m.square() + guard))
        + _kernel_sum(r, y, None, bandwidth) / (n.square().clamp_min(1) * (n.square() + guard))
        - 2.0 * _kernel_sum(r, x, y, bandwidth) / ((m * n).clamp_min(1) * (m * n + guard))
    )
    # Rounding alone can take the (positive definite) form below -1e-10: clamp before the root.
    root = (squared + _OFFICIAL_ROOT_GUARD).clamp_min(_OFFICIAL_ROOT_GUARD).sqrt()
    return torch.where((m > 0) & (n > 0), root, 0.0)


def _check_mmce(bandwidth: float, lam: float = 0.0, form: str = "kumar") -> None:
    # Below 0.01, exp((r - 1/2) / h) leaves the float32 range.
    if not 0.01 <= bandwidth < float("inf"):
        raise ValueError(f"bandwidth must be a float >= 0.01, got {bandwidth!r}")
    if not 0.0 <= lam < float("inf"):
        raise ValueError(f"lam must be a finite float >= 0, got {lam!r}")
    if form not in MMCE_FORMS:
        raise ValueError(f"form must be one of {MMCE_FORMS}, got {form!r}")


def mmce(
    logits: Tensor,
    target: Tensor,
    weighted: bool = False,
    bandwidth: float = 0.4,
    ignore_index: int = -100,
    form: MMCEForm = "kumar",
) -> Tensor:
    r"""Maximum mean calibration error (Kumar et al., ICML 2018) of a batch, a 0-d tensor.

    :math:`\mathrm{MMCE}^2 = \sum_{i,j} s_i s_j \, e^{-|r_i - r_j| / h}` over the batch (every
    position of ``(N, C, d1, ...)`` logits counts as a sample), ``r`` the top-label confidence,
    ``h`` the bandwidth (0.4). Unweighted (MMCE_m), :math:`s_i = (c_i - r_i) / n` with
    :math:`c_i = 1` when the prediction is right; weighted (MMCE_w), correct samples get
    :math:`s_i = (1 - r_i) / m` and the ``n`` wrong ones :math:`-r_i / n`. Both are the square
    root of the quadratic form, as in the MMCE paper (``form="kumar"``), an empty group
    contributing nothing. Computed in ``O(M log M)`` time, ``O(M)`` memory.

    ``form="official-code"`` computes what Mukhoti et al.'s released code does instead: the
    unweighted MMCE squared (no root); the weighted one with each of its three sums divided
    twice, by m², n², m n and again by m² + 10⁻⁵, n² + 10⁻⁵, m n + 10⁻⁵, the root taken of
    that plus 10⁻¹⁰, and 0 when a group is empty (so far smaller than ``"kumar"``'s: each
    term carries an extra 1/m², 1/n² or 1/(m n)).

    Example:
        >>> import torch
        >>> # one right with confidence 0.5, one wrong with confidence 0.5: calibrated
        >>> mmce(torch.tensor([[0.0, 0.0], [0.0, 0.0]]), torch.tensor([0, 1]))
        tensor(0.)
    """
    _check_mmce(bandwidth, form=form)
    logits, target, _ = check_inputs(logits, target, None, "mean")
    check_target(target, logits.shape[1], ignore_index)
    return _mmce(logits, target, ignore_index, weighted, bandwidth, form)


def mmce_loss(
    logits: Tensor,
    target: Tensor,
    lam: float = 2.0,
    weighted: bool = True,
    bandwidth: float = 0.4,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    form: MMCEForm = "kumar",
) -> Tensor:
    r"""Cross-entropy plus ``lam`` times :func:`mmce` of the batch (the paper: weighted, λ = 2);
    ``form`` as for :func:`mmce`.

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
    _check_mmce(bandwidth, lam, form)
    logits, target, weight = check_inputs(logits, target, weight, reduction)
    values = nll(torch.log_softmax(logits, dim=1), target, ignore_index)
    penalty = _mmce(logits, target, ignore_index, weighted, bandwidth, form)
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


SmoothingSpread = Literal["all", "others"]
SMOOTHING_SPREADS: tuple[str, ...] = ("all", "others")


class LabelSmoothingLoss(CrossEntropyLoss):
    """Label smoothing LS-ε: cross-entropy against a target distribution that moves ε of the
    mass off the one-hot label.

    ``spread="all"`` (the default): torch's definition, :class:`CrossEntropyLoss` with
    ``label_smoothing=smoothing``: ε/K on every one of the K classes, so the label keeps
    1 − ε + ε/K. ``spread="others"``: the paper's released code, ε/(K − 1) on each other
    class and 1 − ε on the label, which is torch's definition with ε·K/(K − 1) (so it needs
    K ≥ 2 and ε ≤ (K − 1)/K, where the label still gets the most). Class weights weight each
    class's term, as in torch.

    Example:
        >>> import torch
        >>> logits, target = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
        >>> LabelSmoothingLoss(0.1, spread="others")(logits, target)  # q = (0.9, 0.05, 0.05)
        tensor(0.4198)
    """

    def __init__(
        self,
        smoothing: float = 0.05,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        spread: SmoothingSpread = "all",
    ) -> None:
        if spread not in SMOOTHING_SPREADS:
            raise ValueError(f"spread must be one of {SMOOTHING_SPREADS}, got {spread!r}")
        super().__init__(weight, ignore_index, reduction, label_smoothing=smoothing)
        self.spread: SmoothingSpread = spread

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        smoothing = self.label_smoothing
        if self.spread == "others":
            classes = logits.shape[1] if logits.dim() > 1 else 0
            if classes < 2 or smoothing > (classes - 1) / classes:
                raise ValueError(
                    f'spread="others" needs at least 2 classes and smoothing <= (K - 1)/K; got '
                    f"{classes} classes and smoothing {smoothing!r}"
                )
            smoothing = smoothing * classes / (classes - 1)
        return cross_entropy(
            logits, target, self.weight, self.ignore_index, self.reduction, smoothing
        )

    def extra_repr(self) -> str:
        return f"spread={self.spread!r}, {super().extra_repr()}"


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
        form: MMCEForm = "kumar",
    ) -> None:
        _check_mmce(bandwidth, lam, form)
        super().__init__(weight, ignore_index, reduction)
        self.lam, self.weighted, self.bandwidth = lam, weighted, bandwidth
        self.form: MMCEForm = form

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return mmce_loss(
            logits, target, self.lam, self.weighted, self.bandwidth, self.weight,
            self.ignore_index, self.reduction, self.form,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"lam={self.lam}, weighted={self.weighted}, bandwidth={self.bandwidth}, "
            f"form={self.form!r}, {super().extra_repr()}"
        )
