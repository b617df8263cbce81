"""Checkpoints written atomically and read without unpickling code.

A checkpoint is written to a temporary file, flushed to disk and renamed over ``name``: a run
killed at any moment leaves the previous checkpoint whole. Reading uses
``torch.load(weights_only=True)``, which rebuilds tensors and plain containers only.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from focalcal._io import atomic_write


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically."""
    return atomic_write(path, lambda file: torch.save(state, file))


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; anything that is not plain data
    (pickled code) or a damaged file is a ``ValueError`` naming the file."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
        raise ValueError(f"{path}: not a loadable checkpoint ({error})") from error
    if not isinstance(state, dict):
        raise ValueError(f"{path}: a checkpoint must hold a dict, got {type(state).__name__}")
    return state
