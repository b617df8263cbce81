"""The one type every dataset loader returns: tensors plus what is needed to use them."""

from __future__ import annotations

from collections.abc import Sequence
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

    def keep_classes(self, classes: Sequence[int]) -> Dataset:
        """The samples of ``classes`` (indices into :attr:`classes`) only, in their order,
        relabelled ``classes[i]`` → ``i``; :attr:`classes` names the kept classes in that order.
        An index out of range or repeated is a ``ValueError`` naming it.

        Example:
            >>> import torch
            >>> data = Dataset(torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 2, 1]), ("a", "b", "c"))
            >>> kept = data.keep_classes([2, 1])
            >>> kept.labels.tolist(), kept.classes
            ([1, 0, 1], ('c', 'b'))
        """
        indices = list(classes)
        for index in indices:
            if (
                isinstance(index, bool)
                or not isinstance(index, int)
                or not 0 <= index < len(self.classes)
            ):
                raise ValueError(
                    f"class index {index!r} is out of range: the dataset has {len(self.classes)} "
                    f"classes (0 to {len(self.classes) - 1})"
                )
        if len(set(indices)) != len(indices) or not indices:
            raise ValueError(f"classes must be distinct class indices, at least one, got {indices}")
        relabel = torch.full((len(self.classes),), -1, device=self.labels.device)
        relabel[indices] = torch.arange(len(indices), device=self.labels.device)
        new_labels = relabel[self.labels]
        keep = new_labels >= 0
        return Dataset(
            self.inputs[keep],
            new_labels[keep],
            tuple(self.classes[i] for i in indices),
            self.mean,
            self.std,
            self.vocabulary,
        )
