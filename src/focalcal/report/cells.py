"""One value of a result table: the :class:`Cell` of a run (or the mean of repeated runs) and
how it is written, shared by the paper-style tables and the comparisons."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LOSS_LABELS = {
    "ce": "CE",
    "brier": "Brier",
    "mmce": "MMCE",
    "mmce-weighted": "MMCE (weighted)",
    "adafocal": "AdaFocal",
    "mbls": "MbLS",
    "flsc-531": "FLSc-531",  # scheduled: the paper's lower-case c
}
MISSING = "–"  # an en dash: no run, or a metric the run did not compute


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
    before = format_percent(cell.before) + spread(cell.before_std)
    if cell.temperature is None:
        return before
    after = format_percent(cell.after) + spread(cell.after_std)
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
        >>> loss_label("dual-focal-5"), loss_label("adafocal"), loss_label("flsc-531")
        ('Dual-FL-5', 'AdaFocal', 'FLSc-531')
    """
    if name.startswith("dual-focal-"):
        return "Dual-FL-" + name.removeprefix("dual-focal-")
    return LOSS_LABELS.get(name, name.upper())


def markdown_line(values: Sequence[str]) -> str:
    return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"


def spread(std: float | None, sign: str = "±") -> str:
    return "" if std is None else f" {sign} {100 * std:.2f}"


def with_interval(report: Mapping[str, Any], metric: str) -> str:
    """A report's ``metric`` in percent, with its interval ``[low, high]`` where it has one."""
    text = format_percent(report.get(metric))
    interval = report.get("intervals", {}).get(metric)
    if interval is not None:
        text += f" [{format_percent(interval[0])}, {format_percent(interval[1])}]"
    return text


def format_parameters(parameters: Mapping[str, Any]) -> str:
    """``{"T": 1.5, "weights": [0.9, 0.1, 0.0]}`` as ``T = 1.5, weights = (0.9, 0.1, 0)``."""

    def number(value: Any) -> str:
        if isinstance(value, (list, tuple)):
            return "(" + ", ".join(number(v) for v in value) + ")"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{key} = {number(value)}" for key, value in parameters.items())
