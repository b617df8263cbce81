"""Fashion-MNIST's IDX files: fixtures in the published format, and Debian's real files."""

from __future__ import annotations

import gzip
import hashlib
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from focalcal.data import idx
from focalcal.data.dataset import Dataset
from focalcal.data.download import RemoteFile
from tests.data.fixtures import UNUSED_URL, md5

# --------------------------------------------------------------------------------------------
# Fashion-MNIST (IDX)


def _idx(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    """IDX: 0, 0, the type byte, the number of dimensions, big-endian uint32 sizes, values."""
    header = bytes([0, 0, type_byte, array.ndim]) + b"".join(
        struct.pack(">I", size) for size in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def _fashion_fixture(root: Path, monkeypatch: pytest.MonkeyPatch, counts=(4, 3), labels=None):
    rng = np.random.default_rng(4)
    folder = root / "fashion-mnist"
    folder.mkdir()
    files, content_md5, expected = {}, {}, {}
    for split, n in zip(("train", "test"), counts, strict=True):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[0] = np.add.outer(np.arange(28) * 8, np.arange(28)) % 256  # [i, j] = 8i + j
        targets = rng.integers(0, 10, n if labels is None else labels).astype(np.uint8)
        expected[split] = images, targets
        remotes = []
        for real, array in zip(idx.FILES[split], (images, targets), strict=True):
            content = _idx(array)
            (folder / real.filename).write_bytes(gzip.compress(content))
            remotes.append(RemoteFile(real.filename, UNUSED_URL, md5=md5(folder / real.filename)))
            content_md5[real.filename] = hashlib.md5(content, usedforsecurity=False).hexdigest()
        files[split] = tuple(remotes)
    monkeypatch.setattr(idx, "FILES", files)
    monkeypatch.setattr(idx, "CONTENT_MD5", content_md5)
    return expected


@pytest.mark.parametrize("split", ["train", "test"])
def test_fashion_mnist_round_trip(tmp_path, monkeypatch, split):
    written, targets = _fashion_fixture(tmp_path, monkeypatch)[split]

    images, labels = idx.load_fashion_mnist(tmp_path, split)

    assert images.dtype == torch.uint8 and images.shape == (len(written), 1, 28, 28)
    assert labels.dtype == torch.int64 and labels.tolist() == targets.tolist()
    n, _, i, j = np.indices(images.shape)  # one channel
    np.testing.assert_array_equal(images.numpy(), written[n, i, j])
    assert images[0, 0, 2, 5] == 8 * 2 + 5 and images[0, 0, 5, 2] == 8 * 5 + 2
    Dataset(images, labels, idx.CLASSES)


def test_fashion_mnist_content_checksum(tmp_path, monkeypatch):
    _fashion_fixture(tmp_path, monkeypatch)
    name = idx.FILES["test"][1].filename
    monkeypatch.setitem(idx.CONTENT_MD5, name, "0" * 32)
    with pytest.raises(ValueError, match=re.escape(f"{name}: checksum") + ".* of its content"):
        idx.load_fashion_mnist(tmp_path, "test")


def test_fashion_mnist_images_and_labels_disagree(tmp_path, monkeypatch):
    _fashion_fixture(tmp_path, monkeypatch, labels=2)
    message = "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz: images (3, 28, 28) do not"
    with pytest.raises(ValueError, match=re.escape(message)):
        idx.load_fashion_mnist(tmp_path, "test")


def test_read_idx_plain_and_gzip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "plain").write_bytes(_idx(array))
    (tmp_path / "packed.gz").write_bytes(gzip.compress(_idx(array)))
    for name in ("plain", "packed.gz"):
        tensor = idx.read_idx(tmp_path / name)
        assert tensor.dtype == torch.uint8 and tensor.shape == (2, 3, 4)
        np.testing.assert_array_equal(tensor.numpy(), array)
    labels = idx.read_idx(_write(tmp_path / "labels", _idx(np.array([7, 0, 9], np.uint8))))
    assert labels.tolist() == [7, 0, 9]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_read_idx_truncated_gzip(tmp_path):
    packed = gzip.compress(_idx(np.zeros((5, 28, 28), np.uint8)))
    path = _write(tmp_path / "images.gz", packed[: len(packed) // 2])
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a readable gzip file")):
        idx.read_idx(path)


def test_read_idx_header_disagrees_with_size(tmp_path):
    data = _idx(np.zeros((3, 28, 28), np.uint8))
    path = _write(tmp_path / "images", data[:-28])
    with pytest.raises(ValueError, match=re.escape(f"{path}: the header says shape [3, 28, 28]")):
        idx.read_idx(path)


def test_read_idx_wrong_type_byte(tmp_path):
    path = _write(tmp_path / "floats", _idx(np.zeros((2, 2), np.uint8), type_byte=0x0D))
    with pytest.raises(ValueError, match=re.escape(f"{path}: not an IDX file of unsigned bytes")):
        idx.read_idx(path)


@pytest.mark.skipif(
    not all((idx.DEBIAN_DIR / f.filename).exists() for pair in idx.FILES.values() for f in pair),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_fashion_mnist_debian_files():
    train, train_labels = idx.load_fashion_mnist(split="train")
    test, test_labels = idx.load_fashion_mnist(split="test")
    assert train.shape == (60000, 1, 28, 28) and test.shape == (10000, 1, 28, 28)
    assert train.dtype == test.dtype == torch.uint8
    assert train_labels.dtype == test_labels.dtype == torch.int64
    assert train_labels.bincount().tolist() == [6000] * 10
    assert test_labels.bincount().tolist() == [1000] * 10
    counts = torch.bincount(train.flatten(), minlength=256).numpy()  # exact and quick
    levels = np.arange(256) / 255
    mean = (counts * levels).sum() / counts.sum()
    std = np.sqrt((counts * (levels - mean) ** 2).sum() / counts.sum())
    assert mean == pytest.approx(idx.MEAN[0], abs=5e-4)
    assert std == pytest.approx(idx.STD[0], abs=5e-4)
