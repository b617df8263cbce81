"""Helpers shared by the format tests: checksums, module patching, tar, .npy and IDX writers."""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from focalcal.data import idx
from focalcal.data.download import RemoteFile

UNUSED_URL = "http://127.0.0.1/unused"


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def install(monkeypatch: pytest.MonkeyPatch, module: object, attribute: str, path: Path) -> None:
    """Point ``module.attribute`` (a ``RemoteFile``) at the fixture ``path`` and its checksum."""
    remote = getattr(module, attribute)
    assert path.name == remote.filename  # the fixture carries the published file name
    monkeypatch.setattr(module, attribute, RemoteFile(remote.filename, UNUSED_URL, md5=md5(path)))


def tar(path: Path, members: dict[str, bytes]) -> Path:
    """A tar (gzip-compressed if ``path`` ends in .gz) of ``members``, with its folder entries."""
    mode = "w:gz" if path.suffix == ".gz" else "w"
    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT) as archive:
        for folder in sorted({name.split("/")[0] for name in members}):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    return path


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def planes() -> np.ndarray:
    """A 32×32 RGB image whose every value tells its place: R = row, G = column + 64,
    B = (32·row + column) mod 256, as (3, 32, 32)."""
    i, j = np.indices((32, 32))
    return np.stack([i, j + 64, (32 * i + j) % 256]).astype(np.uint8)


def idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    """IDX: 0, 0, the type byte, the number of dimensions, big-endian uint32 sizes, values."""
    header = bytes([0, 0, type_byte, array.ndim]) + b"".join(
        struct.pack(">I", size) for size in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def fashion_mnist_files(
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    counts: tuple[int, int] = (4, 3),
    labels: int | None = None,
    classes: int = 10,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fashion-MNIST's four IDX files under ``root``, with ``counts`` (train, test) random
    images (the first one [i, j] = 8i + j) and labels in ``[0, classes)`` (``labels``: write
    that many labels instead, to disagree with the images); ``idx`` is patched to their
    checksums. Returns the written ``(images, labels)`` by split."""
    rng = np.random.default_rng(4)
    folder = root / "fashion-mnist"
    folder.mkdir()
    files, content_md5, expected = {}, {}, {}
    for split, n in zip(("train", "test"), counts, strict=True):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[:1] = np.add.outer(np.arange(28) * 8, np.arange(28)) % 256  # [i, j] = 8i + j
        targets = rng.integers(0, classes, n if labels is None else labels).astype(np.uint8)
        expected[split] = images, targets
        remotes = []
        for real, array in zip(idx.FILES[split], (images, targets), strict=True):
            content = idx_bytes(array)
            (folder / real.filename).write_bytes(gzip.compress(content))
            remotes.append(RemoteFile(real.filename, UNUSED_URL, md5=md5(folder / real.filename)))
            content_md5[real.filename] = hashlib.md5(content, usedforsecurity=False).hexdigest()
        files[split] = tuple(remotes)
    monkeypatch.setattr(idx, "FILES", files)
    monkeypatch.setattr(idx, "CONTENT_MD5", content_md5)
    return expected
