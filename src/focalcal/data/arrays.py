"""Your own data as arrays: one ``.npz`` (numpy) or ``.pt``/``.pth`` (a dict of tensors, read
weights-only) file holding ``x_train``, ``y_train``, ``x_test``, ``y_test`` and, optionally,
``x_val``, ``y_val`` (without them the validation split is the paper's seeded 10 % of the
training split), or a ``.csv`` table of features with a label column.
``load_dataset("path/to/data.npz", split=...)`` reads it.

Inputs are images as ``uint8`` ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` (C of 1, 3
or 4, read channels-last where the last axis alone has such a size), or signals and features as
floats ``(N, L)`` or ``(N, C, L)``. Labels are whole numbers from 0; the class count is the
largest label in any split plus one, or the length of an optional ``classes`` array of names.
The normalisation constants are the training inputs' per-channel mean and standard deviation.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from focalcal._io import UnreadableFile, load_tensors
from focalcal._tables import read_table
from focalcal.data.dataset import Dataset

SUFFIXES = (".npz", ".pt", ".pth", ".csv")
REQUIRED = ("x_train", "y_train", "x_test", "y_test")


def is_array_file(name: str) -> bool:
    """Whether a dataset name is a path to an arrays file (by its suffix)."""
    return Path(name).suffix.lower() in SUFFIXES


def has_validation(path: str) -> bool:
    """Whether the file holds its own validation split."""
    return "x_val" in _current(path)


def input_kind(path: str) -> str:
    """``"images"`` for uint8 inputs, ``"signals"`` for floats."""
    return "images" if _current(path)["x_train"].dtype == torch.uint8 else "signals"


def read_arrays(path: str, split: str) -> Dataset:
    """One split of the arrays file at ``path`` (``"train"``, ``"val"`` where it has one,
    ``"test"``), as a :class:`~focalcal.data.dataset.Dataset`; ``ValueError`` naming the file
    and the array for anything else."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"dataset file {path} does not exist")
    arrays = _current(path)
    if f"x_{split}" not in arrays:
        raise ValueError(f"{path} holds no x_{split}")
    train = arrays["x_train"]
    axes = (0, 2, 3) if train.dim() == 4 else (0, 2)
    scaled = train.double() / 255 if train.dtype == torch.uint8 else train.double()
    mean = tuple(scaled.mean(dim=axes).tolist())
    std = tuple(max(s, 1e-12) for s in scaled.std(dim=axes).tolist())
    return Dataset(arrays[f"x_{split}"], arrays[f"y_{split}"], arrays["classes"], mean, std)


def _current(path: str) -> dict[str, Any]:
    """The file's arrays as it is now (the cache follows its modification time)."""
    return _arrays(path, os.stat(path).st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _arrays(path: str, modified: int) -> dict[str, Any]:
    """The file's checked arrays as tensors (cached by path and modification time)."""
    raw: dict[str, Any]
    try:
        if Path(path).suffix.lower() == ".csv":
            raw = _table(Path(path))
        elif Path(path).suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                raw = {k: archive[k] for k in archive.files}
        else:
            loaded = load_tensors(Path(path))
            if not isinstance(loaded, dict):
                raise ValueError(f"holds a {type(loaded).__name__}, not a dict of tensors")
            raw = dict(loaded)
    except (ValueError, UnreadableFile, OSError) as error:
        message = str(error) if "allow_pickle" not in str(error) else "it holds Python objects"
        raise ValueError(f"dataset file {path} cannot be read: {message}") from None
    missing = [k for k in REQUIRED if k not in raw]
    if ("x_val" in raw) != ("y_val" in raw):
        missing.append("y_val" if "x_val" in raw else "x_val")
    if missing:
        raise ValueError(f"dataset file {path} lacks {', '.join(missing)}; it needs {REQUIRED}")
    out: dict[str, Any] = {}
    splits = [s for s in ("train", "val", "test") if f"x_{s}" in raw]
    for split in splits:
        x, y = (_tensor(raw[f"{a}_{split}"], f"{path}: {a}_{split}") for a in ("x", "y"))
        out[f"x_{split}"] = _inputs(x, f"{path}: x_{split}")
        out[f"y_{split}"] = _labels(y, len(out[f"x_{split}"]), f"{path}: y_{split}")
    shapes = {tuple(out[f"x_{s}"].shape[1:]) for s in splits}
    dtypes = {out[f"x_{s}"].dtype for s in splits}
    if len(shapes) > 1 or len(dtypes) > 1:
        raise ValueError(f"dataset file {path}: the splits' inputs differ in shape or dtype")
    count = 1 + max(int(out[f"y_{s}"].max()) for s in splits)
    names = raw.get("classes")
    classes = tuple(str(c) for c in np.asarray(names).tolist()) if names is not None else None
    if classes is not None and len(classes) < count:
        raise ValueError(
            f"dataset file {path}: {len(classes)} class names, labels up to {count - 1}"
        )
    out["classes"] = classes or tuple(str(k) for k in range(count))
    return out


def _table(path: Path) -> dict[str, Any]:
    """A CSV table of features (:func:`focalcal._tables.read_table`; labels numbers or class
    names). Features become channels of length 1, ``(N, D, 1)``, so each is standardised on
    its own; a seeded 10 % of the rows is the test split."""
    from focalcal.data.splits import train_test_indices

    table = read_table(path)
    assert table.labels is not None  # read_table requires the label column
    if not table.labels:
        raise ValueError("the table has a header but no rows")
    try:
        numbers = [float(v) for v in table.labels]
        classes = None
    except ValueError:  # class names: sorted, as an image folder's
        classes = sorted(set(table.labels))
        numbers = [float(classes.index(v)) for v in table.labels]
    x = torch.from_numpy(table.values).float().unsqueeze(2)
    y = torch.tensor(numbers, dtype=torch.float64)
    keep, held = train_test_indices(len(y))
    split = {"x_train": x[keep], "y_train": y[keep], "x_test": x[held], "y_test": y[held]}
    return split if classes is None else {**split, "classes": classes}


def _tensor(value: Any, name: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    try:
        return torch.from_numpy(np.asarray(value))
    except TypeError:
        raise ValueError(f"{name}: must hold numbers, got {np.asarray(value).dtype}") from None


def _inputs(x: Tensor, name: str) -> Tensor:
    if x.dtype == torch.uint8:
        if x.dim() == 3:
            return x.unsqueeze(1).contiguous()
        if x.dim() == 4:
            channels_last = x.shape[3] in (1, 3, 4) and x.shape[1] not in (1, 3, 4)
            return (x.permute(0, 3, 1, 2) if channels_last else x).contiguous()
        raise ValueError(f"{name}: images must be (N, H, W) or (N, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: inputs must be uint8 images or float signals, got {x.dtype}")
    if not bool(x.isfinite().all()):
        raise ValueError(f"{name}: holds NaN or infinite values")
    if x.dim() == 2:
        return x.float().unsqueeze(1).contiguous()
    if x.dim() == 3:
        return x.float().contiguous()
    raise ValueError(f"{name}: float inputs must be (N, L) or (N, C, L), got {tuple(x.shape)}")


def _labels(y: Tensor, count: int, name: str) -> Tensor:
    if y.dim() != 1 or len(y) != count:
        raise ValueError(f"{name}: labels must have shape ({count},), got {tuple(y.shape)}")
    if y.is_floating_point() and not bool((y == y.round()).all()):
        raise ValueError(f"{name}: labels must be whole numbers")
    y = y.long()
    if count and int(y.min()) < 0:
        raise ValueError(f"{name}: labels must be >= 0, got {int(y.min())}")
    return y
