"""CSV tables of numbers with a label column: the one reader behind saved predictions
(``focalcal calibrate``) and tabular datasets (``--dataset table.csv``)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LABEL_COLUMNS = ("label", "labels", "target", "targets", "class", "y")
"""The names a label column may have in a header, in any case."""


@dataclass(frozen=True)
class Table:
    """A table's value columns (names and ``(N, D)`` float64 values) and its label column's
    name and fields (stripped strings; ``None`` where the table has no label column)."""

    columns: tuple[str, ...]
    values: np.ndarray
    label_column: str | None
    labels: list[str] | None


def read_table(path: Path, need_labels: bool = True) -> Table:
    """The CSV table at ``path``: a header, then rows of as many fields, every field but the
    label column's a number. ``ValueError`` (without the path: the caller names the file) for
    an empty file, a missing label column where ``need_labels``, a ragged line or a field that
    is not a number."""
    with path.open(newline="") as file:
        rows = list(csv.reader(file))
    if not rows:
        raise ValueError("the file is empty")
    header = [name.strip() for name in rows[0]]
    label = next((i for i, name in enumerate(header) if name.lower() in LABEL_COLUMNS), None)
    if label is None and need_labels:
        raise ValueError(f"no label column: name one of {LABEL_COLUMNS} in the header")
    values, labels = [], []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"line {number} has {len(row)} fields, the header {len(header)}")
        try:
            values.append([float(field) for i, field in enumerate(row) if i != label])
        except ValueError:
            raise ValueError(f"line {number} holds a field that is not a number") from None
        if label is not None:
            labels.append(row[label].strip())
    columns = tuple(name for i, name in enumerate(header) if i != label)
    array = np.array(values, dtype=np.float64).reshape(len(values), len(columns))
    if label is None:
        return Table(columns, array, None, None)
    return Table(columns, array, header[label], labels)
