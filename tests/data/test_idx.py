"""Fashion-MNIST's IDX files: fixtures in the published format, and Debian's real files."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from focalcal.data import download, idx
from focalcal.data.dataset import Dataset
from tests.data.fixtures import fashion_mnist_files, idx_bytes, md5

# --------------------------------------------------------------------------------------------
# Fashion-MNIST (IDX)


@pytest.mark.parametrize("split", ["train", "test"])
def test_fashion_mnist_round_trip(tmp_path, monkeypatch, split):
    written, targets = fashion_mnist_files(tmp_path, monkeypatch)[split]

    images, labels = idx.load_fashion_mnist(tmp_path, split)

    assert images.dtype == torch.uint8 and images.shape == (len(written), 1, 28, 28)
    assert labels.dtype == torch.int64 and labels.tolist() == targets.tolist()
    n, _, i, j = np.indices(images.shape)  # one channel
    np.testing.assert_array_equal(images.numpy(), written[n, i, j])
    assert images[0, 0, 2, 5] == 8 * 2 + 5 and images[0, 0, 5, 2] == 8 * 5 + 2
    Dataset(images, labels, idx.CLASSES)


def test_fashion_mnist_content_checksum(tmp_path, monkeypatch):
    fashion_mnist_files(tmp_path, monkeypatch)
    name = idx.FILES["test"][1].filename
    monkeypatch.setitem(idx.CONTENT_MD5, name, "0" * 32)
    with pytest.raises(ValueError, match=re.escape(f"{name}: checksum") + ".* of its content"):
        idx.load_fashion_mnist(tmp_path, "test")


def test_fashion_mnist_images_and_labels_disagree(tmp_path, monkeypatch):
    fashion_mnist_files(tmp_path, monkeypatch, labels=2)
    message = "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz: images (3, 28, 28) do not"
    with pytest.raises(ValueError, match=re.escape(message)):
        idx.load_fashion_mnist(tmp_path, "test")


def test_read_idx_plain_and_gzip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "plain").write_bytes(idx_bytes(array))
    (tmp_path / "packed.gz").write_bytes(gzip.compress(idx_bytes(array)))
    for name in ("plain", "packed.gz"):
        tensor = idx.read_idx(tmp_path / name)
        assert tensor.dtype == torch.uint8 and tensor.shape == (2, 3, 4)
        np.testing.assert_array_equal(tensor.numpy(), array)
    labels = idx.read_idx(_write(tmp_path / "labels", idx_bytes(np.array([7, 0, 9], np.uint8))))
    assert labels.tolist() == [7, 0, 9]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_read_idx_truncated_gzip(tmp_path):
    packed = gzip.compress(idx_bytes(np.zeros((5, 28, 28), np.uint8)))
    path = _write(tmp_path / "images.gz", packed[: len(packed) // 2])
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a readable gzip file")):
        idx.read_idx(path)


def test_read_idx_header_disagrees_with_size(tmp_path):
    data = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    path = _write(tmp_path / "images", data[:-28])
    with pytest.raises(ValueError, match=re.escape(f"{path}: the header says shape [3, 28, 28]")):
        idx.read_idx(path)


def test_read_idx_wrong_type_byte(tmp_path):
    path = _write(tmp_path / "floats", idx_bytes(np.zeros((2, 2), np.uint8), type_byte=0x0D))
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


DEBIAN_TEST = [idx.DEBIAN_DIR / f.filename for f in idx.FILES["test"]]
needs_debian = pytest.mark.skipif(
    not all(path.exists() for path in DEBIAN_TEST),
    reason="Debian's dataset-fashion-mnist is not installed",
)


def _copy_debian_test_files(folder: Path, decompress: bool = False) -> list[Path]:
    """Debian's test files, unmodified, in ``folder`` (or their decompressed content under the
    names without .gz)."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for source in DEBIAN_TEST:
        data = gzip.decompress(source.read_bytes()) if decompress else source.read_bytes()
        copies.append(_write(folder / (source.stem if decompress else source.name), data))
    return copies


@needs_debian
@pytest.mark.parametrize("layout", ["root/fashion-mnist", "root", "root, decompressed"])
def test_fashion_mnist_root_takes_debians_files_as_they_are(tmp_path, monkeypatch, layout):
    expected_images, expected_labels = idx.load_fashion_mnist(split="test")
    monkeypatch.setattr(idx, "DEBIAN_DIR", tmp_path / "elsewhere")  # only root may serve them
    monkeypatch.setattr(download, "_download", _no_download)
    folder = tmp_path / "fashion-mnist" if layout == "root/fashion-mnist" else tmp_path
    copies = _copy_debian_test_files(folder, decompress=layout.endswith("decompressed"))
    assert md5(copies[0]) != idx.FILES["test"][0].md5  # not the published bytes

    images, labels = idx.load_fashion_mnist(str(tmp_path), "test", download=True)

    assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == [c.name for c in copies]


def _no_download(remote, path):
    raise AssertionError(f"downloaded {remote.url} although a copy was there")


@needs_debian
@pytest.mark.parametrize("decompress", [False, True], ids=["gzip", "decompressed"])
def test_fashion_mnist_root_refuses_a_corrupted_copy(tmp_path, monkeypatch, decompress):
    monkeypatch.setattr(download, "_download", _no_download)
    images, labels = _copy_debian_test_files(tmp_path / "fashion-mnist", decompress)
    content = bytearray(idx.read_idx(labels).numpy().tobytes())
    content[-1] = (content[-1] + 1) % 10  # one label changed: a valid IDX file, other content
    changed = idx_bytes(np.frombuffer(content, np.uint8))
    labels.write_bytes(changed if decompress else gzip.compress(changed))
    message = re.escape(f"{labels}: checksum") + ".* of its content does not match"
    with pytest.raises(ValueError, match=message):
        idx.load_fashion_mnist(tmp_path, "test", download=True)

    images.write_bytes(images.read_bytes()[:-1000])  # truncated
    with pytest.raises(ValueError, match=re.escape(str(images))):
        idx.load_fashion_mnist(tmp_path, "test", download=True)
