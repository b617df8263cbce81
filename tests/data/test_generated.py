"""MNIST-1D (generated from its recipe) and scikit-learn's bundled digits."""

from __future__ import annotations

import functools
import gzip
import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from focalcal.data.digits import load_digits
from focalcal.data.mnist1d import generate_mnist1d, templates

# --------------------------------------------------------------------------------------------
# MNIST-1D (generated) and scikit-learn's digits


@functools.cache
def _mnist1d(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    return generate_mnist1d(split)  # the default seed, 42


def test_mnist1d_is_seeded():
    x, y = _mnist1d("train")
    again, y_again = generate_mnist1d("train", seed=42)
    assert torch.equal(x, again) and torch.equal(y, y_again)
    other, _ = generate_mnist1d("train", seed=7)
    assert not torch.allclose(x, other)


def test_mnist1d_sizes_balance_and_scale():
    x, y = _mnist1d("train")
    x_test, y_test = _mnist1d("test")
    assert x.shape == (4000, 1, 40) and x_test.shape == (1000, 1, 40)
    assert x.dtype == x_test.dtype == torch.float32
    assert y.dtype == y_test.dtype == torch.int64
    assert (y.bincount(minlength=10) + y_test.bincount(minlength=10)).tolist() == [500] * 10
    both = torch.cat([x, x_test]).double()
    assert both.mean().item() == pytest.approx(0, abs=1e-5)
    assert both.std(correction=0).item() == pytest.approx(1, abs=1e-5)
    shapes = templates()
    assert shapes.shape == (10, 12)
    np.testing.assert_allclose(shapes[:, [0, -1]], 0, atol=1e-12)


def _digits_csv() -> Path | None:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"


@pytest.mark.skipif(_digits_csv() is None, reason="scikit-learn is not installed")
def test_digits_partition_the_csv():
    path = _digits_csv()
    assert path is not None
    with gzip.open(path, "rt") as file:
        table = np.array([[float(v) for v in line.split(",")] for line in file if line.strip()])
    assert table.shape == (1797, 65)
    rows = Counter(
        (np.rint(row[:64] * 255 / 16).astype(np.uint8).tobytes(), int(row[64])) for row in table
    )
    x, y = load_digits("train")
    x_test, y_test = load_digits("test")
    assert x.shape == (1438, 1, 8, 8) and x_test.shape == (359, 1, 8, 8)
    assert x.dtype == x_test.dtype == torch.uint8 and y.dtype == y_test.dtype == torch.int64
    assert int(torch.cat([x, x_test]).min()) == 0 and int(torch.cat([x, x_test]).max()) == 255

    def count(images, labels):
        return Counter(
            (image.numpy().tobytes(), label)
            for image, label in zip(images, labels.tolist(), strict=True)
        )

    # together exactly the CSV's rows, each once: a partition (disjoint, nothing lost)
    assert count(x, y) + count(x_test, y_test) == rows
    assert sum(rows.values()) == 1797
