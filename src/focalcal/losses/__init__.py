"""Losses for calibrated classifiers, with ``torch.nn.CrossEntropyLoss``'s conventions.

Every loss takes logits ``(N, C)`` or ``(N, C, d1, ...)`` and class indices ``(N)`` or
``(N, d1, ...)``, with ``weight``, ``ignore_index`` and ``reduction`` as in
``CrossEntropyLoss``; each has a functional form and a thin ``nn.Module``.
"""

from focalcal.losses.baselines import (
    BrierLoss,
    CrossEntropyLoss,
    LabelSmoothingLoss,
    MMCELoss,
    brier_loss,
    cross_entropy,
    mmce,
    mmce_loss,
)
from focalcal.losses.focal import (
    FLSC_531_GAMMAS,
    FLSC_531_MILESTONES,
    FLSD_53,
    FLSD_532,
    FocalLoss,
    SampleDependentFocalLoss,
    ScheduledFocalLoss,
    focal_loss,
    gamma_for_threshold,
    sample_dependent_focal_loss,
    sample_dependent_schedule,
    scheduled_gamma,
)
from focalcal.losses.registry import build_loss, loss_names

__all__ = [
    "FLSC_531_GAMMAS",
    "FLSC_531_MILESTONES",
    "FLSD_53",
    "FLSD_532",
    "BrierLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "LabelSmoothingLoss",
    "MMCELoss",
    "SampleDependentFocalLoss",
    "ScheduledFocalLoss",
    "brier_loss",
    "build_loss",
    "cross_entropy",
    "focal_loss",
    "gamma_for_threshold",
    "loss_names",
    "mmce",
    "mmce_loss",
    "sample_dependent_focal_loss",
    "sample_dependent_schedule",
    "scheduled_gamma",
]
