"""One writer per run directory: an operating-system lock on ``run_dir/.lock``.

The lock is the kernel's (``flock`` on POSIX, ``msvcrt.locking`` on Windows): it is released
when its holder exits in any way, SIGKILL included, so a killed run never leaves a stale lock.
The file keeps the holder's PID for the message a second writer gets. Holding is re-entrant
within a process (``reproduce`` holds a run while ``train`` and ``evaluate`` hold it again).
File locks on network file systems are only as good as the file system's support for them.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from focalcal._io import remove_temporaries

__all__ = ["LOCK_FILE", "RunLockedError", "hold"]

LOCK_FILE = ".lock"
_held: dict[Path, int] = {}  # resolved directory -> depth, in this process

if sys.platform == "win32":  # pragma: no cover
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


class RunLockedError(RuntimeError):
    """Another process holds the run directory (the message names it and the holder's PID)."""

    def __init__(self, directory: Path, pid: str) -> None:
        self.directory, self.pid = directory, pid
        holder = f"process {pid}" if pid else "another process"
        super().__init__(
            f"{directory} is in use by {holder}: one writer per run directory; wait for it to "
            "finish, or use another directory"
        )


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


@contextmanager
def hold(directory: str | os.PathLike[str], *, wait: float | None = None) -> Iterator[Path]:
    """Hold ``directory``'s lock (the directory is created) for the ``with`` block. Taking it
    removes the temporary files that killed writes left under ``directory``
    (:func:`focalcal._io.remove_temporaries`).

    Held by another process: :class:`RunLockedError` at once, or with ``wait`` (seconds between
    tries) once the holder is done.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp, hold(tmp) as run, hold(tmp):
        ...     (run / ".lock").read_text() == f"{os.getpid()}\\n"
        True
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = directory.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield directory
        finally:
            _held[key] -= 1
        return
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        while not _try_lock(fd):
            if wait is None:
                raise RunLockedError(directory, _holder(path))
            time.sleep(wait)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held[key] = 1
        remove_temporaries(directory)  # what killed writers left: no writer is left now
        try:
            yield directory
        finally:
            del _held[key]
    finally:
        os.close(fd)  # releases the lock
