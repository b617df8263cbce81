"""SVHN's MATLAB files against fixtures written with scipy.io.savemat."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from focalcal.data import svhn
from focalcal.data.dataset import Dataset
from focalcal.data.download import RemoteFile
from tests.data.fixtures import UNUSED_URL, md5, planes

# --------------------------------------------------------------------------------------------
# SVHN


def _svhn_file(root: Path, split: str, X: np.ndarray, y: np.ndarray) -> Path:
    path = root / svhn.FILES[split].filename
    scipy.io.savemat(path, {"X": X, "y": y})
    return path


def _use_svhn(monkeypatch: pytest.MonkeyPatch, split: str, path: Path) -> None:
    remote = svhn.FILES[split]
    files = dict(svhn.FILES)
    files[split] = RemoteFile(remote.filename, UNUSED_URL, md5=md5(path))
    monkeypatch.setattr(svhn, "FILES", files)


@pytest.mark.parametrize("split", ["train", "test"])
def test_svhn_round_trip(tmp_path, monkeypatch, split):
    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)  # (H, W, C, N) as published
    X[..., 0] = planes().transpose(1, 2, 0)
    y = np.array([[10], [1], [5], [9], [10]], np.uint8)  # 10 is the digit 0
    _use_svhn(monkeypatch, split, _svhn_file(tmp_path, split, X, y))

    images, labels = svhn.load_svhn(tmp_path, split)

    assert images.dtype == torch.uint8 and images.shape == (5, 3, 32, 32)
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 1, 5, 9, 0]
    n, c, i, j = np.indices(images.shape)
    np.testing.assert_array_equal(images.numpy(), X[i, j, c, n])
    np.testing.assert_array_equal(images[0].numpy(), planes())
    Dataset(images, labels, svhn.CLASSES)


@pytest.mark.parametrize("bad", [0, 11])
def test_svhn_label_out_of_range(tmp_path, monkeypatch, bad):
    X = np.zeros((32, 32, 3, 2), np.uint8)
    path = _svhn_file(tmp_path, "test", X, np.array([[1], [bad]], np.uint8))
    _use_svhn(monkeypatch, "test", path)
    with pytest.raises(ValueError, match=re.escape(f"{path}: labels must lie in 1..10")):
        svhn.load_svhn(tmp_path, "test")


def test_svhn_wrong_arrays(tmp_path, monkeypatch):
    X = np.zeros((3, 32, 32, 2), np.uint8)  # channels first: not the published layout
    path = _svhn_file(tmp_path, "test", X, np.array([[1], [2]], np.uint8))
    _use_svhn(monkeypatch, "test", path)
    with pytest.raises(ValueError, match=re.escape(f"{path}: unexpected arrays")):
        svhn.load_svhn(tmp_path, "test")


def test_svhn_checksum_mismatch_names_the_path(tmp_path, monkeypatch):
    path = _svhn_file(tmp_path, "test", np.zeros((32, 32, 3, 1), np.uint8), np.ones((1, 1)))
    files = dict(svhn.FILES, test=RemoteFile(path.name, UNUSED_URL, md5="0" * 32))
    monkeypatch.setattr(svhn, "FILES", files)
    with pytest.raises(ValueError, match=re.escape(f"{path}: checksum")):
        svhn.load_svhn(tmp_path, "test")
