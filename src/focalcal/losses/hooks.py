"""The one coupling between a loss and a training loop: :meth:`EpochAware.start_epoch`.

A loss whose behaviour changes over training (FLSc-531's γ schedule, AdaFocal's per-bin γ)
implements ``start_epoch(epoch: EpochStart)``; a loop calls :func:`start_epoch` before every
epoch with the epoch's index and the validation logits of the model so far. The loss keeps
whatever state it needs in buffers, so ``criterion.state_dict()`` is everything a checkpoint
must hold to resume it. Losses without the method are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor, nn


@dataclass(frozen=True)
class EpochStart:
    """What a loss learns before each epoch.

    Attributes:
        epoch: the 0-based index of the epoch about to start.
        epochs: the number of epochs of the run.
        val_logits: ``(M, C)`` logits of the validation split from the model as it is now
            (after epoch ``epoch - 1``, in eval mode); ``None`` before the first epoch or
            where the loop has no validation split.
        val_labels: ``(M,)`` the validation labels (``None`` with ``val_logits``).
    """

    epoch: int
    epochs: int
    val_logits: Tensor | None = None
    val_labels: Tensor | None = None


@runtime_checkable
class EpochAware(Protocol):
    """A loss that adapts once per epoch."""

    def start_epoch(self, epoch: EpochStart) -> None:
        """Prepare for ``epoch`` (called before its first step)."""


def start_epoch(criterion: nn.Module, epoch: EpochStart) -> None:
    """Call ``criterion.start_epoch(epoch)`` if the loss has it; the loop's only call into a
    loss besides computing it.

    Example:
        >>> from focalcal.losses import build_loss
        >>> criterion = build_loss("flsc-531")
        >>> start_epoch(criterion, EpochStart(epoch=100, epochs=350))
        >>> criterion.gamma
        3.0
    """
    if isinstance(criterion, EpochAware):
        criterion.start_epoch(epoch)
