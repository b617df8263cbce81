"""Checkpoints written atomically, sealed with a SHA-256, read without unpickling code.

A checkpoint is written to a temporary file, flushed to disk and renamed over ``name``: a run
killed at any moment leaves the previous checkpoint whole. It carries a SHA-256 of everything
in it (tensors by dtype, shape and bytes; other values by their repr), checked on reading, so a
tampered or damaged file is refused. Reading uses ``torch.load(weights_only=True)``, which
rebuilds tensors and plain containers only: a file carrying pickled code is refused unrun.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from focalcal._io import UnreadableFile, atomic_write, load_tensors

DIGEST = "sha256"


def _update(hasher: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        hasher.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        hasher.update(b"D%d" % len(value))
        for key in sorted(value, key=str):
            hasher.update(repr(key).encode())
            _update(hasher, value[key])
    elif isinstance(value, list | tuple):
        hasher.update(b"L%d" % len(value))
        for item in value:
            _update(hasher, item)
    else:
        hasher.update(repr(value).encode())


def digest(state: dict[str, Any]) -> str:
    """The SHA-256 of a checkpoint's content, its own digest entry left out."""
    hasher = hashlib.sha256()
    _update(hasher, {k: v for k, v in state.items() if k != DIGEST})
    return hasher.hexdigest()


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically, with
    its SHA-256. A full disk is an ``OSError`` (``ENOSPC``) naming ``path``, not torch's
    ``RuntimeError``; any earlier file at ``path`` is left whole."""
    sealed = {**state, DIGEST: digest(state)}
    return atomic_write(path, lambda file: torch.save(sealed, file))


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`. Pickled code, a damaged file, a
    missing or wrong SHA-256 are a one-line ``ValueError`` naming the file; a file that cannot
    be opened (missing, a directory, unreadable) an ``OSError`` naming it."""
    path = Path(path)
    try:
        state = load_tensors(path)
    except UnreadableFile as error:
        raise ValueError(f"{path}: not a loadable checkpoint: {error}") from error
    if not isinstance(state, dict):
        raise ValueError(f"{path}: a checkpoint must hold a dict, got {type(state).__name__}")
    if DIGEST not in state:
        raise ValueError(f"{path}: carries no SHA-256; not a focalcal checkpoint")
    if state[DIGEST] != digest(state):
        raise ValueError(f"{path}: its SHA-256 does not match its content (tampered or damaged)")
    return {k: v for k, v in state.items() if k != DIGEST}
