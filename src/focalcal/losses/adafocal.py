"""AdaFocal (Ghosh, Schaaf & Gormley, NeurIPS 2022): focal loss with one γ per confidence bin,
adapted after every epoch to the calibration of the validation split.

The bins are equal-mass bins of the validation split's top-label confidence (15 by default).
After each epoch, bin ``b``'s gap ``E_b = mean confidence − accuracy`` updates its γ:

- ``γ_b ← γ_b · exp(λ E_b)`` where ``γ_b > 0`` (over-confidence raises γ, under-confidence
  lowers it), ``γ_b ← γ_b · exp(−λ E_b)`` where ``γ_b ≤ 0``;
- where ``|γ_b|`` falls below the switch point ``s`` (0.2), γ jumps to the other side:
  ``−s`` from a positive γ, ``+s`` from a negative one;
- γ is clipped to ``[γ_min, γ_max]`` = [−2, 20].

A training sample's γ is that of the bin its ``p_t`` (the probability of its target, detached)
falls in, with the bins' lower edges from the last validation pass (equal-width edges, and
γ = 1 everywhere, before the first update). A positive γ gives the focal loss
``−(1 − p_t)^γ log p_t``; a negative one the inverse focal loss ``−(1 + p_t)^|γ| log p_t``,
which pushes confidence up. The defaults are the authors' published ones (λ = 1, γ₀ = 1,
s = 0.2, γ ∈ [−2, 20], 15 bins).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from focalcal.losses._common import Reduction, check_inputs, nll, reduce_loss
from focalcal.losses.hooks import EpochStart
from focalcal.losses.modules import WeightedLoss
from focalcal.metrics.binning import equal_mass_edges, histogram


def adafocal_loss(
    logits: Tensor,
    target: Tensor,
    gammas: Tensor,
    edges: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Focal loss with γ chosen per element from its bin: ``gammas[b]`` where
    ``edges[b - 1] <= p_t < edges[b]`` (bin 0 below ``edges[0]``, the last bin from
    ``edges[-1]``); :math:`-(1 - p_t)^\gamma \log p_t` for γ ≥ 0,
    :math:`-(1 + p_t)^{|\gamma|} \log p_t` for γ < 0.

    Args:
        logits: ``(N, C)`` or ``(N, C, d1, ...)`` unnormalised scores.
        target: ``(N)`` or ``(N, d1, ...)`` class indices in ``[0, C)`` or ``ignore_index``.
        gammas: ``(B,)`` γ of each bin, any finite floats.
        edges: ``(B - 1,)`` increasing inner bin edges in [0, 1].
        weight, ignore_index, reduction: as in :class:`torch.nn.CrossEntropyLoss`.

    Example:
        >>> import torch
        >>> logits, target = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0])
        >>> # p_t = 0.88 and 0.12: γ = 2 above 0.5, γ = -1 (inverse focal) below
        >>> adafocal_loss(logits, target, torch.tensor([-1.0, 2.0]), torch.tensor([0.5]),
        ...               reduction="none")
        tensor([1.8036e-03, 2.3805e+00])
    """
    logits, target, weight = check_inputs(logits, target, weight, reduction)
    if gammas.ndim != 1 or edges.shape != (gammas.numel() - 1,):
        raise ValueError(
            f"gammas must have shape (B,) and edges (B - 1,), got {tuple(gammas.shape)} and "
            f"{tuple(edges.shape)}"
        )
    values = nll(logits.log_softmax(1), target, ignore_index)
    p_t = torch.exp(-values.detach())
    gamma = gammas.to(values.dtype)[torch.bucketize(p_t, edges.to(p_t.dtype), right=True)]
    # Focal where γ >= 0: 1 - p_t, bounded below as in the other focal losses (the derivative
    # of x^γ for γ < 1 diverges at 0); inverse focal where γ < 0: 1 + p_t.
    one_minus_pt = -torch.expm1(-values)
    base = torch.where(
        gamma >= 0, one_minus_pt.clamp_min(torch.finfo(values.dtype).tiny), 2.0 - one_minus_pt
    )
    values = torch.exp(gamma.abs() * base.log()) * values
    return reduce_loss(values, target, weight, ignore_index, reduction, logits)


class AdaFocalLoss(WeightedLoss):
    """AdaFocal: :func:`adafocal_loss` with γ per bin updated by :meth:`start_epoch` from the
    validation split's calibration (see the module's description).

    ``gammas`` (``(num_bins,)``) and ``edges`` (``(num_bins - 1,)``) are buffers: they follow
    ``.to(device)`` and are saved in ``state_dict()``, so a checkpoint resumes them.

    Example:
        >>> import torch
        >>> from focalcal.losses.hooks import EpochStart
        >>> criterion = AdaFocalLoss(num_bins=2)
        >>> # an over-confident validation split: confidence 0.9 and 0.7, one of 4 right
        >>> logits = torch.tensor([[2.2, 0.0]] * 2 + [[0.85, 0.0]] * 2)
        >>> criterion.start_epoch(EpochStart(1, 10, logits, torch.tensor([0, 1, 1, 1])))
        >>> criterion.gammas  # bin 1: conf 0.9 - acc 0.5; bin 0: conf 0.7 - acc 0
        tensor([2.0149, 1.4922])
    """

    gammas: Tensor
    edges: Tensor

    def __init__(
        self,
        num_bins: int = 15,
        lam: float = 1.0,
        gamma_initial: float = 1.0,
        gamma_min: float = -2.0,
        gamma_max: float = 20.0,
        switch: float = 0.2,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
    ) -> None:
        if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
            raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}")
        numbers = {"lam": lam, "gamma_initial": gamma_initial, "gamma_min": gamma_min,
                   "gamma_max": gamma_max, "switch": switch}  # fmt: skip
        for name, value in numbers.items():
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite float, got {value!r}")
        if not gamma_min <= gamma_initial <= gamma_max or lam < 0 or switch < 0:
            raise ValueError(
                "need gamma_min <= gamma_initial <= gamma_max, lam >= 0 and switch >= 0, got "
                + ", ".join(f"{k}={v}" for k, v in numbers.items())
            )
        super().__init__(weight, ignore_index, reduction)
        self.lam, self.gamma_min, self.gamma_max, self.switch = lam, gamma_min, gamma_max, switch
        self.register_buffer("gammas", torch.full((num_bins,), float(gamma_initial)))
        self.register_buffer("edges", torch.arange(1, num_bins) / num_bins)

    def start_epoch(self, epoch: EpochStart) -> None:
        """Update every bin's γ from the validation split's gap between confidence and
        accuracy, and move the bin edges to its equal-mass edges; nothing without validation
        logits (the first epoch)."""
        if epoch.val_logits is None or epoch.val_labels is None:
            return
        if len(epoch.val_logits) == 0:
            raise ValueError("AdaFocal needs a non-empty validation split")
        confidence, prediction = epoch.val_logits.detach().double().softmax(1).max(1)
        correct = (prediction == epoch.val_labels).double()
        num_bins = self.gammas.numel()
        edges = equal_mass_edges(confidence.sort().values, num_bins)
        # Bin b holds edges[b] <= confidence < edges[b + 1] (the last bin up to 1), as in
        # training; an empty bin (ties) has no gap and keeps its γ.
        index = torch.bucketize(confidence, edges[1:-1], right=True)
        count = histogram(index, num_bins)  # no host sync on CUDA (bincount reads the max)
        gap = (histogram(index, num_bins, confidence - correct) / count).nan_to_num()
        self.gammas = self.updated(self.gammas.double(), gap).to(self.gammas)
        self.edges = edges[1:-1].to(self.edges)

    def updated(self, gammas: Tensor, gap: Tensor) -> Tensor:
        """The AdaFocal rule: ``γ exp(±λ gap)``, the switch at ``|γ| < s``, the clip."""
        step = torch.where(gammas > 0, gap, -gap)
        new = gammas * torch.exp(self.lam * step)
        flipped = torch.where(new > 0, -self.switch, self.switch)
        new = torch.where(new.abs() < self.switch, flipped, new)
        return new.clamp(self.gamma_min, self.gamma_max)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return adafocal_loss(
            logits, target, self.gammas, self.edges, self.weight, self.ignore_index,
            self.reduction,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"num_bins={self.gammas.numel()}, lam={self.lam}, gamma_min={self.gamma_min}, "
            f"gamma_max={self.gamma_max}, switch={self.switch}, {super().extra_repr()}"
        )
