"""scikit-learn's bundled handwritten digits (UCI optdigits test set, 1 797 images of 8×8).

Read from the CSV file that ships inside scikit-learn (``sklearn/datasets/data/digits.csv.gz``)
without importing scikit-learn. Pixel counts 0–16 become grey levels round(v · 255 / 16). There is
no official test split: a fixed seeded 20 % (seed 0, independent of the validation seed) is it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

CLASSES = tuple(str(digit) for digit in range(10))
TEST_FRACTION = 0.2


def _path() -> Path:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the digits dataset ships with scikit-learn: `pip install scikit-learn`"
        )
    return Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"


def load_digits(split: str = "train") -> tuple[Tensor, Tensor]:
    """Images ``(N, 1, 8, 8)`` uint8 and labels ``(N,)`` int64: 1 438 train, 359 test."""
    path = _path()
    try:
        table = np.loadtxt(path, delimiter=",", ndmin=2)  # numpy reads .gz itself
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"{path}: not a readable digits file ({error})") from error
    if table.shape != (1797, 65) or table[:, :64].min() < 0 or table[:, :64].max() > 16:
        raise ValueError(f"{path}: expected 1797 rows of 64 counts in 0..16 and a label")
    order = np.random.RandomState(0).permutation(len(table))
    test = round(TEST_FRACTION * len(table))
    rows = order[test:] if split == "train" else order[:test]
    images = np.rint(table[rows, :64] * (255 / 16)).astype(np.uint8).reshape(-1, 1, 8, 8)
    return torch.from_numpy(images), torch.from_numpy(table[rows, 64].astype(np.int64))
