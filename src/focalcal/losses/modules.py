"""The base of every loss module: it stores what ``torch.nn.CrossEntropyLoss`` stores."""

from __future__ import annotations

from torch import Tensor, nn

from focalcal.losses._common import Reduction, check_reduction


class WeightedLoss(nn.Module):
    """Holds ``weight`` (a buffer, so it follows ``.to(device)``), ``ignore_index`` and
    ``reduction``; subclasses store their hyperparameters and call their functional form."""

    weight: Tensor | None

    def __init__(
        self, weight: Tensor | None = None, ignore_index: int = -100, reduction: Reduction = "mean"
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction: Reduction = reduction

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}"
