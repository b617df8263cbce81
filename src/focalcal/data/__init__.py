"""Datasets as tensors, a tensor-resident batch loader, and dataset-shift corruptions.

>>> from focalcal.data import BatchLoader, load_dataset
>>> train = load_dataset("mnist1d", split="train", subset=256)
>>> x, y = next(iter(BatchLoader(train, batch_size=64, shuffle=True)))
>>> tuple(x.shape), y.dtype
((64, 1, 40), torch.int64)
"""

from focalcal.data.corruptions import CORRUPTIONS, corrupt
from focalcal.data.dataset import Dataset
from focalcal.data.download import RemoteFile, data_root, fetch
from focalcal.data.loader import BatchLoader, random_crop_flip
from focalcal.data.registry import (
    dataset_kind,
    dataset_label,
    dataset_names,
    load_dataset,
    register_dataset,
)
from focalcal.data.splits import train_validation_indices

__all__ = [
    "CORRUPTIONS",
    "BatchLoader",
    "Dataset",
    "RemoteFile",
    "corrupt",
    "data_root",
    "dataset_kind",
    "dataset_label",
    "dataset_names",
    "fetch",
    "load_dataset",
    "random_crop_flip",
    "register_dataset",
    "train_validation_indices",
]
