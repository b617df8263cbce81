"""CIFAR-10, CIFAR-100 (the python pickle archives) and CIFAR-10-C (the published ``.npy`` files).

Each is read straight from its published archive after the archive's checksum matched. The CIFAR
batches are pickles: they are unpickled with an unpickler that only builds numpy arrays, so even
a tampered archive cannot run code.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from typing import Any

import numpy as np
import torch
from torch import Tensor

from focalcal.data.download import RemoteFile, fetch

CIFAR10 = RemoteFile(
    "cifar-10-python.tar.gz",
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
)
CIFAR100 = RemoteFile(
    "cifar-100-python.tar.gz",
    "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
)
CIFAR10_C = RemoteFile(
    "CIFAR-10-C.tar",
    "https://zenodo.org/records/2535967/files/CIFAR-10-C.tar",
    md5="56bf5dcef84df0e2308c6dcbcbbd8499",
)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # the paper's
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
# (member prefix, training members, test members, label key, class-names member and key)
LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "labels", "batches.meta", "label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", "meta",
                 "fine_label_names"),
}  # fmt: skip
ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
           ("numpy._core.multiarray", "_reconstruct")}  # fmt: skip


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")
        return super().find_class(module, name)


def _members(path: os.PathLike[str], names: list[str]) -> dict[str, bytes]:
    """The named members' bytes, in one pass (a .tar.gz cannot seek back cheaply)."""
    found: dict[str, bytes] = {}
    with tarfile.open(path) as archive:
        for member in archive:
            if member.name in names and (file := archive.extractfile(member)) is not None:
                found[member.name] = file.read()
    missing = [name for name in names if name not in found]
    if missing:
        raise ValueError(f"{path}: no member {missing[0]!r} (not the published archive)")
    return found


def _unpickle(data: bytes, where: str) -> dict[str, Any]:
    try:
        batch = _ArraysOnly(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise ValueError(f"{where} is not a readable CIFAR batch ({error})") from error
    if not isinstance(batch, dict):
        raise ValueError(f"{where} is not a CIFAR batch")
    return batch


def _entry(batch: dict[str, Any], key: str, where: str) -> Any:
    try:
        return batch[key]
    except KeyError:
        raise ValueError(f"{where} has no {key!r} entry") from None


def load_cifar(
    name: str, root: str | os.PathLike[str] | None = None, split: str = "train", *,
    download: bool = False,
) -> tuple[Tensor, Tensor, tuple[str, ...]]:  # fmt: skip
    """Images ``(N, 3, 32, 32)`` uint8, labels ``(N,)`` int64 and class names of ``"cifar10"``
    or ``"cifar100"`` (fine labels), ``split`` ``"train"`` (50 000) or ``"test"`` (10 000)."""
    prefix, train, test, label_key, meta, names_key = LAYOUT[name]
    path = fetch(CIFAR10 if name == "cifar10" else CIFAR100, root, download=download)
    names = [f"{prefix}/{member}" for member in (train if split == "train" else test)]
    members = _members(path, [*names, f"{prefix}/{meta}"])
    images, labels = [], []
    for member in names:
        where = f"{path}: {member!r}"
        batch = _unpickle(members[member], where)
        data = np.asarray(_entry(batch, "data", where), np.uint8)
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32)))
        labels.append(torch.as_tensor(_entry(batch, label_key, where), dtype=torch.int64))
    where = f"{path}: {prefix + '/' + meta!r}"
    classes = tuple(_entry(_unpickle(members[f"{prefix}/{meta}"], where), names_key, where))
    return torch.cat(images), torch.cat(labels), classes


def load_cifar10_c(
    corruption: str, severity: int, root: str | os.PathLike[str] | None = None, *,
    download: bool = False,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """The CIFAR-10 test images under one published corruption at one severity (1–5).

    Read from ``CIFAR-10-C.tar`` (each ``<corruption>.npy`` holds 50 000 images: severity 1's
    10 000 first, severity 5's last) without extracting it.
    """
    if severity not in range(1, 6):
        raise ValueError(f"severity must be 1, 2, 3, 4 or 5, got {severity}")
    path = fetch(CIFAR10_C, root, download=download)
    names = [f"CIFAR-10-C/{corruption}.npy", "CIFAR-10-C/labels.npy"]
    try:
        members = _members(path, names)
    except ValueError as error:
        if names[0] in str(error):
            raise ValueError(f"unknown CIFAR-10-C corruption {corruption!r}") from None
        raise
    arrays = [np.load(io.BytesIO(members[name]), allow_pickle=False) for name in names]
    images, labels = arrays
    if images.shape[1:] != (32, 32, 3) or len(images) != len(labels) or len(images) % 5:
        raise ValueError(f"{path}: unexpected shapes {images.shape} and {labels.shape}")
    rows = slice((severity - 1) * len(images) // 5, severity * len(images) // 5)
    return (
        torch.from_numpy(np.ascontiguousarray(images[rows])).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(labels[rows].astype(np.int64)),
    )
