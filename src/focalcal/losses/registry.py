"""The paper's names for losses: ``build_loss("flsd-53")`` returns a ready ``nn.Module``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from focalcal._checks import unknown_name
from focalcal.losses.adafocal import AdaFocalLoss
from focalcal.losses.baselines import BrierLoss, CrossEntropyLoss, LabelSmoothingLoss, MMCELoss
from focalcal.losses.focal import (
    FLSD_53,
    FLSD_532,
    FocalLoss,
    SampleDependentFocalLoss,
    ScheduledFocalLoss,
)
from focalcal.losses.successors import DualFocalLoss, MarginLabelSmoothingLoss

# name -> (summary, constructor taking weight / ignore_index / reduction keywords)
_FIXED: dict[str, tuple[str, Callable[..., nn.Module]]] = {
    "ce": ("cross-entropy", CrossEntropyLoss),
    "brier": ("Brier score", BrierLoss),
    "mmce": (
        "cross-entropy + 2 x unweighted MMCE",
        lambda **kw: MMCELoss(weighted=False, **kw),
    ),
    "mmce-weighted": ("cross-entropy + 2 x weighted MMCE (the paper's)", MMCELoss),
    "flsd-53": (
        "sample-dependent focal loss: gamma 5 for p_t < 0.2, else 3",
        lambda **kw: SampleDependentFocalLoss(*FLSD_53, **kw),
    ),
    "flsd-532": (
        "sample-dependent focal loss: gamma 5 below 0.2, 3 below 0.5, else 2",
        lambda **kw: SampleDependentFocalLoss(*FLSD_532, **kw),
    ),
    "flsc-531": (
        "focal loss scheduled by epoch: gamma 5, 3 from 100/350 of the run, 1 from 250/350",
        ScheduledFocalLoss,
    ),
    "mbls": (
        "margin-based label smoothing: cross-entropy + 0.1 x logit gaps beyond 10",
        MarginLabelSmoothingLoss,
    ),
    "adafocal": (
        "AdaFocal: gamma per confidence bin, adapted every epoch to the validation calibration",
        AdaFocalLoss,
    ),
}

# prefix -> (summary, constructor taking the number after the prefix first)
_PARAMETRIC: dict[str, tuple[str, Callable[..., nn.Module]]] = {
    "fl": ("focal loss with a fixed gamma, e.g. fl-3", lambda v, **kw: FocalLoss(v, **kw)),
    "ls": ("label smoothing epsilon, e.g. ls-0.05", lambda v, **kw: LabelSmoothingLoss(v, **kw)),
    "dual-focal": (
        "dual focal loss with a fixed gamma, e.g. dual-focal-5",
        lambda v, **kw: DualFocalLoss(v, **kw),
    ),
}


def loss_names() -> dict[str, str]:
    """Every name :func:`build_loss` accepts (``<x>`` marks a number), with a summary."""
    names = {name: summary for name, (summary, _) in _FIXED.items()}
    names.update({f"{prefix}-<x>": summary for prefix, (summary, _) in _PARAMETRIC.items()})
    return names


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a loss from its name in the paper; ``kwargs`` go to its constructor.

    Example:
        >>> build_loss("fl-3")
        FocalLoss(gamma=3.0, ignore_index=-100, reduction='mean')
        >>> build_loss("dual-focal-5")
        DualFocalLoss(gamma=5.0, ignore_index=-100, reduction='mean')
        >>> build_loss("mbls", margin=6.0)
        MarginLabelSmoothingLoss(margin=6.0, alpha=0.1, ignore_index=-100, reduction='mean')
        >>> build_loss("flsd-53", reduction="sum")
        SampleDependentFocalLoss(thresholds=(0.2,), gammas=(5.0, 3.0), ignore_index=-100, reduction='sum')
    """  # noqa: E501
    key = name.strip().lower()
    if key in _FIXED:
        return _FIXED[key][1](**kwargs)
    # A prefix may hold hyphens ("dual-focal") and the number too ("fl-1e-3"): match whole
    # prefixes, the longest first.
    for prefix in sorted(_PARAMETRIC, key=len, reverse=True):
        number = key.removeprefix(f"{prefix}-")
        if number and number != key:
            try:
                value = float(number)
            except ValueError:
                raise ValueError(f"loss {name!r}: {number!r} is not a number") from None
            return _PARAMETRIC[prefix][1](value, **kwargs)
    raise unknown_name("loss", name, list(loss_names()))
