"""Paper-style result tables as Markdown, LaTeX (booktabs) and JSON.

The input is a list of rows, one per run, made by :func:`result_row` from a run's
``evaluation.json`` (see :mod:`focalcal.engine.evaluate`): ``run``, ``dataset``, ``model``,
``loss``, ``temperature``, ``error``, ``<metric>_before`` / ``<metric>_after`` for ``nll``,
``ece``, ``adaece``, ``classwise_ece``, ``mce``, ``brier``, and
``ood = {spec: {"entropy" | "confidence": {"before": auroc, "after": auroc}}}``, all fractions.

:func:`build_tables` lays them out as the paper does: one table per metric (ECE, AdaECE,
Classwise-ECE, test error, NLL, and the entropy AUROC of every OOD set), a row per
(dataset, model), a column per loss. Markdown and LaTeX show percentages with two decimals;
a cell reads ``4.35 → 1.35 (2.5)`` in Markdown (before → after temperature scaling (T)) and
takes a Pre T and a Post T column in LaTeX. JSON keeps the unrounded fractions.

Rows of one (dataset, model, loss) with different ``seed`` values are repeats: their cell is
the mean ± the standard deviation over the seeds (T: the mean). :func:`comparison_markdown`
turns them around, a table per (dataset, model) with a row per loss and a column per metric,
and marks the best entry of a column only where it beats the runner-up by more than one
standard deviation; single runs show their bootstrap intervals there instead, when evaluated
with them.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from focalcal._io import atomic_write_text

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
TABLE_METRICS = ("ece", "adaece", "classwise_ece", "error", "nll")
LOSS_LABELS = {
    "ce": "CE",
    "brier": "Brier",
    "mmce": "MMCE",
    "mmce-weighted": "MMCE (weighted)",
    "adafocal": "AdaFocal",
    "mbls": "MbLS",
}
# The comparison tables' columns: (title, row key); lower is better in each. A single run's
# bootstrap interval of the column is ``row["intervals"][key]`` (the error's: "error_before").
COMPARISON_COLUMNS = (
    ("Error (%)", "error"),
    ("ECE (%)", "ece_before"),
    ("ECE (T) (%)", "ece_after"),
    ("AdaECE (%)", "adaece_before"),
    ("AdaECE (T) (%)", "adaece_after"),
    ("Classwise-ECE (%)", "classwise_ece_before"),
    ("Classwise-ECE (T) (%)", "classwise_ece_after"),
    ("NLL (×100)", "nll_before"),
    ("NLL (T) (×100)", "nll_after"),
)
# The post-hoc comparison: what temperature, vector and matrix scaling leave of each loss's error
POST_HOC_COLUMNS = (
    ("ECE (%)", "ece_before"),
    ("ECE (T) (%)", "ece_after"),
    ("ECE (vector) (%)", "ece_vector"),
    ("ECE (matrix) (%)", "ece_matrix"),
    ("NLL (×100)", "nll_before"),
    ("NLL (T) (×100)", "nll_after"),
    ("NLL (vector) (×100)", "nll_vector"),
    ("NLL (matrix) (×100)", "nll_matrix"),
)
MISSING = "–"  # an en dash: no run, or a metric the run did not compute
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
class Cell:
    """One run's value of a metric as fractions: ``before`` and, for metrics that temperature
    scaling changes, ``after`` T and T itself; for ``runs`` > 1 repeats (seeds), the means,
    the mean T and the sample standard deviations."""

    before: float | None
    after: float | None = None
    temperature: float | None = None
    before_std: float | None = None  # over seeds, for repeated runs
    after_std: float | None = None
    runs: int = 1


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
    if seed is not None:
        row["seed"] = seed
    return row


def build_tables(rows: Sequence[Row]) -> list[Table]:
    """The paper's tables of ``rows``: ECE, AdaECE, Classwise-ECE, test error, NLL, then the
    entropy AUROC of each OOD set. Rows, columns and OOD sets keep the order of first
    appearance; rows of one (dataset, model, loss) with different seeds make one cell of
    means and standard deviations; two with the same seed are a ``ValueError`` naming them."""
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
    tables += [
        _table(f"ood-{spec}", f"OOD AUROC (%), {spec}, entropy", rows, _ood_cell(spec))
        for spec in specs
    ]
    return tables


def format_percent(value: float | None) -> str:
    """A fraction as a percentage with two decimals; ``None`` or NaN as a dash.

    Example:
        >>> format_percent(0.04354), format_percent(1.0), format_percent(None)
        ('4.35', '100.00', '–')
    """
    if value is None or math.isnan(value):
        return MISSING
    return f"{100 * value:.2f}"


def format_temperature(temperature: float) -> str:
    """T with one decimal when it lies on the paper's 0.1 grid, else two.

    Example:
        >>> format_temperature(2.5), format_temperature(1.0), format_temperature(1.2345)
        ('2.5', '1.0', '1.23')
    """
    one_decimal = abs(temperature - round(temperature, 1)) < 1e-9
    return f"{temperature:.1f}" if one_decimal else f"{temperature:.2f}"


def format_cell(cell: Cell | None) -> str:
    """A Markdown cell: ``before → after (T)`` for metrics T changes, else ``before``; each
    value ``± std`` for repeated runs.

    Example:
        >>> format_cell(Cell(0.0435, 0.0135, 2.5)), format_cell(Cell(0.0495))
        ('4.35 → 1.35 (2.5)', '4.95')
        >>> format_cell(Cell(0.0435, 0.0135, 2.5, 0.0012, 0.0003, runs=3))
        '4.35 ± 0.12 → 1.35 ± 0.03 (2.5)'
    """
    if cell is None:
        return MISSING
    before = format_percent(cell.before) + _spread(cell.before_std)
    if cell.temperature is None:
        return before
    after = format_percent(cell.after) + _spread(cell.after_std)
    return f"{before} → {after} ({format_temperature(cell.temperature)})"


def mean_cell(cells: Sequence[Cell]) -> Cell:
    """The cell of repeated runs: means, the mean T, sample standard deviations (n − 1).

    Example:
        >>> format_cell(mean_cell([Cell(0.040, 0.010, 2.0), Cell(0.044, 0.012, 2.2)]))
        '4.20 ± 0.28 → 1.10 ± 0.14 (2.1)'
    """
    if len(cells) == 1:
        return cells[0]

    def stats(values: list[float | None]) -> tuple[float | None, float | None]:
        if any(v is None for v in values):
            return None, None
        numbers = [float(v) for v in values if v is not None]
        mean = math.fsum(numbers) / len(numbers)
        variance = math.fsum((v - mean) ** 2 for v in numbers) / (len(numbers) - 1)
        return mean, math.sqrt(variance)

    before, before_std = stats([c.before for c in cells])
    after, after_std = stats([c.after for c in cells])
    temperature = stats([c.temperature for c in cells])[0]
    return Cell(before, after, temperature, before_std, after_std, len(cells))


def loss_label(name: str) -> str:
    """A loss's name as the paper prints it.

    Example:
        >>> loss_label("ce"), loss_label("flsd-53"), loss_label("ls-0.05")
        ('CE', 'FLSD-53', 'LS-0.05')
        >>> loss_label("dual-focal-5"), loss_label("adafocal")
        ('Dual-FL-5', 'AdaFocal')
    """
    if name.startswith("dual-focal-"):
        return "Dual-FL-" + name.removeprefix("dual-focal-")
    return LOSS_LABELS.get(name, name.upper())


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
    lines = [f"### {title}", "", _markdown_line(header), "|---|---|" + "---:|" * len(table.losses)]
    for dataset, model in table.settings:
        cells = [format_cell(table.cells.get((dataset, model, loss))) for loss in table.losses]
        lines.append(_markdown_line([dataset, model, *cells]))
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


def comparison_markdown(
    rows: Sequence[Row], columns: Sequence[tuple[str, str]] = COMPARISON_COLUMNS
) -> str:
    """Per (dataset, model), a table with a row per loss and a column per metric of ``columns``
    (title, row key; lower is better in each): mean ± standard deviation over the seeds of repeated runs, the **best**
    of a column marked only where the runner-up's mean is worse by more than one standard
    deviation (the larger of the two); single runs show ``[low, high]`` bootstrap intervals
    where evaluated with them, and nothing is marked.

    Example:
        >>> rows = [{"dataset": "d", "model": "m", "loss": loss, "seed": seed, "error": error,
        ...          "ece_before": ece} for loss, seed, error, ece in [("ce", 0, 0.10, 0.08),
        ...          ("ce", 1, 0.11, 0.09), ("fl-3", 0, 0.10, 0.02), ("fl-3", 1, 0.12, 0.01)]]
        >>> print(comparison_markdown(rows))  # doctest: +NORMALIZE_WHITESPACE
        ### d · m
        <BLANKLINE>
        | Loss | Error (%) | ECE (%) | ECE (T) (%) | AdaECE (%) | AdaECE (T) (%) | Classwise-ECE (%) | Classwise-ECE (T) (%) | NLL (×100) | NLL (T) (×100) |
        |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
        | CE | 10.50 ± 0.71 | 8.50 ± 0.71 | – | – | – | – | – | – | – |
        | FL-3 | 11.00 ± 1.41 | **1.50 ± 0.71** | – | – | – | – | – | – | – |
        <BLANKLINE>
        Lower is better in every column; (T): after temperature scaling. Mean ± standard
        deviation over 2 seeds. **Bold**: the best of its column, marked only where the
        runner-up's mean is worse by more than one standard deviation (the larger of the two).
        <BLANKLINE>
    """  # noqa: E501
    groups: dict[Setting, dict[str, list[Row]]] = {}
    for row in rows:
        setting = (row["dataset"], row["model"])
        groups.setdefault(setting, {}).setdefault(row["loss"], []).append(row)
    header = ["Loss", *(title for title, _ in columns)]
    sections = []
    for (dataset, model), losses in groups.items():
        cells = {
            loss: {key: mean_cell([Cell(r.get(key)) for r in runs]) for _, key in columns}
            for loss, runs in losses.items()
        }
        lines = [f"### {dataset} · {model}", "", _markdown_line(header)]
        lines.append("|---|" + "---:|" * len(columns))
        for loss, runs in losses.items():
            values = [loss_label(loss)]
            for _, key in columns:
                text = format_cell(cells[loss][key])
                interval_key = "error_before" if key == "error" else key
                interval = runs[0].get("intervals", {}).get(interval_key)
                if len(runs) == 1 and interval is not None and text != MISSING:
                    text += f" [{format_percent(interval[0])}, {format_percent(interval[1])}]"
                if _clear_winner({other: c[key] for other, c in cells.items()}) == loss:
                    text = f"**{text}**"
                values.append(text)
            lines.append(_markdown_line(values))
        repeats = sorted({len(runs) for runs in losses.values()})
        if repeats == [1]:
            note = ("One run per loss; [low, high]: 95 % bootstrap interval over the test set "
                    "(`--bootstrap`), where computed. Nothing is marked.")  # fmt: skip
        else:
            seeds = "/".join(map(str, repeats))
            note = (f"Mean ± standard deviation over {seeds} seeds. **Bold**: the best of its "
                    "column, marked only where the runner-up's mean is worse by more than one "
                    "standard deviation (the larger of the two).")  # fmt: skip
        sections.append("\n".join(lines) + f"\n\nLower is better in every column; (T): after "
                        f"temperature scaling. {note}\n")  # fmt: skip
    return "\n".join(sections)


def markdown_tables(rows: Sequence[Row]) -> str:
    """Every table of ``rows`` (:func:`build_tables`), then :func:`comparison_markdown`, as one
    Markdown page."""
    body = "\n".join(table_markdown(table) for table in build_tables(rows))
    text = (
        f"# Results\n\n{len(rows)} runs; test-split values × 100 (percentages).\n\n{body}\n"
        f"## Losses compared\n\n{comparison_markdown(rows)}"
    )
    if any("ece_vector" in row for row in rows):
        text += (
            "\n## What post-hoc maps leave\n\nBefore, after temperature scaling (T), vector "
            "scaling and matrix scaling with ODIR, each fitted on the validation split.\n\n"
            + comparison_markdown(rows, POST_HOC_COLUMNS)
        )
    return text


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
    T (with bootstrap intervals where computed), the OOD AUROCs, and every metric after the
    post-hoc maps (vector scaling, matrix scaling with ODIR) where evaluated."""
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
        "| Metric | Before T | After T |",
        "|---|---:|---:|",
    ]
    for metric in ("error", *REPORT_METRICS):
        values = [_with_interval(report, metric) for report in (before, after)]
        lines.append(_markdown_line([TITLES[metric], *values]))
    for spec, entry in evaluation.get("ood", {}).items():
        for score, auroc in entry.items():
            if isinstance(auroc, Mapping):
                values = [format_percent(auroc.get(when)) for when in ("before", "after")]
                lines.append(_markdown_line([f"OOD AUROC (%), {spec}, {score}", *values]))
    post_hoc = evaluation.get("post_hoc")
    if post_hoc:  # absent from evaluations written before vector and matrix scaling
        vector, matrix = post_hoc["vector"], post_hoc["matrix"]
        odir = f"λ = {matrix['off_diagonal_penalty']:g}, μ = {matrix['bias_penalty']:g}"
        spread = f"λ = {vector.get('spread_penalty', 0):g}, μ = {vector.get('bias_penalty', 0):g}"
        lines += [
            "",
            "## Post-hoc calibration maps",
            "",
            "Vector scaling and matrix scaling with ODIR, each fitted by NLL on the validation "
            "split, against temperature scaling.",
            "",
            _markdown_line(
                ["Metric", "Before", "After T", f"Vector, {spread}", f"Matrix, ODIR {odir}"]
            ),
            "|---|---:|---:|---:|---:|",
        ]
        for metric in ("error", *REPORT_METRICS):
            reports = (before, after, vector, matrix)
            lines.append(
                _markdown_line([TITLES[metric], *(_with_interval(r, metric) for r in reports)])
            )
    return "\n".join(lines) + "\n"


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


def _ood_cell(spec: str) -> Callable[[Row], Cell | None]:
    def cell(row: Row) -> Cell | None:
        entropy = row.get("ood", {}).get(spec, {}).get("entropy")
        if entropy is None:
            return None
        return Cell(entropy.get("before"), entropy.get("after"), row.get("temperature"))

    return cell


def _markdown_line(values: Sequence[str]) -> str:
    return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"


def _latex_cells(cell: Cell | None, columns: int) -> list[str]:
    if cell is None:
        return ["--"] * columns
    before = latex_escape(format_percent(cell.before)) + _spread(cell.before_std, r"$\pm$")
    if columns == 1:
        return [before]
    after = latex_escape(format_percent(cell.after)) + _spread(cell.after_std, r"$\pm$")
    if cell.temperature is not None:
        after += f" ({format_temperature(cell.temperature)})"
    return [before, after]


def _with_interval(report: Mapping[str, Any], metric: str) -> str:
    text = format_percent(report.get(metric))
    interval = report.get("intervals", {}).get(metric)
    if interval is not None:
        text += f" [{format_percent(interval[0])}, {format_percent(interval[1])}]"
    return text


def _clear_winner(cells: Mapping[str, Cell]) -> str | None:
    """The key of the lowest mean, if it beats the runner-up by more than one standard
    deviation (the larger of theirs); ``None`` without repeats or a clear gap."""
    ranked = sorted(
        ((c.before, c.before_std or 0.0, key) for key, c in cells.items() if c.before is not None),
        key=lambda entry: entry[0],
    )
    if len(ranked) < 2 or any(c.runs < 2 for c in cells.values()):
        return None
    (best, best_std, key), (runner_up, runner_up_std, _) = ranked[0], ranked[1]
    return key if runner_up - best > max(best_std, runner_up_std) else None


def _spread(std: float | None, sign: str = "±") -> str:
    return "" if std is None else f" {sign} {100 * std:.2f}"
