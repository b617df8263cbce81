"""The one type every dataset loader returns: tensors plus what is needed to use them."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Dataset:
    """One split of a dataset, held as tensors.

    ``inputs``: images as ``uint8`` ``(N, C, H, W)``; 1-D signals as ``float32`` ``(N, C, L)``;
    text as ``int64`` token ids (``(N, L)`` padded with 0, or ``(N, M, 3)`` trees for SST).
    ``labels``: ``int64`` ``(N,)`` in ``[0, len(classes))``. ``mean``/``std``: per-channel
    normalisation constants on the 0–1 scale (``None`` for text). ``vocabulary``: the words whose
    ids the inputs hold (text only; id 0 is padding, id 1 the unknown word).
    """

    inputs: Tensor
    labels: Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    vocabulary: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise ValueError(
                f"labels must be int64 of shape (N,), got {self.labels.dtype} "
                f"{tuple(self.labels.shape)}"
            )
        if len(self.inputs) != len(self.labels):
            raise ValueError(f"{len(self.inputs)} inputs but {len(self.labels)} labels")
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < len(
            self.classes
        ):
            raise ValueError(
                f"labels must lie in [0, {len(self.classes)}), got "
                f"[{int(self.labels.min())}, {int(self.labels.max())}]"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, index: Tensor) -> Dataset:
        """The samples at ``index`` (a 1-D index or boolean tensor), everything else shared."""
        return Dataset(
            self.inputs[index],
            self.labels[index],
            self.classes,
            self.mean,
            self.std,
            self.vocabulary,
        )
