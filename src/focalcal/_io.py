"""Files written atomically (readers see the old file or the new one, never a partial one),
and tensors read without running pickled code."""

from __future__ import annotations

import io
import os
import pickle
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "UnreadableFile",
    "atomic_write",
    "atomic_write_text",
    "load_tensors",
    "remove_temporaries",
    "tomllib",
]

# atomic_write's temporary beside NAME: ".NAME.<16 hex digits>.tmp"
_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{16}\.tmp")


class _RememberingFile(io.FileIO):
    """A file that remembers the first ``OSError`` of its writes: ``torch.save`` turns a full
    disk into a ``RuntimeError`` ("unexpected pos …") that does not say why."""

    error: OSError | None = None

    def write(self, data: Any, /) -> int:
        try:
            return super().write(data)
        except OSError as error:
            self.error = self.error or error
            raise


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write`` on a new file beside ``path`` that then replaces ``path``; returns it.

    An interrupted run never leaves a partial file: readers see the old file or the new one.
    Missing parent directories are created. A failed write (a full disk, an unwritable
    directory) raises ``OSError`` naming ``path`` and leaves any earlier file in place, also
    where ``write`` reported the failed write as another exception or not at all.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     atomic_write(Path(tmp) / "a" / "b.bin", lambda file: file.write(b"ok")).read_bytes()
        b'ok'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name in the same directory keeps the rename on one file system; FileIO creates
    # it with 0o666, so the umask decides the permissions as for any new file (mkstemp: 0o600).
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    raw: _RememberingFile | None = None
    try:
        raw = _RememberingFile(temporary, "xb")
        with io.BufferedWriter(raw) as file:
            write(file)
            file.flush()
            if raw.error is not None:  # ``write`` caught it and went on: the file is partial
                raise raw.error
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except Exception as error:  # a full disk, a read-only or unwritable directory, ...
        if raw is not None:
            temporary.unlink(missing_ok=True)
        cause = error if isinstance(error, OSError) else raw.error if raw is not None else None
        if cause is None:
            raise
        reason = cause.strerror or str(cause)
        raise OSError(
            cause.errno, f"cannot write {path}: {reason}; any earlier {path.name} is unchanged"
        ) from error
    except BaseException:
        if raw is not None:
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


def remove_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries that killed :func:`atomic_write` calls left under ``directory``
    (``.NAME.<16 hex digits>.tmp``, nothing else); returns the paths removed.

    Call it only while no other process writes under ``directory`` (hold its lock): a live
    writer's temporary looks the same.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = (Path(tmp) / ".last.pt.0123456789abcdef.tmp").write_bytes(b"half")
        ...     _ = (Path(tmp) / "notes.tmp").write_text("mine")
        ...     [p.name for p in remove_temporaries(tmp)], sorted(os.listdir(tmp))
        (['.last.pt.0123456789abcdef.tmp'], ['notes.tmp'])
    """
    removed = []
    for root, _, names in os.walk(directory):
        for name in names:
            path = Path(root, name)
            if _TEMPORARY.fullmatch(name) and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path)
    return sorted(removed)


class UnreadableFile(ValueError):
    """A file :func:`load_tensors` refused; the message says why in one line, without the
    path (the caller names the file and what it was meant to be)."""


def load_tensors(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain containers only,
    pickled code refused unrun. A damaged or refused file is an :class:`UnreadableFile`
    saying why in one line (never torch's advice to load with ``weights_only=False``); a file
    that cannot be opened (missing, a directory) keeps its ``OSError``, which names it."""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # torch warns in several lines about odd pickles
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file fails in many ways: KeyError, EOFError, ...
        if isinstance(error, MemoryError) or (isinstance(error, OSError) and error.filename):
            raise  # no memory, or no file to read (missing, a directory): the error says so
        raise UnreadableFile(_reason(path, error)) from error


def _reason(path: Path, error: Exception) -> str:
    """torch's error in one line, without its advice to load with ``weights_only=False``."""
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) and "weights_only" in text:
        found = re.search(r"GLOBAL \S+|operand \d+", text)
        unsupported = f" (unsupported {found[0]})" if found else ""
        what = "it holds objects other than tensors and plain containers, or is damaged"
        return f"{what}; refused unrun{unsupported}"
    if path.stat().st_size == 0:
        return "the file is empty (0 bytes)"
    first = text.strip().split("\n")[0].split(". ")[0]  # torch's advice follows
    kind = type(error).__name__
    return f"damaged or truncated ({kind}: {first})" if first else f"damaged or truncated ({kind})"
