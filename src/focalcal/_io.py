"""Files written atomically: readers see the old file or the new one, never a partial one."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["atomic_write", "atomic_write_text", "tomllib"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write`` on a new file beside ``path`` that then replaces ``path``; returns it.

    An interrupted run never leaves a partial file: readers see the old file or the new one.
    Missing parent directories are created. A failed write (a full disk, an unwritable
    directory) raises ``OSError`` naming ``path`` and leaves any earlier file in place.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     atomic_write(Path(tmp) / "a" / "b.bin", lambda file: file.write(b"ok")).read_bytes()
        b'ok'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name in the same directory keeps the rename on one file system; os.open with
    # 0o666 lets the umask decide the permissions as for any new file (mkstemp forces 0o600).
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        with os.fdopen(os.open(temporary, flags, 0o666), "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:  # a full disk, a read-only or unwritable directory, ...
        temporary.unlink(missing_ok=True)
        reason = error.strerror or str(error)
        raise OSError(
            error.errno, f"cannot write {path}: {reason}; any earlier {path.name} is unchanged"
        ) from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` with :func:`atomic_write`; returns ``path``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     atomic_write_text(Path(tmp) / "table.md", "| a |\\n").read_text()
        '| a |\\n'
    """
    data = text.encode()
    return atomic_write(path, lambda file: file.write(data))
