"""The paper's analysis figures (Mukhoti et al. 2020, Figures 2–3): how the test NLL of the
correct and of the wrong predictions, the entropy of the predictions and the last-layer weight
norm evolve while training, one line per loss (mean ± sd over seeds), and the reliability
diagrams of several losses side by side.

Like :mod:`focalcal.report.plots`, whose helpers these figures share, matplotlib is optional
and figures are plain Agg :class:`~matplotlib.figure.Figure` objects (write them with
:func:`~focalcal.report.plots.save_figure`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from focalcal.metrics.binning import Bins
from focalcal.metrics.calibration import reliability_bins
from focalcal.report.plots import (
    _FONT_SIZE,
    _PANEL_SIZE,
    MIN_COUNT,
    _colors,
    _line_handles,
    _require_matplotlib,
    reliability_figure,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

History = Sequence[Mapping[str, Any]]  # a run's per-epoch records, as read_history returns them
Array = np.ndarray[Any, Any]
# (title, y label, log key, whether the y-limits skip the first epoch) per panel of
# analysis_figure, in the paper's order. The first epoch's NLL and entropy (an untrained model's,
# ten times the rest, say) would squash the late rise of the NLL that the figure is about, and a
# log scale would compress that rise as well; so their limits fit the later epochs and the first
# point may run off the axes. The weight norm grows from its start, which stays in view.
ANALYSIS_PANELS = (
    ("Test NLL, correct predictions", "NLL", "test_nll_correct", True),
    ("Test NLL, incorrect predictions", "NLL", "test_nll_incorrect", True),
    ("Test entropy", "Entropy (nats)", "test_entropy", True),
    ("Last-layer weight norm", "Frobenius norm", "weight_norm", False),
)
BAND_ALPHA = 0.25


def analysis_figure(
    histories: Mapping[str, Sequence[History]],
    *,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Per epoch, the test NLL of the correct and of the incorrect predictions, the mean test
    entropy and the last-layer weight norm: one panel each (those some record holds), one line
    per label, as in the paper's Figures 2 and 3.

    ``histories`` maps a label (shown as given: a loss as :func:`~focalcal.report.cells.loss_label`
    spells it, or a run's name) to the per-epoch records of its runs, one list per seed, as
    :func:`~focalcal.engine.train.read_history` returns them. A label with several runs draws
    their mean over the epochs all of them logged, with a band of ± one sample standard
    deviation, and the figure's title says so. The y-axes of the NLL and entropy panels fit the
    epochs after the first, whose values may run off the top. ``title`` names the figure (the
    run, say).

    Example:
        >>> log = [{"epoch": e, "test_nll_correct": 1 / e, "weight_norm": e} for e in (1, 2, 3)]
        >>> figure = analysis_figure({"CE": [log], "FL-3": [log, log]})
        >>> [axes.get_title() for axes in figure.axes]
        ['Test NLL, correct predictions', 'Last-layer weight norm']
        >>> figure.get_suptitle()
        'mean ± sd over 2 seeds (shaded)'
    """
    _check_runs(histories)
    present = {key for runs in histories.values() for h in runs for record in h for key in record}
    panels = [panel for panel in ANALYSIS_PANELS if panel[2] in present]
    if not panels:
        keys = ", ".join(panel[2] for panel in ANALYSIS_PANELS)
        raise ValueError(f"histories hold none of {keys}: nothing to draw")
    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    size = figsize or (_PANEL_SIZE[0] * len(panels), 3.2)
    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, (panel_title, ylabel, key, skip_first) in zip(grid, panels, strict=True):
        _draw_mean_curves(axes, histories, key, skip_first)
        axes.set_title(panel_title, fontsize=_FONT_SIZE + 1)
        axes.set_xlabel("Epoch", fontsize=_FONT_SIZE)
        axes.set_ylabel(ylabel, fontsize=_FONT_SIZE)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.tick_params(labelsize=_FONT_SIZE)
    figure.legend(
        handles=_line_handles([(name, "-", color) for name, color in _colors(histories)]),
        loc="outside lower center",
        ncols=min(len(histories), 6),
        fontsize=_FONT_SIZE,
        frameon=False,
    )
    seeds = sorted({len(runs) for runs in histories.values()} - {1})
    parts = [title] if title else []
    if seeds:
        parts.append(f"mean ± sd over {'/'.join(map(str, seeds))} seeds (shaded)")
    if parts:
        figure.suptitle(" — ".join(parts), fontsize=_FONT_SIZE + 1)
    return figure


def mean_curve(runs: Sequence[History], key: str) -> tuple[Array, Array, Array]:
    """``(epochs, mean, sd)`` of ``key`` over ``runs``: the epochs at which every run logged a
    finite value, their mean and sample standard deviation (n − 1; zeros for a single run).

    Example:
        >>> runs = [[{"epoch": 1, "x": 1.0}, {"epoch": 2, "x": 2.0}], [{"epoch": 1, "x": 3.0}]]
        >>> [values.tolist() for values in mean_curve(runs, "x")]
        [[1.0], [2.0], [1.4142135623730951]]
    """
    per_run = [
        {r["epoch"]: float(r[key]) for r in h if r.get(key) is not None and math.isfinite(r[key])}
        for h in runs
    ]
    epochs = sorted(set.intersection(*(set(logged) for logged in per_run)))
    values = np.array([[logged[e] for e in epochs] for logged in per_run]).reshape(
        len(runs), len(epochs)
    )
    sd = values.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(len(epochs))
    return np.array(epochs, dtype=float), values.mean(axis=0), sd


def reliability_by_loss_figure(
    predictions: Mapping[str, Bins | tuple[Tensor, Tensor]],
    *,
    num_bins: int = 15,
    title: str | None = None,
    min_count: int = MIN_COUNT,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Reliability diagrams of several losses in one row, on shared axes, to tell e.g. CE from
    FLSD-53 at a glance (:func:`~focalcal.report.plots.reliability_figure`).

    ``predictions`` maps a label (a loss as the tables spell it,
    :func:`~focalcal.report.cells.loss_label`) to top-label
    :class:`~focalcal.metrics.binning.Bins` or to ``(logits, labels)``, binned into
    ``num_bins`` equal-width bins as for the ECE. ``title`` names the figure (dataset, model);
    bins of fewer than ``min_count`` samples are drawn faded.

    Example:
        >>> import torch
        >>> logits, labels = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
        >>> panels = {"CE": (logits, labels), "FLSD-53": (logits, labels)}
        >>> figure = reliability_by_loss_figure(panels, title="digits · small-cnn")
        >>> [axes.get_title() for axes in figure.axes[:2]], figure.get_suptitle()
        (['CE — ECE 42.51 %', 'FLSD-53 — ECE 42.51 %'], 'digits · small-cnn')
    """
    panels = {
        name: value if isinstance(value, Bins) else reliability_bins(*value, num_bins=num_bins)
        for name, value in predictions.items()
    }
    return reliability_figure(panels, figsize=figsize, title=title, min_count=min_count)


def _check_runs(histories: Mapping[str, Sequence[History]]) -> None:
    if len(histories) == 0:
        raise ValueError("histories is empty: pass at least one {label: [history, ...]} entry")
    for name, runs in histories.items():
        if isinstance(runs, Mapping) or len(runs) == 0:
            raise ValueError(f"histories[{name!r}] must be a non-empty list of runs' histories")
        for history in runs:
            if isinstance(history, Mapping) or not all("epoch" in r for r in history):
                raise ValueError(f"histories[{name!r}] must hold lists of records with 'epoch'")


def _draw_mean_curves(
    axes: Axes, histories: Mapping[str, Sequence[History]], key: str, skip_first: bool
) -> None:
    """One mean line per label, with its ± sd band over several runs; the y-limits fit every
    point, or with ``skip_first`` every point after the first epoch (see ANALYSIS_PANELS)."""
    shown: list[Array] = []
    for name, color in _colors(histories):
        epochs, mean, sd = mean_curve(histories[name], key)
        if len(epochs) == 0:
            continue
        axes.plot(epochs, mean, color=color, linewidth=1.5)
        if len(histories[name]) > 1:
            axes.fill_between(epochs, mean - sd, mean + sd, color=color, alpha=BAND_ALPHA, lw=0)
        later = slice(1 if skip_first and len(epochs) > 1 else 0, None)
        shown += [mean[later] - sd[later], mean[later] + sd[later]]
    if shown:
        low, high = float(min(v.min() for v in shown)), float(max(v.max() for v in shown))
        pad = 0.05 * (high - low) or 0.05 * abs(high) or 0.05
        axes.set_ylim(low - pad, high + pad)
