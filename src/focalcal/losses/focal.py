"""The focal-loss family of Mukhoti et al. (NeurIPS 2020).

- :func:`focal_loss` — FL-γ, ``-(1 - p_t)^γ · log p_t`` with a fixed γ >= 0.
- :func:`sample_dependent_focal_loss` — γ chosen per sample from the detached ``p_t`` by a
  piecewise-constant schedule (FLSD-53, FLSD-532, or any other).
- :func:`gamma_for_threshold` and :func:`sample_dependent_schedule` — the paper's principled γ,
  through the Lambert W function.
- :func:`scheduled_gamma` and :class:`ScheduledFocalLoss` — γ by epoch (FLSc-531).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from scipy.special import lambertw
from torch import Tensor

from focalcal.losses._common import Reduction, check_gamma
from focalcal.losses._focal_paths import focal_values
from focalcal.losses.hooks import EpochStart
from focalcal.losses.modules import WeightedLoss

FLSD_53: tuple[tuple[float, ...], tuple[float, ...]] = ((0.2,), (5.0, 3.0))
FLSD_532: tuple[tuple[float, ...], tuple[float, ...]] = ((0.2, 0.5), (5.0, 3.0, 2.0))
FLSC_531_MILESTONES: tuple[float, ...] = (100 / 350, 250 / 350)
FLSC_531_GAMMAS: tuple[float, ...] = (5.0, 3.0, 1.0)


def focal_loss(
    logits: Tensor,
    target: Tensor,
    gamma: float = 3.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Focal loss FL-γ: :math:`-(1 - p_t)^\gamma \log p_t` (Lin et al. 2017).

    Args:
        logits: ``(N, C)`` or ``(N, C, d1, ...)`` unnormalised scores.
        target: ``(N)`` or ``(N, d1, ...)`` class indices in ``[0, C)`` or ``ignore_index``.
        gamma: focusing parameter, any float >= 0; γ = 0 is cross-entropy. The default 3 is
            the paper's FL-3.
        weight, ignore_index, reduction: as in :class:`torch.nn.CrossEntropyLoss`.

    Example:
        >>> import torch
        >>> logits, target = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
        >>> focal_loss(logits, target, gamma=0.0)  # cross-entropy
        tensor(0.1698)
        >>> focal_loss(logits, target, gamma=3.0)  # (1 - 0.8438)^3 x 0.1698
        tensor(0.0006)
    """
    check_gamma(gamma)
    return focal_values(logits, target, (), (gamma,), weight, ignore_index, reduction)


def _check_schedule(thresholds: Sequence[float], gammas: Sequence[float]) -> None:
    _check_schedule_once(tuple(thresholds), tuple(gammas))


@functools.lru_cache(maxsize=64)  # a loss checks its schedule at every call: once is enough
def _check_schedule_once(thresholds: tuple[float, ...], gammas: tuple[float, ...]) -> None:
    if len(gammas) != len(thresholds) + 1:
        raise ValueError(
            f"a schedule with {len(thresholds)} threshold(s) needs {len(thresholds) + 1} "
            f"gammas, got {len(gammas)}"
        )
    if any(not 0.0 < t < 1.0 for t in thresholds) or list(thresholds) != sorted(set(thresholds)):
        raise ValueError(f"thresholds must increase strictly within (0, 1), got {thresholds}")
    for g in gammas:
        check_gamma(g, "every gamma")


def sample_dependent_focal_loss(
    logits: Tensor,
    target: Tensor,
    thresholds: Sequence[float] = FLSD_53[0],
    gammas: Sequence[float] = FLSD_53[1],
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Focal loss with a sample-dependent γ (FLSD): γ_i is picked from the detached ``p_t,i``.

    With thresholds :math:`t_1 < \dots < t_K` and gammas :math:`g_0, \dots, g_K`, a sample with
    :math:`t_k \le p_t < t_{k+1}` gets :math:`g_k` (:math:`t_0 = 0`, :math:`t_{K+1} = \infty`).
    The defaults are FLSD-53: γ = 5 for ``p_t < 0.2``, else 3. FLSD-532 is
    ``thresholds=(0.2, 0.5), gammas=(5, 3, 2)``.

    Example:
        >>> import torch
        >>> logits, target = torch.tensor([[0.0, 3.0], [3.0, 0.0]]), torch.tensor([0, 0])
        >>> fl5, fl3 = (focal_loss(logits, target, g, reduction="none") for g in (5.0, 3.0))
        >>> flsd = sample_dependent_focal_loss(logits, target, reduction="none")
        >>> torch.allclose(flsd, torch.stack([fl5[0], fl3[1]]))  # p_t = 0.05 and 0.95
        True
    """
    thresholds, gammas = tuple(thresholds), tuple(gammas)
    _check_schedule(thresholds, gammas)
    return focal_values(logits, target, thresholds, gammas, weight, ignore_index, reduction)


def gamma_for_threshold(p0: float) -> float:
    r"""The γ whose focal-loss gradient equals the cross-entropy gradient at ``p_t = p0``.

    Solves :math:`g(p_0, \gamma) = 1` with
    :math:`g(p, \gamma) = (1-p)^\gamma - \gamma p (1-p)^{\gamma-1} \ln p`, in closed form:
    :math:`\gamma = \frac{1-p}{p \ln p} + \frac{W_{-1}(z)}{\ln(1-p)}`,
    :math:`z = -\frac{\ln(1-p)}{p \ln p}(1-p)^{1 - \frac{1-p}{p \ln p}}`, with :math:`W_{-1}`
    the lower branch of the Lambert W function (the upper branch gives the trivial root γ = 0).
    Samples with ``p_t < p0`` then get a larger gradient than under cross-entropy, samples
    above it a smaller one. A root γ > 0 exists only for ``0 < p0 < 0.5``.

    Example:
        >>> round(gamma_for_threshold(0.2), 2), round(gamma_for_threshold(0.25), 2)
        (4.85, 3.07)
    """
    if not 0.0 < p0 < 0.5:
        raise ValueError(
            f"p0 must lie in (0, 0.5), got {p0!r}: for p0 >= 0.5 no γ > 0 makes the focal "
            "gradient equal the cross-entropy gradient"
        )
    q, log_p, log_q = 1.0 - p0, math.log(p0), math.log1p(-p0)
    ratio = q / (p0 * log_p)
    z = -(log_q / (p0 * log_p)) * math.exp((1.0 - ratio) * log_q)
    w = lambertw(z, k=-1)
    return float(ratio + np.real(w) / log_q)


def sample_dependent_schedule(
    p0s: Sequence[float], round_gammas: bool = True
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A sample-dependent schedule ``(thresholds, gammas)`` from increasing probabilities.

    Bin ``k`` gets ``gamma_for_threshold(p0s[k])``; the bins are split at ``p0s[:-1]``, so the
    last probability sets the γ of every sample above the second-to-last one. The paper's
    FLSD-53 is ``sample_dependent_schedule([0.2, 0.25])``: γ(0.2) = 4.85 -> 5 below 0.2,
    γ(0.25) = 3.07 -> 3 above.

    Example:
        >>> sample_dependent_schedule([0.2, 0.25])
        ((0.2,), (5.0, 3.0))
    """
    if not p0s:
        raise ValueError("p0s must hold at least one probability")
    gammas = [gamma_for_threshold(p) for p in p0s]
    if round_gammas:
        gammas = [float(round(g)) for g in gammas]
    thresholds = tuple(float(p) for p in p0s[:-1])
    _check_schedule(thresholds, gammas)
    return thresholds, tuple(gammas)


def scheduled_gamma(
    epoch: int,
    epochs: int,
    milestones: Sequence[float] = FLSC_531_MILESTONES,
    gammas: Sequence[float] = FLSC_531_GAMMAS,
) -> float:
    """γ for a 0-based ``epoch`` of a run of ``epochs``: ``gammas[k]`` from milestone ``k``.

    Milestones are fractions of the run; γ changes at epoch ``round(fraction × epochs)``, so
    FLSc-531 (the defaults) is γ = 5, then 3 from epoch 100, then 1 from epoch 250 of 350.

    Example:
        >>> [scheduled_gamma(e, 350) for e in (0, 99, 100, 249, 250, 349)]
        [5.0, 5.0, 3.0, 3.0, 1.0, 1.0]
    """
    if epochs < 1 or not 0 <= epoch < epochs:
        raise ValueError(f"epoch must lie in [0, epochs) with epochs >= 1, got {epoch}/{epochs}")
    _check_schedule(milestones, gammas)
    passed = sum(epoch >= math.floor(m * epochs + 0.5) for m in milestones)
    return float(gammas[passed])


class FocalLoss(WeightedLoss):
    """Module form of :func:`focal_loss`.

    Example:
        >>> import torch
        >>> criterion = FocalLoss(gamma=3.0)
        >>> loss = criterion(torch.randn(8, 10, requires_grad=True), torch.randint(10, (8,)))
        >>> loss.backward()
    """

    def __init__(
        self,
        gamma: float = 3.0,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
    ) -> None:
        check_gamma(gamma)
        super().__init__(weight, ignore_index, reduction)
        self.gamma = gamma

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return focal_loss(
            logits, target, self.gamma, self.weight, self.ignore_index, self.reduction
        )

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, {super().extra_repr()}"


class SampleDependentFocalLoss(WeightedLoss):
    """Module form of :func:`sample_dependent_focal_loss`; the defaults are FLSD-53."""

    def __init__(
        self,
        thresholds: Sequence[float] = FLSD_53[0],
        gammas: Sequence[float] = FLSD_53[1],
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
    ) -> None:
        _check_schedule(thresholds, gammas)
        super().__init__(weight, ignore_index, reduction)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.gammas = tuple(float(g) for g in gammas)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return sample_dependent_focal_loss(
            logits, target, self.thresholds, self.gammas, self.weight, self.ignore_index,
            self.reduction,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"thresholds={self.thresholds}, gammas={self.gammas}, {super().extra_repr()}"


class ScheduledFocalLoss(WeightedLoss):
    """Focal loss whose γ follows the epoch (FLSc); the defaults are FLSc-531.

    Call :meth:`set_epoch` (or the training loop's hook :meth:`start_epoch`) at the start of
    every epoch; until then γ is ``gammas[0]``.

    Example:
        >>> criterion = ScheduledFocalLoss()
        >>> criterion.set_epoch(100, epochs=350)
        >>> criterion.gamma
        3.0
    """

    def __init__(
        self,
        milestones: Sequence[float] = FLSC_531_MILESTONES,
        gammas: Sequence[float] = FLSC_531_GAMMAS,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
    ) -> None:
        _check_schedule(milestones, gammas)
        super().__init__(weight, ignore_index, reduction)
        self.milestones = tuple(float(m) for m in milestones)
        self.gammas = tuple(float(g) for g in gammas)
        self.gamma = self.gammas[0]

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Use the γ of 0-based ``epoch`` in a run of ``epochs`` (see :func:`scheduled_gamma`)."""
        self.gamma = scheduled_gamma(epoch, epochs, self.milestones, self.gammas)

    def start_epoch(self, epoch: EpochStart) -> None:
        """The training loop's hook (:mod:`focalcal.losses.hooks`): :meth:`set_epoch`."""
        self.set_epoch(epoch.epoch, epoch.epochs)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return focal_loss(
            logits, target, self.gamma, self.weight, self.ignore_index, self.reduction
        )

    def extra_repr(self) -> str:
        return (
            f"milestones={self.milestones}, gammas={self.gammas}, gamma={self.gamma}, "
            f"{super().extra_repr()}"
        )
