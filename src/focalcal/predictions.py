"""Saved predictions in the formats people have: scores and labels read from a file (and
calibrated scores written to one). :func:`read_predictions` reads ``.npz`` (arrays ``logits``
or ``probs``, and ``labels``), ``.pt``/``.pth`` (a dict of tensors with those keys, read with
``weights_only=True``), a pair of ``.npy`` files (scores, then labels) or ``.csv`` (a header,
one column per class and a ``label`` column), says which keys or columns it used, and reads
probabilities (the ``probs`` key, or rows that are distributions) as log-probabilities, with a
note. Bad input is a ``ValueError`` naming the file. :func:`write_scores` writes calibrated
log-probabilities as ``.npz``, ``.pt`` or ``.csv``.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from focalcal._checks import looks_like_probabilities
from focalcal._io import UnreadableFile, atomic_write, atomic_write_text, load_tensors
from focalcal._tables import LABEL_COLUMNS, read_table

SCORE_KEYS = ("logits", "probs")
SUFFIXES = (".npz", ".pt", ".pth", ".npy", ".csv")


@dataclass(frozen=True)
class Predictions:
    """Scores ``(N, C)`` (logits, or log-probabilities where the file held probabilities)
    and class indices ``(N,)`` read from ``source``; ``notes`` say what was read and how."""

    scores: Tensor
    labels: Tensor | None
    source: str
    notes: tuple[str, ...] = field(default=())

    @property
    def num_classes(self) -> int:
        return int(self.scores.shape[1])


def read_predictions(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, labels: bool = True
) -> Predictions:
    """Scores and labels from one file (``.npz``, ``.pt``/``.pth``, ``.csv``) or a pair of
    ``.npy`` files (scores, labels); with ``labels=False`` the labels may be absent (scores to
    calibrate). Probabilities become log-probabilities (zeros at the dtype's smallest normal
    number, so every score is finite). Raises ``ValueError`` naming the file for anything that
    is not a finite ``(N, C)`` float array with ``N >= 1`` and integer labels in ``[0, C)``.

    Example:
        >>> import tempfile, numpy as np
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "val.npz"
        ...     np.savez(path, probs=np.array([[0.9, 0.1], [0.2, 0.8]]), labels=np.array([0, 1]))
        ...     val = read_predictions(path)
        >>> val.scores.exp(), val.notes[0]
        (tensor([[0.9000, 0.1000],
                [0.2000, 0.8000]], dtype=torch.float64), "arrays 'probs' and 'labels'")
    """
    files = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    source = " + ".join(map(str, files))
    if not 1 <= len(files) <= 2:
        raise ValueError(f"expected one predictions file or two .npy files, got {len(files)}")
    for path in files:
        if path.suffix.lower() not in SUFFIXES:
            raise ValueError(f"{path}: unknown format {path.suffix!r}; expected {SUFFIXES}")
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
    if len(files) == 2 and any(p.suffix.lower() != ".npy" for p in files):
        raise ValueError(f"{source}: two files must be .npy files, scores then labels")
    try:
        scores, label_values, notes = _read(files, labels)
    except (OSError, KeyError, zipfile.BadZipFile, RuntimeError, EOFError) as error:
        raise ValueError(f"{source}: cannot be read: {error}") from None
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    try:
        checked, label_tensor, read = _checked(scores, label_values, labels, notes)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    return Predictions(checked, label_tensor, source, read)


def _read(files: list[Path], need_labels: bool) -> tuple[Any, Any, list[str]]:
    """The raw scores and labels (arrays or tensors), with a note of where they came from."""
    suffix = files[0].suffix.lower()
    if len(files) == 2:
        scores, labels = (_numpy(path) for path in files)
        return scores, labels, ["scores and labels from two .npy files"]
    if suffix == ".npy":
        if need_labels:
            raise ValueError("a .npy file holds scores only: give the labels' .npy file after it")
        return _numpy(files[0]), None, ["scores from a .npy file"]
    if suffix == ".csv":
        return _read_csv(files[0], need_labels)
    if suffix == ".npz":
        arrays: Mapping[str, Any] = _numpy(files[0])
        kind = "arrays"
    else:
        try:
            arrays = load_tensors(files[0])
        except UnreadableFile as error:
            raise ValueError(f"cannot be read: {error}") from None
        if not isinstance(arrays, Mapping):
            raise ValueError(f"expected a dict of tensors, got {type(arrays).__name__}")
        kind = "keys"
    present = [key for key in SCORE_KEYS if key in arrays]
    if len(present) != 1:
        found = ", ".join(map(repr, arrays)) or "nothing"
        raise ValueError(f"expected exactly one of {SCORE_KEYS} and 'labels', found {found}")
    label_key = next((key for key in LABEL_COLUMNS if key in arrays), None)
    if label_key is None and need_labels:
        raise ValueError(f"no labels: expected one of {LABEL_COLUMNS}, found {', '.join(arrays)}")
    used = f"{kind} {present[0]!r}" + (f" and {label_key!r}" if label_key else "")
    scores = arrays[present[0]]
    if present[0] == "probs":
        scores = _as_float_tensor(scores)
        if not looks_like_probabilities(scores):
            raise ValueError("'probs' holds rows that are not distributions (in [0, 1], sum 1)")
        return _log(scores), arrays.get(label_key) if label_key else None, [used, "probabilities"]
    return scores, arrays[label_key] if label_key else None, [used]


def _numpy(path: Path) -> Any:
    """An .npy file's array or an .npz file's arrays (a dict), never unpickling anything."""
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        if not zipfile.is_zipfile(path):
            raise ValueError("cannot be read: not an .npz archive (a zip of .npy files)")
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as error:  # numpy's own message offers allow_pickle=True: never say that
        if str(error).startswith("cannot be read"):
            raise
        raise ValueError("cannot be read: not numeric numpy data (objects or damage)") from None


def _read_csv(path: Path, need_labels: bool) -> tuple[Any, Any, list[str]]:
    table = read_table(path, need_labels)
    note = f"columns {', '.join(table.columns)} as scores"
    if table.labels is None:
        return table.values, None, [note]
    try:
        labels = np.array([float(label) for label in table.labels], dtype=np.float64)
    except ValueError:
        raise ValueError(
            f"column {table.label_column!r} holds a label that is not a number"
        ) from None
    return table.values, labels, [f"{note}, {table.label_column!r} as labels"]


def _as_float_tensor(scores: Any) -> Tensor:
    tensor = scores if isinstance(scores, Tensor) else torch.from_numpy(np.asarray(scores))
    if not tensor.is_floating_point():
        raise ValueError(f"scores must be floating-point numbers, got {tensor.dtype}")
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    if tensor.dim() != 2:
        raise ValueError(f"scores must have shape (N, C), got {tuple(tensor.shape)}")
    if tensor.shape[0] == 0:
        raise ValueError("the file holds no samples")
    if not bool(tensor.isfinite().all()):
        raise ValueError("scores hold NaN or infinite values")
    return tensor


def _log(probabilities: Tensor) -> Tensor:
    """Log-probabilities, zeros at the dtype's smallest normal number (finite)."""
    return probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()


def _checked(
    scores: Any, labels: Any, need_labels: bool, notes: list[str]
) -> tuple[Tensor, Tensor | None, tuple[str, ...]]:
    scores = _as_float_tensor(scores)
    if "probabilities" in notes:
        notes = [n for n in notes if n != "probabilities"]
        notes.append("probabilities: read as their logarithm")
    elif looks_like_probabilities(scores):
        notes.append("every row is a distribution: read as probabilities, their logarithm used")
        scores = _log(scores)
    if labels is None:
        return scores, None, tuple(notes)
    label_tensor = labels if isinstance(labels, Tensor) else torch.from_numpy(np.asarray(labels))
    if label_tensor.dim() != 1 or len(label_tensor) != len(scores):
        raise ValueError(
            f"labels must have shape ({len(scores)},) to match the scores, "
            f"got {tuple(label_tensor.shape)}"
        )
    if label_tensor.is_floating_point():
        if not bool((label_tensor == label_tensor.round()).all()):
            raise ValueError("labels must be class indices (whole numbers)")
    elif label_tensor.dtype == torch.bool or label_tensor.is_complex():
        raise ValueError(f"labels must be class indices, got {label_tensor.dtype}")
    label_tensor = label_tensor.long()
    low, high = int(label_tensor.min()), int(label_tensor.max())
    if low < 0 or high >= scores.shape[1]:
        bad = low if low < 0 else high
        raise ValueError(f"label {bad} is out of range for {scores.shape[1]} classes [0, C)")
    return scores, label_tensor, tuple(notes)


def write_scores(path: str | os.PathLike[str], log_probs: Tensor, labels: Tensor | None) -> Path:
    """Write calibrated ``log_probs`` ``(N, C)`` (and ``probs``, and ``labels`` if given) to
    ``path``: ``.npz`` arrays, ``.pt`` a dict of tensors, or ``.csv`` (the probabilities, a
    column per class, and a ``label`` column). Atomic."""
    path = Path(path)
    arrays = {"log_probs": log_probs, "probs": log_probs.exp()}
    if labels is not None:
        arrays["labels"] = labels
    suffix = path.suffix.lower()
    if suffix == ".npz":
        numpy_arrays: dict[str, Any] = {k: v.numpy() for k, v in arrays.items()}
        return atomic_write(path, lambda f: np.savez(f, **numpy_arrays))
    if suffix in (".pt", ".pth"):
        return atomic_write(path, lambda f: torch.save(arrays, f))
    if suffix == ".csv":
        header = [f"class_{k}" for k in range(log_probs.shape[1])]
        lines = [",".join(header + (["label"] if labels is not None else []))]
        for i, row in enumerate(arrays["probs"].tolist()):
            fields = [repr(v) for v in row] + ([str(int(labels[i]))] if labels is not None else [])
            lines.append(",".join(fields))
        return atomic_write_text(path, "\n".join(lines) + "\n")
    raise ValueError(f"{path}: unknown output format {path.suffix!r}; use .npz, .pt or .csv")
