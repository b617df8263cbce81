"""Calibrate any classifier from its saved predictions: scores and labels in, fitted post-hoc
maps, a before/after report and reusable calibrators out. No run directory, no model.

- :func:`~focalcal.predictions.read_predictions` (:mod:`focalcal.predictions`, re-exported
  here) reads scores and labels from a file a user has: ``.npz``, ``.pt``, ``.csv`` or a pair
  of ``.npy`` files, probabilities recognised and read as log-probabilities.
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

import importlib.util
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from focalcal._checks import unknown_name
from focalcal._io import atomic_write_text
from focalcal.metrics import calibration_report, reliability_bins
from focalcal.predictions import Predictions, read_predictions, write_scores
from focalcal.report.cells import format_parameters, format_percent, markdown_line, with_interval
from focalcal.scaling import (
    Calibrator,
    calibrator_names,
    default_calibrators,
    fit_calibrator,
    save_calibrator,
)

__all__ = [
    "Calibration",
    "Predictions",
    "calibrate",
    "calibration_markdown",
    "read_predictions",
    "worse_warning",
    "write_calibration",
    "write_scores",
]

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
    text = json.dumps(calibration.summary, indent=2) + "\n"
    written.append(atomic_write_text(out / "calibration.json", text))
    return written
