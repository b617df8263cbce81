"""SVHN (cropped digits) from the published MATLAB files `train_32x32.mat`, `test_32x32.mat`."""

from __future__ import annotations

import os

import numpy as np
import scipy.io
import torch
from torch import Tensor

from focalcal.data.download import RemoteFile, fetch

URL = "http://ufldl.stanford.edu/housenumbers/"
FILES = {
    "train": RemoteFile("train_32x32.mat", URL + "train_32x32.mat",
                        md5="e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test": RemoteFile("test_32x32.mat", URL + "test_32x32.mat",
                       md5="eb5a983be6a315427106f1b164d9cef3"),
}  # fmt: skip
CLASSES = tuple(str(digit) for digit in range(10))
MEAN, STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)


def load_svhn(
    root: str | os.PathLike[str] | None = None, split: str = "train", *, download: bool = False
) -> tuple[Tensor, Tensor]:
    """Images ``(N, 3, 32, 32)`` uint8, labels ``(N,)`` int64 (the files' label 10 is digit 0)."""
    path = fetch(FILES[split], root, download=download)
    try:
        mat = scipy.io.loadmat(path)
        images, labels = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    except (ValueError, KeyError, OSError, TypeError) as error:
        raise ValueError(f"{path}: not a readable SVHN file ({error!r})") from error
    if (
        images.dtype != np.uint8
        or images.shape[:3] != (32, 32, 3)
        or images.shape[3] != len(labels)
    ):
        raise ValueError(
            f"{path}: unexpected arrays X {images.shape} {images.dtype}, y {labels.shape}"
        )
    if len(labels) and not (labels.min() >= 1 and labels.max() <= 10):
        raise ValueError(f"{path}: labels must lie in 1..10, got {labels.min()}..{labels.max()}")
    return (
        torch.from_numpy(np.ascontiguousarray(images.transpose(3, 2, 0, 1))),
        torch.from_numpy(labels.astype(np.int64) % 10),
    )
