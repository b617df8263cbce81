"""Paper-style result tables as Markdown, LaTeX (booktabs) and JSON.

The input is a list of rows, one per run, made by :func:`result_row` from a run's
``evaluation.json`` (see :mod:`focalcal.engine.evaluate`): ``run``, ``dataset``, ``model``,
``loss``, ``temperature``, ``error``, ``<metric>_before`` / ``<metric>_after`` for ``nll``,
``ece``, ``adaece``, ``classwise_ece``, ``mce``, ``brier``, and
``ood = {spec: {"entropy" | "confidence": {"before": auroc, "after": auroc}, "fpr95":
{"entropy" | "confidence": {"before": fpr, "after": fpr}}}}``, all fractions.

:func:`build_tables` lays them out as the paper does: one table per metric (ECE, AdaECE,
Classwise-ECE, test error, NLL, and for every OOD set the AUROC and the FPR at 95 % TPR, by
entropy and by max confidence), a row per
(dataset, model), a column per loss. Markdown and LaTeX show percentages with two decimals;
a cell reads ``4.35 → 1.35 (2.5)`` in Markdown (before → after temperature scaling (T)) and
takes a Pre T and a Post T column in LaTeX. JSON keeps the unrounded fractions.

Rows of one (dataset, model, loss) with different ``seed`` values are repeats: their cell is
the mean ± the standard deviation over the seeds (T: the mean).
:func:`~focalcal.report.comparison.comparison_markdown`, appended to the Markdown page, turns
them around, a table per (dataset, model) with a row per loss and a column per metric,
and marks the best entry of a column only where it beats the runner-up by more than one
standard deviation; single runs show their bootstrap intervals there instead, when evaluated
with them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from focalcal._io import atomic_write_text
from focalcal.report.cells import (
    Cell,
    format_cell,
    format_parameters,
    format_percent,
    format_temperature,
    loss_label,
    markdown_line,
    mean_cell,
    spread,
    with_interval,
)
from focalcal.report.comparison import comparison_markdown, post_hoc_columns

Row = Mapping[str, Any]
Setting = tuple[str, str]  # (dataset, model)

# metric key -> its name in tables; NLL and Brier are not fractions of samples, so they read
# "× 100" where the others read "%" (the paper prints NLL × 100 as well).
TITLES = {
    "error": "Test error (%)",
    "nll": "NLL (×100)",
    "ece": "ECE (%)",
    "adaece": "AdaECE (%)",
    "classwise_ece": "Classwise-ECE (%)",
    "mce": "MCE (%)",
    "brier": "Brier (×100)",
}
REPORT_METRICS = ("nll", "ece", "adaece", "classwise_ece", "mce", "brier")
# Each OOD set's tables: (key, title, where in its evaluation entry: "" for the AUROCs at the
# top level, "fpr95" for the FPRs; score).
OOD_TABLES = (
    ("ood-{spec}", "OOD AUROC (%), {spec}, entropy", "", "entropy"),
    ("ood-{spec}-confidence", "OOD AUROC (%), {spec}, max confidence", "", "confidence"),
    ("fpr95-{spec}", "OOD FPR at 95 % TPR (%), {spec}, entropy", "fpr95", "entropy"),
    ("fpr95-{spec}-confidence", "OOD FPR at 95 % TPR (%), {spec}, max confidence", "fpr95",
     "confidence"),
)  # fmt: skip
TABLE_METRICS = ("ece", "adaece", "classwise_ece", "error", "nll")
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "×": r"$\times$",
    "–": "--",
}


@dataclass(frozen=True)
class Table:
    """A paper-style table: ``cells[(dataset, model, loss)]``, rows in ``settings`` order,
    columns in ``losses`` order; ``scaled``: the cells hold before and after T."""

    key: str
    title: str
    scaled: bool
    settings: tuple[Setting, ...]
    losses: tuple[str, ...]
    cells: Mapping[tuple[str, str, str], Cell]

    def to_dict(self) -> dict[str, Any]:
        """The table as JSON-ready data, values as unrounded fractions."""
        cells = [
            {"dataset": d, "model": m, "loss": loss, **vars(cell)}
            for (d, m, loss), cell in self.cells.items()
        ]
        settings = [{"dataset": d, "model": m} for d, m in self.settings]
        return {
            "key": self.key,
            "title": self.title,
            "scaled": self.scaled,
            "settings": settings,
            "losses": list(self.losses),
            "cells": cells,
        }


def result_row(
    evaluation: Mapping[str, Any], run: str | None = None, seed: int | None = None
) -> dict[str, Any]:
    """The table row of one ``evaluation.json`` (fractions); ``run`` names it (default: the
    evaluation's run directory), ``seed`` tells repeats of one configuration apart.

    Example:
        >>> report = {"error": 0.05, "nll": 0.2, "ece": 0.04, "adaece": 0.04,
        ...           "classwise_ece": 0.01, "mce": 0.2, "brier": 0.08}
        >>> evaluation = {"run": "runs/ce", "dataset": "cifar10", "model": "resnet50",
        ...               "loss": "ce", "checkpoint": "last", "objective": "ece",
        ...               "temperature": 2.5, "test": {"before": report, "after": report},
        ...               "ood": {"svhn": {"num_samples": 9, "entropy": {"before": 0.9}}}}
        >>> row = result_row(evaluation)
        >>> row["run"], row["ece_before"], row["ood"]
        ('runs/ce', 0.04, {'svhn': {'entropy': {'before': 0.9}}})
    """
    before, after = evaluation["test"]["before"], evaluation["test"]["after"]
    row: dict[str, Any] = {"run": run if run is not None else evaluation["run"]}
    for key in ("dataset", "model", "loss", "checkpoint", "objective", "temperature"):
        row[key] = evaluation[key]
    row["error"] = before["error"]
    for metric in REPORT_METRICS:
        row[f"{metric}_before"], row[f"{metric}_after"] = before[metric], after[metric]
    for kind, report in evaluation.get("post_hoc", {}).items():  # "vector", "matrix"
        for metric in REPORT_METRICS:
            row[f"{metric}_{kind}"] = report[metric]
    row["intervals"] = {
        f"{metric}_{when}": list(interval)
        for when, report in (("before", before), ("after", after))
        for metric, interval in report.get("intervals", {}).items()
    }
    row["ood"] = {
        spec: {score: value for score, value in entry.items() if isinstance(value, Mapping)}
        for spec, entry in evaluation.get("ood", {}).items()
    }
    row["trained_on"] = list(evaluation.get("trained_on", []))
    if seed is not None:
        row["seed"] = seed
    return row


def build_tables(rows: Sequence[Row]) -> list[Table]:
    """The paper's tables of ``rows``: ECE, AdaECE, Classwise-ECE, test error, NLL, then for
    each OOD set its AUROC by entropy (the paper's) and by max confidence, and its FPR at 95 %
    TPR by each (:data:`OOD_TABLES`; where the rows have them). Rows, columns and OOD sets
    keep the order of first appearance; rows of one (dataset, model, loss) with different seeds
    make one cell of means and standard deviations; two with the same seed are a
    ``ValueError`` naming them."""
    seen: dict[tuple[Any, ...], str] = {}
    for index, row in enumerate(rows):
        missing = [key for key in ("dataset", "model", "loss") if key not in row]
        if missing:
            raise ValueError(f"row {index} ({row.get('run', '?')}) lacks {missing}")
        key = (row["dataset"], row["model"], row["loss"], row.get("seed"))
        name = str(row.get("run", index))
        if key in seen:
            seed = "" if key[3] is None else f" with seed {key[3]}"
            raise ValueError(f"runs {seen[key]!r} and {name!r} are both {'/'.join(key[:3])}{seed}")
        seen[key] = name
    tables = [
        _table(metric, TITLES[metric], rows, _metric_cell(metric)) for metric in TABLE_METRICS
    ]
    specs = _unique(spec for row in rows for spec in row.get("ood", {}))
    for spec in specs:
        for pattern, title, measure, score in OOD_TABLES:
            cell = _ood_cell(spec, measure, score)
            table = _table(pattern.format(spec=spec), title.format(spec=spec), rows, cell)
            if table.cells:  # evaluations written before the FPR have no FPR to show
                tables.append(table)
    return tables


def latex_escape(text: str) -> str:
    r"""``text`` with LaTeX's special characters escaped (``×`` and ``–`` spelled out).

    Example:
        >>> print(latex_escape("fashion_mnist & 5% {x}"))
        fashion\_mnist \& 5\% \{x\}
    """
    pattern = "|".join(re.escape(character) for character in _LATEX_SPECIAL)
    return re.sub(pattern, lambda match: _LATEX_SPECIAL[match.group()], text)


def table_markdown(table: Table) -> str:
    """One table as a Markdown section: a heading, then the grid.

    Example:
        >>> cells = {("cifar10", "resnet50", "ce"): Cell(0.0435, 0.0135, 2.5)}
        >>> table = Table("ece", "ECE (%)", True, (("cifar10", "resnet50"),), ("ce",), cells)
        >>> print(table_markdown(table))
        ### ECE (%), before → after temperature scaling (T)
        <BLANKLINE>
        | Dataset | Model | CE |
        |---|---|---:|
        | cifar10 | resnet50 | 4.35 → 1.35 (2.5) |
        <BLANKLINE>
    """
    title = table.title + (", before → after temperature scaling (T)" if table.scaled else "")
    header = ["Dataset", "Model", *map(loss_label, table.losses)]
    lines = [f"### {title}", "", markdown_line(header), "|---|---|" + "---:|" * len(table.losses)]
    for dataset, model in table.settings:
        cells = [format_cell(table.cells.get((dataset, model, loss))) for loss in table.losses]
        lines.append(markdown_line([dataset, model, *cells]))
    return "\n".join(lines) + "\n"


def table_latex(table: Table) -> str:
    r"""One table as a LaTeX ``table`` environment with booktabs rules (``\usepackage{booktabs}``).

    Example:
        >>> cells = {("cifar_10", "resnet50", "ce"): Cell(0.0435, 0.0135, 2.5)}
        >>> table = Table("ece", "ECE (%)", True, (("cifar_10", "resnet50"),), ("ce",), cells)
        >>> print(table_latex(table))  # doctest: +ELLIPSIS
        \begin{table}[ht]
        ...
        cifar\_10 & resnet50 & 4.35 & 1.35 (2.5) \\
        ...
    """
    columns = 2 if table.scaled else 1
    caption = latex_escape(table.title)
    if table.scaled:
        caption += " before (Pre T) and after (Post T) temperature scaling, T in brackets"
    losses = [latex_escape(loss_label(loss)) for loss in table.losses]
    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        rf"\caption{{{caption}.}}",
        rf"\label{{tab:{re.sub(r'[^A-Za-z0-9:-]', '-', table.key)}}}",
        rf"\begin{{tabular}}{{ll{'c' * columns * len(losses)}}}",
        r"\toprule",
    ]
    if table.scaled:
        spans = [rf"\multicolumn{{2}}{{c}}{{{loss}}}" for loss in losses]
        rules = [rf"\cmidrule(lr){{{3 + 2 * i}-{4 + 2 * i}}}" for i in range(len(losses))]
        lines += ["& & " + " & ".join(spans) + r" \\", " ".join(rules)]
        losses = ["Pre T", "Post T"] * len(losses)
    lines += [" & ".join(["Dataset", "Model", *losses]) + r" \\", r"\midrule"]
    for dataset, model in table.settings:
        cells = [
            _latex_cells(table.cells.get((dataset, model, loss)), columns) for loss in table.losses
        ]
        values = [latex_escape(dataset), latex_escape(model), *(v for c in cells for v in c)]
        lines.append(" & ".join(values) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def markdown_tables(rows: Sequence[Row]) -> str:
    """Every table of ``rows`` (:func:`build_tables`), then :func:`comparison_markdown`, as one
    Markdown page."""
    body = "\n".join(table_markdown(table) for table in build_tables(rows))
    text = (
        f"# Results\n\n{len(rows)} runs; test-split values × 100 (percentages).\n\n"
        f"{machines_note(rows)}\n\n{body}\n"
        f"## Losses compared\n\n{comparison_markdown(rows)}"
    )
    methods = _unique(
        key.removeprefix("ece_")
        for row in rows
        for key in row
        if key.startswith("ece_") and key not in ("ece_before", "ece_after")
    )
    if methods:
        text += (
            "\n## What post-hoc maps leave\n\nBefore, after temperature scaling (T) and after "
            f"each other post-hoc map ({', '.join(methods)}), each fitted on the validation "
            "split.\n\n"
            + comparison_markdown(rows, post_hoc_columns(methods, "ece", "ECE (%)"))
            + "\n"
            + comparison_markdown(rows, post_hoc_columns(methods, "nll", "NLL (×100)"))
        )
    return text


def machines_note(rows: Sequence[Row]) -> str:
    """Where the runs trained, and what that means for repeating them.

    Example:
        >>> note = machines_note([{"trained_on": ["AMD EPYC (x86_64, 2 threads)"]}])
        >>> note.startswith("Trained on AMD EPYC (x86_64, 2 threads). The same command repeats")
        True
    """
    machines = _unique(machine for row in rows for machine in row.get("trained_on", []))
    where = "; ".join(machines) if machines else "a machine these runs did not record"
    return (
        f"Trained on {where}. The same command repeats these numbers exactly on the same "
        "machine and thread count; another CPU, kernel set or thread count rounds differently "
        "in the last bits and training amplifies that, so compare losses across seeds "
        "(`--seeds`), not across machines."
    )


def latex_tables(rows: Sequence[Row]) -> str:
    """Every table of ``rows`` (:func:`build_tables`) in LaTeX, ready to ``\\input``."""
    tables = "\n".join(table_latex(table) for table in build_tables(rows))
    return "% focalcal results; needs \\usepackage{booktabs}\n" + tables


def json_tables(rows: Sequence[Row]) -> str:
    """``rows`` and their tables (:func:`build_tables`) as JSON, values as fractions."""
    tables = [table.to_dict() for table in build_tables(rows)]
    document = {"version": 1, "unit": "fraction", "rows": list(rows), "tables": tables}
    return json.dumps(document, indent=2) + "\n"


def write_tables(
    rows: Sequence[Row], out_dir: str | os.PathLike[str], stem: str = "tables"
) -> dict[str, Path]:
    """Write ``stem.md``, ``stem.tex`` and ``stem.json`` into ``out_dir``, each atomically;
    returns their paths by suffix. Every text is built before the first file is written, so
    bad rows leave the folder as it was."""
    texts = {"md": markdown_tables(rows), "tex": latex_tables(rows), "json": json_tables(rows)}
    out = Path(out_dir)
    return {suffix: atomic_write_text(out / f"{stem}.{suffix}", t) for suffix, t in texts.items()}


def evaluation_markdown(evaluation: Mapping[str, Any]) -> str:
    """One run's ``evaluation.json`` as a short Markdown page: every metric before and after
    T (with bootstrap intervals where computed), the OOD AUROCs and FPRs at 95 % TPR, and
    every metric after the post-hoc maps (every calibrator but temperature scaling) where
    evaluated."""
    before, after = evaluation["test"]["before"], evaluation["test"]["after"]
    name = " · ".join(str(evaluation[key]) for key in ("dataset", "model", "loss"))
    lines = [
        f"# Evaluation: {name}",
        "",
        f"Checkpoint `{evaluation['checkpoint']}` (epoch {evaluation.get('epoch', '?')}); "
        f"T = {format_temperature(evaluation['temperature'])} fitted on "
        f"{evaluation.get('val_samples', '?')} validation samples by {evaluation['objective']}; "
        f"{before['num_samples']} test samples.",
        "",
        f"Trained on {'; '.join(evaluation.get('trained_on') or ['an unrecorded machine'])}; "
        f"evaluated on {evaluation.get('evaluated_on', 'an unrecorded machine')}.",
        "",
        "| Metric | Before T | After T |",
        "|---|---:|---:|",
    ]
    for metric in ("error", *REPORT_METRICS):
        values = [with_interval(report, metric) for report in (before, after)]
        lines.append(markdown_line([TITLES[metric], *values]))
    for spec, entry in evaluation.get("ood", {}).items():
        for _, title, measure, score in OOD_TABLES:
            value = _ood_value(entry, measure, score)
            if isinstance(value, Mapping):
                values = [format_percent(value.get(when)) for when in ("before", "after")]
                lines.append(markdown_line([title.format(spec=spec), *values]))
    post_hoc = evaluation.get("post_hoc")
    if post_hoc:  # absent from evaluations written before the post-hoc maps
        lines += [
            "",
            "## Post-hoc calibration maps",
            "",
            "Each fitted on the validation split at its default options, against temperature "
            "scaling.",
            "",
            markdown_line(["Metric", "Before", "After T", *map(_method_title, post_hoc.items())]),
            "|---|" + "---:|" * (2 + len(post_hoc)),
        ]
        for metric in ("error", *REPORT_METRICS):
            reports = (before, after, *post_hoc.values())
            lines.append(
                markdown_line([TITLES[metric], *(with_interval(r, metric) for r in reports)])
            )
        fitted = [
            f"{name}: {format_parameters(report['parameters'])}"
            for name, report in post_hoc.items()
            if report.get("parameters")
        ]
        if fitted:
            lines += ["", "Fitted: " + "; ".join(fitted) + "."]
    return "\n".join(lines) + "\n"


def _method_title(item: tuple[str, Mapping[str, Any]]) -> str:
    """A post-hoc map's column title, with the ODIR penalties of vector and matrix scaling."""
    name, report = item
    if name == "vector":
        spread, bias = report.get("spread_penalty", 0), report.get("bias_penalty", 0)
        return f"Vector, λ = {spread:g}, μ = {bias:g}"
    if name == "matrix":
        return (
            f"Matrix, ODIR λ = {report['off_diagonal_penalty']:g}, μ = {report['bias_penalty']:g}"
        )
    return name.capitalize()


def _unique(items: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(items))


def _table(key: str, title: str, rows: Sequence[Row], cell: Callable[[Row], Cell | None]) -> Table:
    repeats: dict[tuple[str, str, str], list[Cell]] = {}
    for r in rows:
        value = cell(r)
        if value is not None:
            repeats.setdefault((r["dataset"], r["model"], r["loss"]), []).append(value)
    cells = {k: mean_cell(v) for k, v in repeats.items()}
    return Table(
        key,
        title,
        scaled=any(c is not None and c.temperature is not None for c in cells.values()),
        settings=_unique((r["dataset"], r["model"]) for r in rows),
        losses=_unique(r["loss"] for r in rows),
        cells=cells,
    )


def _metric_cell(metric: str) -> Callable[[Row], Cell | None]:
    if metric == "error":  # T > 0 keeps every prediction, hence the error
        return lambda row: Cell(row.get("error"))
    return lambda row: Cell(
        row.get(f"{metric}_before"), row.get(f"{metric}_after"), row.get("temperature")
    )


def _ood_value(entry: Mapping[str, Any], measure: str, score: str) -> Any:
    """An OOD entry's {"before", "after"} of ``measure`` ("" the AUROC, "fpr95") by ``score``
    (:data:`OOD_TABLES`); None where the entry has none."""
    return (entry.get(measure) or {}).get(score) if measure else entry.get(score)


def _ood_cell(spec: str, measure: str, score: str) -> Callable[[Row], Cell | None]:
    def cell(row: Row) -> Cell | None:
        value = _ood_value(row.get("ood", {}).get(spec, {}), measure, score)
        if value is None:
            return None
        return Cell(value.get("before"), value.get("after"), row.get("temperature"))

    return cell


def _latex_cells(cell: Cell | None, columns: int) -> list[str]:
    if cell is None:
        return ["--"] * columns
    before = latex_escape(format_percent(cell.before)) + spread(cell.before_std, r"$\pm$")
    if columns == 1:
        return [before]
    after = latex_escape(format_percent(cell.after)) + spread(cell.after_std, r"$\pm$")
    if cell.temperature is not None:
        after += f" ({format_temperature(cell.temperature)})"
    return [before, after]
