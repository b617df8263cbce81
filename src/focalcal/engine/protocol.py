"""``TrainConfig.protocol``: train by the paper's formulas or as its released code does.

``"focalcal"`` (the default) trains the config as written. ``"official-code"`` reproduces the
four places where the paper's code (``torrvision/focal_calibration``) differs from its
formulas, all decided here:

1. the lr schedule steps at the start of each epoch, so every milestone takes effect one epoch
   early (:func:`lr_schedule`);
2. label smoothing puts ε/(K − 1) on each other class and 1 − ε on the label
   (``LabelSmoothingLoss(spread="others")``);
3. the Brier score is averaged over the batch, every other loss summed, and the gradient norm
   is clipped at 2 (``reduction`` is overridden; ``grad_clip`` becomes 2 where it is ``None``);
4. MMCE is computed as that code computes it (``MMCELoss(form="official-code")``: the weighted
   one divided twice by its group sizes, the unweighted one not square-rooted).

A loss option the config sets explicitly (``loss_options={spread = "all"}``) is kept.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from focalcal.engine.config import TrainConfig
from focalcal.losses import BrierLoss, LabelSmoothingLoss, MMCELoss, build_loss

OFFICIAL_GRAD_CLIP = 2.0
"""The gradient-norm clip of the official code's every run."""

# The options that make a loss of this type compute what the official code computes.
_OFFICIAL_LOSS_OPTIONS: dict[type[nn.Module], dict[str, Any]] = {
    LabelSmoothingLoss: {"spread": "others"},
    MMCELoss: {"form": "official-code"},
}


def apply_protocol(config: TrainConfig) -> TrainConfig:
    """The config a run trains with: ``config`` itself under ``protocol="focalcal"``; under
    ``"official-code"`` a copy whose ``reduction`` is ``"mean"`` for the Brier score and
    ``"sum"`` for every other loss, whose ``grad_clip`` is 2 unless set, and whose
    ``loss_options`` add the official code's label smoothing and MMCE (see the module).

    Example:
        >>> official = TrainConfig(loss="ls-0.05", protocol="official-code")
        >>> used = apply_protocol(official)
        >>> used.reduction, used.grad_clip, used.loss_options
        ('sum', 2.0, {'spread': 'others'})
        >>> apply_protocol(official.replace(loss="brier", grad_clip=5.0)).reduction
        'mean'
        >>> apply_protocol(TrainConfig(loss="ls-0.05")).loss_options
        {}
    """
    if config.protocol == "focalcal":
        return config
    loss = build_loss(config.loss, **config.loss_options)  # its type says what to change
    options = next((o for t, o in _OFFICIAL_LOSS_OPTIONS.items() if isinstance(loss, t)), {})
    return config.replace(
        reduction="mean" if isinstance(loss, BrierLoss) else "sum",
        grad_clip=OFFICIAL_GRAD_CLIP if config.grad_clip is None else config.grad_clip,
        loss_options={**options, **config.loss_options},
    )


def lr_schedule(
    config: TrainConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.MultiStepLR:
    """The lr schedule, which the loop steps after every epoch: the lr is multiplied by
    ``lr_decay`` from epoch ``m + 1`` on for each milestone ``m`` (it trains ``m`` epochs at
    the previous rate). Under ``protocol="official-code"`` it starts one step ahead, as the
    official code's, which steps at the start of each epoch (on PyTorch ≥ 1.1): the rate
    drops from epoch ``m`` on.

    Example:
        >>> model = torch.nn.Linear(2, 2)
        >>> config = TrainConfig(epochs=4, milestones=[2], lr=0.1)
        >>> for protocol in ("focalcal", "official-code"):
        ...     optimizer = torch.optim.SGD(model.parameters(), config.lr)
        ...     schedule = lr_schedule(config.replace(protocol=protocol), optimizer)
        ...     rates = []
        ...     for epoch in range(config.epochs):
        ...         rates.append(round(optimizer.param_groups[0]["lr"], 6))
        ...         optimizer.step()
        ...         schedule.step()
        ...     print(protocol, rates)
        focalcal [0.1, 0.1, 0.01, 0.01]
        official-code [0.1, 0.01, 0.01, 0.01]
    """
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.milestones, config.lr_decay)
    if config.protocol == "official-code":
        with warnings.catch_warnings():  # the step before any optimizer step is the point
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            schedule.step()
    return schedule
