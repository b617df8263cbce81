"""The losses compared: per (dataset, model), a row per loss and a column per metric, with
repeated runs (seeds) as mean ± standard deviation and the best of a column marked only where it
is clearly best."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from focalcal.report.cells import (
    MISSING,
    Cell,
    format_cell,
    format_percent,
    loss_label,
    markdown_line,
    mean_cell,
)

Row = Mapping[str, Any]
Setting = tuple[str, str]  # (dataset, model)

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


def post_hoc_columns(methods: Sequence[str], metric: str, title: str) -> list[tuple[str, str]]:
    """The post-hoc comparison's columns of ``metric`` (``"ece"``, ``"nll"``): before, after
    temperature scaling and after each of ``methods`` (the names of
    :func:`~focalcal.scaling.calibrator_names`); ``title`` as ``"ECE (%)"``.

    Example:
        >>> post_hoc_columns(["vector"], "ece", "ECE (%)")
        [('ECE (%)', 'ece_before'), ('ECE (T) (%)', 'ece_after'), ('ECE (vector) (%)', 'ece_vector')]
    """  # noqa: E501
    name, _, unit = title.partition(" (")
    return [
        (title, f"{metric}_before"),
        (f"{name} (T) ({unit}", f"{metric}_after"),
        *((f"{name} ({method}) ({unit}", f"{metric}_{method}") for method in methods),
    ]


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
        lines = [f"### {dataset} · {model}", "", markdown_line(header)]
        lines.append("|---|" + "---:|" * len(columns))
        intervals = False  # whether a cell shows one, for the note
        for loss, runs in losses.items():
            values = [loss_label(loss)]
            for _, key in columns:
                text = format_cell(cells[loss][key])
                interval_key = "error_before" if key == "error" else key
                interval = runs[0].get("intervals", {}).get(interval_key)
                if len(runs) == 1 and interval is not None and text != MISSING:
                    text += f" [{format_percent(interval[0])}, {format_percent(interval[1])}]"
                    intervals = True
                if _clear_winner({other: c[key] for other, c in cells.items()}) == loss:
                    text = f"**{text}**"
                values.append(text)
            lines.append(markdown_line(values))
        sections.append("\n".join(lines) + f"\n\n{_note(losses, intervals)}\n")
    return "\n".join(sections)


def _note(losses: Mapping[str, Sequence[Row]], intervals: bool) -> str:
    """What a comparison table holds, and only that: seeds where rows were averaged, intervals
    where a cell shows one, the rule of the bold marks where the table can have them."""
    repeats = sorted({len(runs) for runs in losses.values()})
    note = "Lower is better in every column; (T): after temperature scaling."
    if repeats != [1]:
        note += f" Mean ± standard deviation over {'/'.join(map(str, repeats))} seeds."
    if intervals:
        note += " [low, high]: 95 % bootstrap interval over the test set (`--bootstrap`)."
    if repeats[0] > 1:  # _clear_winner marks nothing while some loss has a single run
        return note + (" **Bold**: the best of its column, marked only where the runner-up's "
                       "mean is worse by more than one standard deviation (the larger of the "
                       "two).")  # fmt: skip
    return note + (" One run per loss: nothing is marked." if repeats == [1] else
                   " Nothing is marked.")  # fmt: skip


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
