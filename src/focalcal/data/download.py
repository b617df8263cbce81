"""Files from their original locations: verified, resumable, atomic.

A file lives at ``root/filename``. It is trusted only after its checksum matched the published
one; a stamp beside it (``filename.verified``: size and mtime) spares re-hashing gigabytes on
every load. A download goes to ``filename.part`` and is renamed only after the checksum matched,
so a partial file never looks complete; an interrupted download resumes from the ``.part`` file
with an HTTP range request.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

CHUNK = 1 << 20
ENVIRONMENT_ROOT = "FOCALCAL_DATA"


@dataclass(frozen=True)
class RemoteFile:
    """A published file: where it lives and its published checksum (MD5 or SHA-256)."""

    filename: str
    url: str
    md5: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if (self.md5 is None) == (self.sha256 is None):
            raise ValueError(f"{self.filename}: give exactly one of md5 and sha256")

    def digest(self, path: Path) -> str:
        """The hex digest of ``path`` with this file's checksum algorithm."""
        hasher = hashlib.md5(usedforsecurity=False) if self.md5 else hashlib.sha256()
        with path.open("rb") as file:
            while chunk := file.read(CHUNK):
                hasher.update(chunk)
        return hasher.hexdigest()

    @property
    def expected(self) -> str:
        return (self.md5 or self.sha256 or "").lower()


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """``root`` if given, else ``$FOCALCAL_DATA``, else ``~/.cache/focalcal``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(ENVIRONMENT_ROOT) or Path.home() / ".cache" / "focalcal")


def _stamp(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size} {stat.st_mtime_ns}"


def verify(remote: RemoteFile, path: Path) -> None:
    """Raise ``ValueError`` naming ``path`` unless its checksum is the published one."""
    stamp = path.with_name(path.name + ".verified")
    if stamp.exists() and stamp.read_text() == _stamp(path):
        return
    digest = remote.digest(path)
    if digest != remote.expected:
        raise ValueError(
            f"{path}: checksum {digest} does not match the published {remote.expected}; the file "
            "is truncated or corrupted: delete it and download it again"
        )
    stamp.write_text(_stamp(path))


def fetch(
    remote: RemoteFile, root: str | os.PathLike[str] | None = None, *, download: bool = False
) -> Path:
    """The verified local path of ``remote`` under ``root``, downloading it if asked.

    Without ``download`` a missing file is a ``FileNotFoundError`` that says which URL to put
    where; a file whose checksum does not match is a ``ValueError``.
    """
    path = data_root(root) / remote.filename
    if not path.exists():
        if not download:
            raise FileNotFoundError(
                f"{path} not found: download {remote.url} to that path, "
                "or pass download=True to load_dataset"
            )
        _download(remote, path)
    verify(remote, path)
    return path


def _download(remote: RemoteFile, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(
        remote.url, headers={"Range": f"bytes={have}-"} if have else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            if have and response.status != 206:  # the server ignored the range: start over
                have = 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            with (
                part.open("ab" if have else "wb") as file,
                tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=remote.filename,
                     disable=None) as bar,
            ):  # fmt: skip
                received = 0
                while chunk := response.read(CHUNK):
                    file.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                file.flush()
                os.fsync(file.fileno())
            # http.client's read(n) returns b"" when the connection closes short of the announced
            # length: the part file is incomplete, not corrupted, so keep it for resuming.
            if length is not None and received < int(length):
                raise ConnectionError(f"connection closed after {received} of {length} bytes")
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # range past the end: the part file is already complete
            pass
        else:
            raise OSError(
                f"could not download {remote.url}: {error}; put the file at {path}"
            ) from error
    except (
        urllib.error.URLError,
        http.client.HTTPException,
        TimeoutError,
        ConnectionError,
    ) as error:
        raise OSError(
            f"could not download {remote.url} ({error}); put the file at {path} yourself "
            "(a partial download is kept and resumed next time)"
        ) from error
    digest = remote.digest(part)
    if digest != remote.expected:
        part.unlink()
        raise ValueError(
            f"downloaded {remote.url}: checksum {digest} does not match the published "
            f"{remote.expected}; the partial file was deleted, try again"
        )
    os.replace(part, path)
    path.with_name(path.name + ".verified").write_text(_stamp(path))
