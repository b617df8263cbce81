"""Losses for calibrated classifiers, with ``torch.nn.CrossEntropyLoss``'s conventions.

Every loss takes logits ``(N, C)`` or ``(N, C, d1, ...)`` and class indices ``(N)`` or
``(N, d1, ...)``, with ``weight``, ``ignore_index`` and ``reduction`` as in
``CrossEntropyLoss``; each has a functional form and a thin ``nn.Module``. A loss that adapts
during training (FLSc-531, AdaFocal) does so through one hook, :mod:`focalcal.losses.hooks`.
"""

from focalcal.losses.adafocal import AdaFocalLoss, adafocal_loss
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
from focalcal.losses.hooks import EpochAware, EpochStart, start_epoch
from focalcal.losses.registry import build_loss, loss_names
from focalcal.losses.successors import (
    DualFocalLoss,
    MarginLabelSmoothingLoss,
    dual_focal_loss,
    margin_label_smoothing_loss,
)

__all__ = [
    "FLSC_531_GAMMAS",
    "FLSC_531_MILESTONES",
    "FLSD_53",
    "FLSD_532",
    "AdaFocalLoss",
    "BrierLoss",
    "CrossEntropyLoss",
    "DualFocalLoss",
    "EpochAware",
    "EpochStart",
    "FocalLoss",
    "LabelSmoothingLoss",
    "MMCELoss",
    "MarginLabelSmoothingLoss",
    "SampleDependentFocalLoss",
    "ScheduledFocalLoss",
    "adafocal_loss",
    "brier_loss",
    "build_loss",
    "cross_entropy",
    "dual_focal_loss",
    "focal_loss",
    "gamma_for_threshold",
    "loss_names",
    "margin_label_smoothing_loss",
    "mmce",
    "mmce_loss",
    "sample_dependent_focal_loss",
    "sample_dependent_schedule",
    "scheduled_gamma",
    "start_epoch",
]
