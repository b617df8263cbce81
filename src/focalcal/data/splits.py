"""The seeded train/validation split of a training set, the same on every machine."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

VALIDATION_FRACTION = 0.1
SPLIT_SEED = 1


def train_validation_indices(
    size: int, fraction: float = VALIDATION_FRACTION, seed: int = SPLIT_SEED
) -> tuple[Tensor, Tensor]:
    """Indices of the training and validation parts of a training set of ``size`` samples.

    The scheme of the paper's code: shuffle ``0 … size−1`` with numpy's legacy generator seeded
    with ``seed`` and hold out the first ``floor(fraction · size)`` (CIFAR: 45 000 / 5 000).
    numpy keeps the legacy ``RandomState`` stream fixed across versions and platforms, so the
    split is the same everywhere.

    >>> train, validation = train_validation_indices(50_000)
    >>> len(train), len(validation), bool((train.sort().values != validation[:1]).all())
    (45000, 5000, True)
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    order = np.arange(size)
    np.random.RandomState(seed).shuffle(order)
    held_out = math.floor(fraction * size)
    return torch.from_numpy(order[held_out:]), torch.from_numpy(order[:held_out])


TEST_SEED = 1


def train_test_indices(size: int) -> tuple[Tensor, Tensor]:
    """Indices of the training and test parts of data that come without a test split (an image
    folder without ``test/``, a table): :func:`train_validation_indices` with
    :data:`TEST_SEED`, so the paper's validation split is then drawn from the training part.

    >>> train, test = train_test_indices(100)
    >>> len(train), len(test)
    (90, 10)
    """
    return train_validation_indices(size, VALIDATION_FRACTION, TEST_SEED)
