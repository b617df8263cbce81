"""Batches from tensors kept on the training device, augmented in batches there.

The dataset moves to the device once, as uint8; each batch is gathered, randomly cropped and
flipped by one indexing op, then converted to float and normalised. All randomness (the order,
the crop offsets, the flips) is drawn on the CPU from a generator seeded with ``seed`` and the
epoch, so a run is the same on any device and for any number of processes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from focalcal.data.dataset import Dataset


def crop_flip_index(
    height: int, width: int, padding: int, shifts: Tensor, flips: Tensor
) -> Tensor:  # fmt: skip
    """Flat indices into padded ``(H + 2p) × (W + 2p)`` images that crop and flip them.

    ``shifts`` ``(B, 2)`` holds each image's crop offsets (row, column) in ``[0, 2p]``; ``flips``
    ``(B,)`` whether to mirror it. Returns ``(B, H·W)``.
    """
    rows = shifts[:, :1] + torch.arange(height, device=shifts.device)
    columns = torch.arange(width, device=shifts.device).expand(len(flips), width)
    columns = shifts[:, 1:] + torch.where(flips[:, None], width - 1 - columns, columns)
    return (rows[:, :, None] * (width + 2 * padding) + columns[:, None, :]).flatten(1)


def random_crop_flip(images: Tensor, padding: int, shifts: Tensor, flips: Tensor) -> Tensor:
    """Zero-pad ``images`` ``(B, C, H, W)`` by ``padding``, crop back to H × W at ``shifts`` and
    mirror where ``flips``: torchvision's ``RandomCrop(padding=p)`` + ``RandomHorizontalFlip``,
    for a whole batch in one gather."""
    batch, channels, height, width = images.shape
    padded = F.pad(images, (padding,) * 4).flatten(2)
    index = crop_flip_index(
        height, width, padding, shifts.to(images.device), flips.to(images.device)
    )
    gathered = padded.gather(2, index[:, None, :].expand(batch, channels, -1))
    return gathered.view(batch, channels, height, width)


class BatchLoader:
    """Iterate over ``(inputs, labels)`` batches of a :class:`Dataset` held on ``device``.

    - ``shuffle``: a new order every epoch (call :meth:`set_epoch`, as with
      ``DistributedSampler``); otherwise the dataset's order.
    - ``augment``: random crop with ``padding`` and horizontal flip (images only).
    - Images (uint8) come out as ``(x / 255 − mean) / std``; float signals as
      ``(x − mean) / std``, both in torch's default dtype (float32 unless
      ``torch.set_default_dtype`` changed it when the loader was made, as for the model's
      weights); token ids unchanged.
    - Under ``torch.distributed`` (or with ``rank``/``world_size``), each process gets every
      ``world_size``-th sample; when shuffling, the order is padded by repeating its start so all
      processes run the same number of steps (evaluation never repeats a sample).

    >>> images = torch.zeros(10, 1, 4, 4, dtype=torch.uint8)
    >>> data = Dataset(images, torch.arange(10) % 2, ("a", "b"), mean=(0.5,), std=(0.25,))
    >>> loader = BatchLoader(data, batch_size=4, shuffle=True, augment=True, seed=0)
    >>> [tuple(x.shape) for x, _ in loader], float(next(iter(loader))[0].min())
    ([(4, 1, 4, 4), (4, 1, 4, 4), (2, 1, 4, 4)], -2.0)
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        padding: int = 4,
        drop_last: bool = False,
        seed: int = 0,
        device: torch.device | str | None = None,
        channels_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not len(dataset):
            raise ValueError("the dataset is empty: a BatchLoader needs at least one sample")
        if augment and dataset.inputs.dim() != 4:
            raise ValueError(
                "augment needs images (N, C, H, W), got inputs of shape "
                f"{tuple(dataset.inputs.shape)}"
            )
        distributed = dist.is_available() and dist.is_initialized()
        self.world_size = world_size or (dist.get_world_size() if distributed else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if distributed else 0)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must lie in [0, {self.world_size}), got {self.rank}")
        self.device = torch.device(device) if device is not None else dataset.inputs.device
        self.inputs = dataset.inputs.to(self.device)
        self.labels = dataset.labels.to(self.device)
        self.batch_size, self.shuffle, self.augment, self.padding = (
            batch_size,
            shuffle,
            augment,
            padding,
        )
        self.drop_last, self.seed, self.epoch, self.channels_last = (
            drop_last,
            seed,
            0,
            channels_last,
        )
        self.scale = self._constants(dataset.mean, dataset.std)

    def _constants(
        self, mean: Sequence[float] | None, std: Sequence[float] | None
    ) -> tuple[Tensor, Tensor] | None:
        numeric = self.inputs.dtype == torch.uint8 or self.inputs.is_floating_point()
        if mean is None or std is None or not numeric:  # token ids pass through
            return None
        shape = (1, -1) + (1,) * (self.inputs.dim() - 2)
        dtype = torch.get_default_dtype()
        mean_t = torch.tensor(mean, dtype=dtype, device=self.device).view(shape)
        std_t = torch.tensor(std, dtype=dtype, device=self.device).view(shape)
        if self.inputs.dtype == torch.uint8:  # fold the 1/255 into the affine map
            return 1 / (255 * std_t), mean_t / std_t
        return 1 / std_t, mean_t / std_t

    def set_epoch(self, epoch: int) -> None:
        """Draw the next epoch's order and augmentation from ``seed`` and ``epoch``."""
        self.epoch = epoch

    def _plan(self) -> tuple[Tensor, Tensor, Tensor]:
        """This rank's sample order and its crop shifts and flips for the epoch. The draws are
        made for the whole epoch and then split by rank, so ``world_size`` processes see
        together exactly the batches (and augmentations) that one process would."""
        n = len(self.labels)
        order = torch.arange(n)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=generator)
            per_rank = -(-n // self.world_size)
            order = torch.cat([order, order[: per_rank * self.world_size - n]])
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch + 1)
        shifts = torch.randint(0, 2 * self.padding + 1, (len(order), 2), generator=generator)
        flips = torch.rand(len(order), generator=generator) < 0.5
        mine = slice(self.rank, None, self.world_size)
        return order[mine], shifts[mine], flips[mine]

    def __len__(self) -> int:
        total = len(self.labels)  # this rank's share, without drawing the epoch's plan
        n = (
            -(-total // self.world_size)
            if self.shuffle
            else len(range(self.rank, total, self.world_size))
        )
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order, shifts, flips = self._plan()
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        for start in range(0, stop, self.batch_size):
            index = order[start : start + self.batch_size].to(self.device)
            x = self.inputs[index]
            if self.augment:
                part = slice(start, start + self.batch_size)
                x = random_crop_flip(x, self.padding, shifts[part], flips[part])
            if self.scale is not None:
                multiplier, offset = self.scale
                x = torch.addcmul(-offset, x.to(multiplier.dtype), multiplier)
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[index]
