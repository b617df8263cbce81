"""Losses that followed the focal-loss paper, with the same conventions as the others.

- :func:`dual_focal_loss` — Dual Focal Loss (Tao, Dong & Xu, ICML 2023):
  ``-(1 - p_y + p_j)^γ · log p_y``, ``p_j`` the largest probability strictly below ``p_y``.
- :func:`margin_label_smoothing_loss` — Margin-based Label Smoothing, MbLS (Liu et al.,
  CVPR 2022): cross-entropy plus a linear penalty on logit gaps larger than a margin.
"""

from __future__ import annotations

import torch
from torch import Tensor

from focalcal.losses._common import Reduction, check_gamma, check_inputs, nll, reduce_loss
from focalcal.losses.focal import FocalLoss
from focalcal.losses.modules import WeightedLoss


def dual_focal_loss(
    logits: Tensor,
    target: Tensor,
    gamma: float = 5.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Dual focal loss: :math:`-(1 - p_y + p_j)^\gamma \log p_y` (Tao, Dong & Xu, ICML 2023).

    ``p_y`` is the softmax probability of the target and ``p_j`` the largest class probability
    strictly below it, 0 where there is none (``p_y`` the smallest, or every other class tied
    with it or above it). Gradients flow through both ``p_y`` and ``p_j``, as in the authors'
    code. Because ``p_j < p_y``, the value lies between FL-γ and cross-entropy; γ = 0 is
    cross-entropy.

    ``p_k < p_y`` is evaluated as ``z_k < z_y`` on the logits (the softmax is strictly
    increasing in the logit), so rounding of the probabilities cannot make or break a tie.
    ``1 - p_y`` is ``-expm1(log p_y)``, exact near ``p_y = 1``; for γ < 1 the base
    ``1 - p_y + p_j`` is bounded below by ``torch.finfo(dtype).tiny``, as in :func:`focal_loss`.

    Args:
        logits: ``(N, C)`` or ``(N, C, d1, ...)`` unnormalised scores.
        target: ``(N)`` or ``(N, d1, ...)`` class indices in ``[0, C)`` or ``ignore_index``.
        gamma: any float >= 0; default 5 (the authors' module defaults to 0, cross-entropy,
            and their training script to 1: name γ when reproducing a table).
        weight, ignore_index, reduction: as in :class:`torch.nn.CrossEntropyLoss`.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.0, -1.0]])  # p = (0.8438, 0.1142, 0.0420)
        >>> dual_focal_loss(logits, torch.tensor([1]), gamma=5.0)  # (1-0.1142+0.0420)^5 x 2.1698
        tensor(1.4919)
        >>> dual_focal_loss(logits, torch.tensor([1]), gamma=0.0)  # cross-entropy
        tensor(2.1698)
    """
    check_gamma(gamma)
    logits, target, weight = check_inputs(logits, target, weight, reduction)
    log_probs = torch.log_softmax(logits, dim=1)
    values = nll(log_probs, target, ignore_index)  # also checks the target range
    valid = target != ignore_index
    target_logit = logits.gather(1, torch.where(valid, target, 0).unsqueeze(1))
    below = logits < target_logit
    p_j = torch.where(below, log_probs.exp(), 0.0).amax(dim=1)
    # 0 at ignored targets, so that NaN logits there stay out of the loss, as in torch.
    base = torch.where(valid, -torch.expm1(-values) + p_j, 0.0)
    if gamma < 1.0:
        base = base.clamp_min(torch.finfo(base.dtype).tiny)
    return reduce_loss(base.pow(gamma) * values, target, weight, ignore_index, reduction, logits)


def _check_margin(margin: float, alpha: float) -> None:
    check_gamma(margin, "margin")
    check_gamma(alpha, "alpha")


def margin_label_smoothing_loss(
    logits: Tensor,
    target: Tensor,
    margin: float = 10.0,
    alpha: float = 0.1,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Margin-based label smoothing, MbLS (Liu et al., CVPR 2022, "The Devil is in the Margin").

    Each element's value is
    :math:`-\log p_y + \frac{\alpha}{C} \sum_j \max(0, \max_k z_k - z_j - m)`: cross-entropy
    plus a linear penalty on the gaps between the largest logit and the others that exceed the
    margin ``m``. The defaults are the authors' (m = 10, α = 0.1). Values are weighted by their
    target's class weight and reduced like ``CrossEntropyLoss``, so without ``weight`` the
    ``mean`` is the authors' ``ce + alpha * relu(diff - margin).mean()``. Where every gap is at
    most ``m`` the loss is cross-entropy.

    Args:
        logits: ``(N, C)`` or ``(N, C, d1, ...)`` unnormalised scores.
        target: ``(N)`` or ``(N, d1, ...)`` class indices in ``[0, C)`` or ``ignore_index``.
        margin: the margin ``m``, a finite float >= 0.
        alpha: the penalty's weight α, a finite float >= 0; 0 is cross-entropy.
        weight, ignore_index, reduction: as in :class:`torch.nn.CrossEntropyLoss`.

    Example:
        >>> import torch
        >>> logits, target = torch.tensor([[14.0, 0.0, 2.0]]), torch.tensor([0])
        >>> ce = margin_label_smoothing_loss(logits, target, alpha=0.0)  # cross-entropy
        >>> margin_label_smoothing_loss(logits, target) - ce  # gaps 14, 12: 0.1 x (4 + 2) / 3
        tensor(0.2000)
    """
    _check_margin(margin, alpha)
    logits, target, weight = check_inputs(logits, target, weight, reduction)
    values = nll(torch.log_softmax(logits, dim=1), target, ignore_index)
    gaps = logits.amax(dim=1, keepdim=True) - logits
    penalty = (gaps - margin).relu().mean(dim=1)
    values = torch.where(target != ignore_index, values + alpha * penalty, 0.0)
    return reduce_loss(values, target, weight, ignore_index, reduction, logits)


class DualFocalLoss(FocalLoss):
    """Module form of :func:`dual_focal_loss`: :class:`FocalLoss`'s fixed γ (default 5 here),
    its own formula.

    Example:
        >>> import torch
        >>> criterion = DualFocalLoss(gamma=5.0)
        >>> loss = criterion(torch.randn(8, 10, requires_grad=True), torch.randint(10, (8,)))
        >>> loss.backward()
    """

    def __init__(
        self,
        gamma: float = 5.0,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(gamma, weight, ignore_index, reduction)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return dual_focal_loss(
            logits, target, self.gamma, self.weight, self.ignore_index, self.reduction
        )


class MarginLabelSmoothingLoss(WeightedLoss):
    """Module form of :func:`margin_label_smoothing_loss`; the defaults are the authors'.

    Example:
        >>> MarginLabelSmoothingLoss()
        MarginLabelSmoothingLoss(margin=10.0, alpha=0.1, ignore_index=-100, reduction='mean')
    """

    def __init__(
        self,
        margin: float = 10.0,
        alpha: float = 0.1,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
    ) -> None:
        _check_margin(margin, alpha)
        super().__init__(weight, ignore_index, reduction)
        self.margin, self.alpha = margin, alpha

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return margin_label_smoothing_loss(
            logits, target, self.margin, self.alpha, self.weight, self.ignore_index,
            self.reduction,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"margin={self.margin}, alpha={self.alpha}, {super().extra_repr()}"
