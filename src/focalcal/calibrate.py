"""Calibrate any classifier from its saved predictions: scores and labels in, fitted post-hoc
maps, a before/after report and reusable calibrators out. No run directory, no model.

- :func:`read_predictions` reads scores and labels from a file a user has: ``.npz`` (arrays
  ``logits`` or ``probs``, and ``labels``), ``.pt``/``.pth`` (a dict of tensors with those
  keys, read with ``weights_only=True``), a pair of ``.npy`` files (scores, then labels) or
  ``.csv`` (a header, one column per class and a ``label`` column). It says which keys or
  columns it used; probabilities (the ``probs`` key, or rows that are distributions) become
  log-probabilities, with a note. Bad input is a ``ValueError`` naming the file.
- :func:`calibrate` fits each requested method of :func:`~focalcal.scaling.calibrator_names`
  on the validation predictions and reports every metric of the test predictions before and
  after it, with bootstrap intervals.
- :func:`write_calibration` writes the result into a directory: ``calibration.json``,
  ``calibration.md``, ``reliability/METHOD.png`` (before | after) and
  ``calibrators/METHOD.json``, which :func:`~focalcal.scaling.load_calibrator` (or
  ``focalcal calibrate --apply``) applies to new scores.

``focalcal calibrate`` is this module on the command line.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import time
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from focalcal._checks import looks_like_probabilities, unknown_name
from focalcal._io import UnreadableFile, atomic_write, atomic_write_text, load_tensors
from focalcal.metrics import calibration_report, reliability_bins
from focalcal.report.cells import format_parameters, format_percent, markdown_line, with_interval
from focalcal.scaling import (
    Calibrator,
    calibrator_names,
    default_calibrators,
    fit_calibrator,
    save_calibrator,
)

SCORE_KEYS = ("logits", "probs")
LABEL_KEYS = ("labels", "label", "targets", "target", "y")
SUFFIXES = (".npz", ".pt", ".pth", ".npy", ".csv")
METRICS = ("ece", "adaece", "classwise_ece", "mce", "nll", "brier", "error")
TITLES = {
    "ece": "ECE (%)",
    "adaece": "AdaECE (%)",
    "classwise_ece": "Classwise-ECE (%)",
    "mce": "MCE (%)",
    "nll": "NLL (×100)",
    "brier": "Brier (×100)",
    "error": "Error (%)",
}


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
    label_key = next((key for key in LABEL_KEYS if key in arrays), None)
    if label_key is None and need_labels:
        raise ValueError(f"no labels: expected one of {LABEL_KEYS}, found {', '.join(arrays)}")
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
    with path.open(newline="") as file:
        rows = list(csv.reader(file))
    if not rows:
        raise ValueError("the file is empty")
    header = [name.strip() for name in rows[0]]
    label_column = next((i for i, n in enumerate(header) if n.lower() in LABEL_KEYS), None)
    if label_column is None and need_labels:
        raise ValueError(f"no label column: name one of {LABEL_KEYS} in the header")
    classes = [i for i in range(len(header)) if i != label_column]
    values = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"line {number} has {len(row)} fields, the header {len(header)}")
        try:
            values.append([float(field) for field in row])
        except ValueError:
            raise ValueError(f"line {number} holds a field that is not a number") from None
    table = np.array(values, dtype=np.float64).reshape(len(values), len(header))
    names = ", ".join(header[i] for i in classes)
    note = f"columns {names} as scores" + (
        f", {header[label_column]!r} as labels" if label_column is not None else ""
    )
    labels = table[:, label_column] if label_column is not None else None
    return table[:, classes], labels, [note]


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


@dataclass
class Calibration:
    """What :func:`calibrate` found: ``summary`` (plain JSON: the before and after reports,
    each method's fitted parameters and fit time), the fitted ``calibrators`` by name, and
    ``worse``, the methods that leave test ECE worse than before."""

    summary: dict[str, Any]
    calibrators: dict[str, Calibrator]
    worse: list[str]


def calibrate(
    val: Predictions,
    test: Predictions,
    methods: Sequence[str] | None = None,
    *,
    num_bins: int = 15,
    bootstrap_samples: int = 200,
    level: float = 0.95,
    seed: int = 0,
    progress: bool = False,
) -> Calibration:
    """Fit every method of ``methods`` (default:
    :func:`~focalcal.scaling.default_calibrators`) on ``val`` at its default options and
    report every metric of ``test`` before and after it, with
    ``bootstrap_samples`` basic-bootstrap intervals at ``level`` (0: none).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> logits = 3 * torch.randn(2000, 5, generator=g)  # over-confident: right at T = 3
        >>> labels = torch.multinomial((logits / 3).softmax(1), 1, generator=g).squeeze(1)
        >>> val = Predictions(logits[:1000], labels[:1000], "val")
        >>> test = Predictions(logits[1000:], labels[1000:], "test")
        >>> result = calibrate(val, test, ["temperature"], bootstrap_samples=0)
        >>> 2.5 < result.summary["methods"]["temperature"]["parameters"]["T"] < 3.5
        True
        >>> result.summary["methods"]["temperature"]["ece"] < result.summary["before"]["ece"]
        True
    """
    names = list(methods) if methods is not None else default_calibrators(val.num_classes)
    for name in names:
        if name not in calibrator_names():
            raise unknown_name("method", name, calibrator_names())
    if val.labels is None or test.labels is None:
        raise ValueError("calibrate needs labels for both the validation and the test set")
    if val.num_classes != test.num_classes:
        raise ValueError(
            f"{val.source} has {val.num_classes} classes, {test.source} {test.num_classes}"
        )

    def report(scores: Tensor) -> dict[str, Any]:
        return calibration_report(
            scores, test.labels, num_bins, bootstrap_samples=bootstrap_samples,  # type: ignore[arg-type]
            level=level, seed=seed,
        ).to_dict()  # fmt: skip

    before = report(test.scores)
    calibrators: dict[str, Calibrator] = {}
    results: dict[str, Any] = {}
    steps: Iterable[str] = names
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(names, desc="calibrators", unit="method", leave=False)
    for name in steps:
        start = time.perf_counter()
        calibrator = fit_calibrator(name, val.scores, val.labels)
        seconds = time.perf_counter() - start
        calibrators[name] = calibrator
        results[name] = {
            **report(calibrator.transform(test.scores)),
            "parameters": calibrator.summary(),
            "options": calibrator.options(),
            "fit_seconds": seconds,
            "reference": calibrator.reference,
        }
    worse = [name for name, r in results.items() if r["ece"] > before["ece"]]
    summary = {
        "version": 1,
        "val": {"source": val.source, "num_samples": len(val.scores), "read": list(val.notes)},
        "test": {"source": test.source, "num_samples": len(test.scores), "read": list(test.notes)},
        "num_classes": val.num_classes,
        "num_bins": num_bins,
        "interval": {
            "method": before["interval_method"],
            "level": before["interval_level"],
            "samples": bootstrap_samples,
        },
        "before": before,
        "methods": results,
        "worse": worse,
    }
    return Calibration(summary, calibrators, worse)


def worse_warning(calibration: Calibration) -> str | None:
    """One line naming the methods that leave test ECE worse than before, or ``None``."""
    if not calibration.worse:
        return None
    before = calibration.summary["before"]["ece"]
    methods = calibration.summary["methods"]
    listed = ", ".join(
        f"{name} ({format_percent(methods[name]['ece'])} %)" for name in calibration.worse
    )
    return f"test ECE worse than before ({format_percent(before)} %) after {listed}"


def calibration_markdown(summary: Mapping[str, Any]) -> str:
    """The summary of :func:`calibrate` as a Markdown page: a row per method (the first,
    uncalibrated), a column per metric with its interval, and the fitted parameters."""
    val, test, interval = summary["val"], summary["test"], summary["interval"]
    lines = [
        "# Calibration",
        "",
        f"Fitted on {val['num_samples']} samples of `{val['source']}` "
        f"({'; '.join(val['read'])}); evaluated on {test['num_samples']} samples of "
        f"`{test['source']}` ({'; '.join(test['read'])}); {summary['num_classes']} classes, "
        f"{summary['num_bins']} bins.",
        "",
        markdown_line(["Method", *(TITLES[m] for m in METRICS), "Fitted"]),
        "|---|" + "---:|" * len(METRICS) + "---|",
    ]
    rows = {"uncalibrated": {**summary["before"], "parameters": {}}, **summary["methods"]}
    for name, report in rows.items():
        cells = [with_interval(report, metric) for metric in METRICS]
        lines.append(markdown_line([name, *cells, format_parameters(report["parameters"])]))
    lines.append("")
    if interval["method"] is not None:
        bare = [
            TITLES[m].split(" (")[0] for m in METRICS if m not in summary["before"]["intervals"]
        ]
        lines.append(
            f"In brackets: {100 * interval['level']:g} % {interval['method']} bootstrap "
            f"intervals over {interval['samples']} resamples of the test set (the method's "
            f"fit held fixed); none for {' and '.join(bare)}."
        )
    else:
        lines.append("No bootstrap intervals (`--bootstrap 0`).")
    lines.append(
        "Each method fitted on the validation file at its default options; "
        "docs/calibrate.md says what each one is."
    )
    warning = worse_warning(Calibration(dict(summary), {}, list(summary["worse"])))
    if warning:
        lines += ["", f"**Warning**: {warning}."]
    return "\n".join(lines) + "\n"


def write_calibration(
    out: str | os.PathLike[str], calibration: Calibration, test: Predictions
) -> list[Path]:
    """Write the calibration into ``out``, each file atomically: ``calibrators/METHOD.json``,
    ``reliability/METHOD.png`` (test predictions before | after; with matplotlib),
    ``calibration.md`` and, last, ``calibration.json``. Returns the paths written."""
    out = Path(out)
    (out / "calibration.json").unlink(missing_ok=True)  # written last: present = complete
    written = [
        save_calibrator(calibrator, out / "calibrators" / f"{name}.json")
        for name, calibrator in calibration.calibrators.items()
    ]
    if importlib.util.find_spec("matplotlib") is not None:
        from focalcal.report.plots import save_reliability_diagram

        assert test.labels is not None
        before = reliability_bins(test.scores, test.labels)
        for name, calibrator in calibration.calibrators.items():
            panels = {
                "uncalibrated": before,
                name: reliability_bins(calibrator.transform(test.scores), test.labels),
            }
            written.append(save_reliability_diagram(panels, out / "reliability" / f"{name}.png"))
    written.append(
        atomic_write_text(out / "calibration.md", calibration_markdown(calibration.summary))
    )
    text = json.dumps(calibration.summary, indent=2, default=_plain) + "\n"
    written.append(atomic_write_text(out / "calibration.json", text))
    return written


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


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
