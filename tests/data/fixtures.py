"""Helpers shared by the format tests: checksums, module patching, tar and .npy writers."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

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
