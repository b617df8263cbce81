"""Reliability diagrams (per-bin accuracy against confidence, with the confidence histogram)
and training curves (test NLL per epoch, the paper's Figure 2), written atomically.

matplotlib is optional (``pip install 'focalcal[plots]'``) and imported only when a figure is
drawn. Figures are plain :class:`matplotlib.figure.Figure` objects rendered with Agg: pyplot and
``rcParams`` are never touched, so drawing is safe in scripts, servers and tests alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from focalcal._io import atomic_write
from focalcal.metrics.binning import SCALE, Bins
from focalcal.metrics.calibration import reliability_bins

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Paul Tol's high-contrast scheme: told apart under every colour-vision deficiency and in
# greyscale (dark blue, medium red, light yellow). The gaps also differ in hatching and have no
# fill, so an under-confident gap shows the accuracy bar through its stripes.
ACCURACY_COLOR = "#004488"
OVER_CONFIDENT_COLOR = "#BB5566"
UNDER_CONFIDENT_COLOR = "#DDAA33"
_ACCURACY_STYLE: dict[str, Any] = {
    "facecolor": ACCURACY_COLOR,
    "edgecolor": "white",
    "linewidth": 0.5,
}
_OVER_STYLE: dict[str, Any] = {
    "facecolor": "none",
    "edgecolor": OVER_CONFIDENT_COLOR,
    "hatch": "////",
    "linewidth": 1.0,
}
_UNDER_STYLE: dict[str, Any] = {
    **_OVER_STYLE,
    "edgecolor": UNDER_CONFIDENT_COLOR,
    "hatch": "\\\\\\\\",
}
_HISTOGRAM_STYLE: dict[str, Any] = {"facecolor": "#888888", "edgecolor": "white", "linewidth": 0.5}
_DIAGONAL: dict[str, Any] = {"color": "#333333", "linestyle": ":", "linewidth": 1.2}
_ACCURACY_LINE: dict[str, Any] = {"color": ACCURACY_COLOR, "linewidth": 2.2}
_CONFIDENCE_LINE: dict[str, Any] = {"color": "black", "linestyle": (0, (4, 2)), "linewidth": 1.2}
_PANEL_SIZE = (3.4, 4.6)  # inches per panel: two panels fill a two-column paper's text width
_FONT_SIZE = 8.0
# Below 10 samples a bin's accuracy has a standard error of 0.15 or more (√(0.25 / n)): its gap
# is mostly noise, so such bins are drawn faded rather than hidden.
MIN_COUNT = 10
FADED_ALPHA = 0.3
_HEADROOM = 1.6  # histogram height over its tallest bar: room for the vertical count labels


def reliability_figure(
    panels: Mapping[str, Bins],
    *,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
    min_count: int = MIN_COUNT,
) -> Figure:
    """One reliability diagram per panel, side by side, each above its confidence histogram.

    Each panel is top-label :class:`~focalcal.metrics.binning.Bins` (for instance before and
    after temperature scaling, or one per loss). On top: the accuracy of every non-empty bin
    as a bar, the diagonal of perfect calibration, and the gap between accuracy and mean
    confidence, coloured and hatched by its sign: over-confident bins (confidence > accuracy)
    one way, under-confident bins the other. The title gives the panel's name and its ECE in
    percent. Underneath: the fraction of samples in each bin, labelled with its sample count,
    on a y-axis scaled to the tallest bar of all panels (shared, so panels compare), with the
    overall accuracy and mean confidence as vertical lines. Bins of fewer than ``min_count``
    samples are drawn faded (alpha 0.3); empty bins draw nothing. ``title`` names the figure
    (the run, say); ``figsize`` defaults to 3.4 × 4.6 inches per panel. One legend explains all.

    Example:
        >>> import torch
        >>> from focalcal.metrics.binning import Bins, equal_width_edges
        >>> confidence = torch.tensor([0.95, 0.9, 0.7, 0.65, 0.4])
        >>> correct = torch.tensor([True, True, False, True, False])
        >>> edges = equal_width_edges(10)
        >>> figure = reliability_figure({"model": Bins.top_label(confidence, correct, edges)})
        >>> figure.axes[0].get_title()
        'model — ECE 18.00 %'
    """
    _check_panels(panels)
    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = len(panels) if len(panels) <= 4 else 3  # more panels wrap, three to a row
    rows = -(-len(panels) // columns)
    size = figsize or (_PANEL_SIZE[0] * columns, _PANEL_SIZE[1] * rows)
    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(
        2 * rows, columns, squeeze=False, gridspec_kw={"height_ratios": (3, 1) * rows}
    )
    tallest = max(float((b.count / b.count.sum()).max()) for b in panels.values())
    any_faded = False
    for index, (name, bins) in enumerate(panels.items()):
        row, column = divmod(index, columns)
        pair = axes[2 * row : 2 * row + 2, column]
        faded = (bins.count[bins.count > 0] < min_count).cpu().numpy()
        any_faded |= bool(faded.any())
        _draw_reliability(pair[0], str(name), bins, faded)
        _draw_histogram(pair[1], bins, faded)
        pair[1].set_ylim(0, _HEADROOM * tallest)
        for ax in pair:
            ax.tick_params(labelsize=_FONT_SIZE)
            if column > 0:
                ax.set_ylabel("")
    for index in range(len(panels), rows * columns):  # the last row's empty places
        for ax in axes[2 * rows - 2 :, index % columns]:
            ax.set_visible(False)
    figure.align_ylabels(axes[:, 0])
    if title:
        figure.suptitle(title, fontsize=_FONT_SIZE + 2)
    _draw_legend(figure, columns, min_count if any_faded else None)
    return figure


def save_reliability_diagram(
    panels: Mapping[str, Bins],
    path: str | os.PathLike[str],
    *,
    figsize: tuple[float, float] | None = None,
    dpi: float = 200,
    title: str | None = None,
    min_count: int = MIN_COUNT,
) -> Path:
    """Draw :func:`reliability_figure` and write it to ``path``; returns ``path`` as a Path.

    The format follows the suffix: ``.png`` (``dpi`` pixels per inch), or ``.pdf`` / ``.svg``
    for vector graphics; PNG when there is no suffix. Missing parent directories are created.
    The file is written atomically, to a temporary file beside it that then replaces ``path``,
    so an interrupted run never leaves a partial image.

    Example:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from focalcal.metrics.binning import Bins, equal_width_edges
        >>> edges = equal_width_edges(15)
        >>> correct = torch.tensor([1, 0, 1])
        >>> panels = {
        ...     "before T": Bins.top_label(torch.tensor([0.99, 0.97, 0.9]), correct, edges),
        ...     "after T": Bins.top_label(torch.tensor([0.8, 0.75, 0.7]), correct, edges),
        ... }
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = save_reliability_diagram(panels, Path(tmp) / "figures" / "cifar10.png")
        ...     path.name, path.read_bytes()[:4]
        ('cifar10.png', b'\\x89PNG')
    """
    figure = reliability_figure(panels, figsize=figsize, title=title, min_count=min_count)
    return save_figure(figure, path, dpi=dpi)


def plot_reliability(
    scores: Tensor,
    labels: Tensor,
    path: str | os.PathLike[str],
    num_bins: int = 15,
    from_probs: bool = False,
    name: str = "model",
) -> Path:
    """Reliability diagram of one model, written to ``path`` by
    :func:`save_reliability_diagram`.

    ``scores`` are logits ``(N, C)`` or ``(N, C, d1, ...)`` or, with ``from_probs=True``,
    probabilities; ``labels`` are class indices. The top-label confidences fall into
    ``num_bins`` equal-width bins, as for :func:`focalcal.metrics.expected_calibration_error`.

    Example:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> generator = torch.Generator().manual_seed(0)
        >>> logits = 4 * torch.randn(1000, 10, generator=generator)
        >>> labels = torch.randint(10, (1000,), generator=generator)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = plot_reliability(logits, labels, Path(tmp) / "reliability.png")
        ...     path.name, path.stat().st_size > 0
        ('reliability.png', True)
    """
    return save_reliability_diagram(
        {name: reliability_bins(scores, labels, num_bins, from_probs)}, path
    )


def save_figure(figure: Figure, path: str | os.PathLike[str], *, dpi: float = 200) -> Path:
    """Write a matplotlib ``figure`` to ``path`` atomically, in the format of its suffix
    (``.png``, ``.pdf``, ``.svg`` …; PNG without one); returns ``path`` as a Path.

    Example:
        >>> import tempfile
        >>> from matplotlib.figure import Figure
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save_figure(Figure(), Path(tmp) / "empty.svg").suffix
        '.svg'
    """
    path = Path(path)
    figure_format = path.suffix[1:].lower() or "png"
    supported = figure.canvas.get_supported_filetypes()
    if figure_format not in supported:
        raise ValueError(
            f"cannot write {str(path)!r}: unknown image format {figure_format!r}; "
            f"use one of {', '.join(sorted(supported))}"
        )
    return atomic_write(path, lambda file: figure.savefig(file, format=figure_format, dpi=dpi))


# Paul Tol's "bright" scheme, then near-black and the colours of his "muted" one furthest from
# it: one colour per run (twelve before any repeats; the paper's grid with its γ variants is 9).
CURVE_COLORS = ("#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB",
                "#332288", "#222222", "#999933", "#882255", "#44AA99")  # fmt: skip
# (title, y label, [(log key, line style, legend label)]) per panel of plot_nll_curves
_CURVE_PANELS: tuple[tuple[str, str, tuple[tuple[str, str, str], ...]], ...] = (
    ("Test NLL", "NLL", (("test_nll", "-", ""),)),
    ("Test NLL of correct and incorrect predictions", "NLL",
     (("test_nll_correct", "-", "correct"), ("test_nll_incorrect", "--", "incorrect"))),
    ("Test entropy", "Entropy (nats)", (("test_entropy", "-", ""),)),
)  # fmt: skip
# Without the per-epoch test analysis, the validation NLL (always logged) takes its place.
_FALLBACK_PANEL = ("Validation NLL", "NLL", (("val_nll", "-", ""),))


def nll_curves_figure(
    histories: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Training curves per run, one line each, as in the paper's Figure 2.

    ``histories`` maps a run's name (e.g. its loss) to its per-epoch records, as in a run's
    ``log.jsonl``: each has ``epoch`` and some of ``test_nll``, ``test_nll_correct``,
    ``test_nll_incorrect``, ``test_entropy`` (``val_nll`` stands in for ``test_nll`` when no
    record has it). One panel per quantity present: the test NLL; the test NLL of the correct
    (solid) and of the incorrect (dashed) predictions; the mean test entropy.

    Example:
        >>> log = [{"epoch": 1, "test_nll": 0.9}, {"epoch": 2, "test_nll": 0.7}]
        >>> figure = nll_curves_figure({"ce": log, "fl-3": log})
        >>> [axes.get_title() for axes in figure.axes]
        ['Test NLL']
    """
    _check_histories(histories)
    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    present = {key for history in histories.values() for record in history for key in record}
    panels = [p for p in _CURVE_PANELS if any(key in present for key, _, _ in p[2])]
    if not any(title == "Test NLL" for title, _, _ in panels):
        panels.insert(0, _FALLBACK_PANEL)
    size = figsize or (_PANEL_SIZE[0] * len(panels), 3.2)
    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, (title, ylabel, series) in zip(grid, panels, strict=True):
        _draw_curves(axes, histories, series)
        axes.set_title(title, fontsize=_FONT_SIZE + 1)
        axes.set_xlabel("Epoch", fontsize=_FONT_SIZE)
        axes.set_ylabel(ylabel, fontsize=_FONT_SIZE)
        axes.tick_params(labelsize=_FONT_SIZE)
    figure.legend(
        handles=_line_handles([(str(name), "-", color) for name, color in _colors(histories)]),
        loc="outside lower center",
        ncols=min(len(histories), 6),
        fontsize=_FONT_SIZE,
        frameon=False,
    )
    return figure


def plot_nll_curves(
    histories: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | os.PathLike[str],
    *,
    figsize: tuple[float, float] | None = None,
    dpi: float = 200,
) -> Path:
    """Draw :func:`nll_curves_figure` and write it atomically to ``path`` (format from the
    suffix, as :func:`save_figure`); returns ``path`` as a Path.

    Example:
        >>> import tempfile
        >>> log = [{"epoch": e, "test_nll": 1 / e, "test_entropy": 0.5} for e in (1, 2, 3)]
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     plot_nll_curves({"ce": log}, Path(tmp) / "nll.png").read_bytes()[:4]
        b'\\x89PNG'
    """
    return save_figure(nll_curves_figure(histories, figsize=figsize), path, dpi=dpi)


def _check_histories(histories: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    if len(histories) == 0:
        raise ValueError("histories is empty: pass at least one {name: records} entry")
    for name, history in histories.items():
        if len(history) == 0 or not all("epoch" in record for record in history):
            raise ValueError(f"history {name!r} must be a non-empty list of records with 'epoch'")
        if not any(key in record for record in history for key in ("test_nll", "val_nll")):
            raise ValueError(f"history {name!r} has neither 'test_nll' nor 'val_nll'")


def _colors(histories: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(name, CURVE_COLORS[i % len(CURVE_COLORS)]) for i, name in enumerate(histories)]


def _draw_curves(
    axes: Axes,
    histories: Mapping[str, Sequence[Mapping[str, Any]]],
    series: Sequence[tuple[str, str, str]],
) -> None:
    for name, color in _colors(histories):
        for key, style, _ in series:
            points = [(record["epoch"], record[key]) for record in histories[name] if key in record]
            if points:
                axes.plot(*zip(*points, strict=True), linestyle=style, color=color)
    if len(series) > 1:  # the line styles need a key of their own; the colours are the runs'
        styles = [(label, style, "#333333") for _, style, label in series]
        axes.legend(handles=_line_handles(styles), fontsize=_FONT_SIZE, frameon=False)


def _line_handles(lines: Sequence[tuple[str, Any, str]]) -> list[Any]:
    """Legend entries from (label, line style, colour); styles as matplotlib spells them."""
    from matplotlib.lines import Line2D

    return [
        Line2D([], [], color=color, linestyle=style, label=label) for label, style, color in lines
    ]


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise ImportError("figures need matplotlib: pip install 'focalcal[plots]'") from error


def _check_panels(panels: Mapping[str, Bins]) -> None:
    if len(panels) == 0:
        raise ValueError("panels is empty: pass at least one {name: Bins} panel")
    for name, bins in panels.items():
        if not isinstance(bins, Bins):
            raise ValueError(f"panel {name!r} must be Bins, got {type(bins).__name__}")
        if bins.count.dim() != 1:
            raise ValueError(
                f"panel {name!r} holds class-wise bins of shape {tuple(bins.count.shape)}; "
                "a reliability diagram needs top-label bins of shape (B,), from Bins.top_label"
            )
        if int(bins.count.sum()) == 0:
            raise ValueError(f"panel {name!r} holds no samples: every bin is empty")


def _draw_reliability(axes: Axes, name: str, bins: Bins, faded: np.ndarray[Any, Any]) -> None:
    from matplotlib import patheffects

    left, width, filled = _bar_geometry(bins)
    accuracy = bins.accuracy()[filled].cpu()
    confidence = bins.mean_confidence()[filled].cpu()
    # A white halo keeps the diagonal visible where it crosses the dark accuracy bars.
    halo = [patheffects.withStroke(linewidth=3.0, foreground="white")]
    axes.plot((0, 1), (0, 1), label="perfect calibration", zorder=3, path_effects=halo, **_DIAGONAL)
    bars = axes.bar(left, accuracy.numpy(), width, align="edge", label="accuracy",
                    **_ACCURACY_STYLE)  # fmt: skip
    gaps = axes.bar(
        left,
        (confidence - accuracy).abs().numpy(),
        width,
        bottom=torch.minimum(confidence, accuracy).numpy(),
        align="edge",
        label="gap",
    )
    for gap, over in zip(gaps.patches, (confidence > accuracy).tolist(), strict=True):
        gap.set(**(_OVER_STYLE if over else _UNDER_STYLE))
    for container in (bars, gaps):
        _fade(container.patches, faded)
    ece = 100 * float(bins.calibration_error())
    axes.set_title(f"{name} — ECE {ece:.2f} %", fontsize=_FONT_SIZE + 1)
    axes.set(xlim=(0, 1), ylim=(0, 1))
    axes.set_ylabel("Accuracy", fontsize=_FONT_SIZE)
    axes.set_box_aspect(1)
    axes.tick_params(labelbottom=False)


def _draw_histogram(axes: Axes, bins: Bins, faded: np.ndarray[Any, Any]) -> None:
    from matplotlib import patheffects

    left, width, filled = _bar_geometry(bins)
    total = bins.count.sum()
    fraction = (bins.count[filled] / total).cpu()
    bars = axes.bar(left, fraction.numpy(), width, align="edge", label="fraction",
                    **_HISTOGRAM_STYLE)  # fmt: skip
    _fade(bars.patches, faded)
    counts = [f"{count:.0f}" for count in bins.count[filled].tolist()]  # legible over the lines:
    halo = [patheffects.withStroke(linewidth=2.0, foreground="white")]
    axes.bar_label(bars, counts, padding=1, rotation=90, fontsize=5, path_effects=halo, zorder=4)
    # The thick accuracy line stays visible under the dashed confidence line where they meet.
    accuracy = float(bins.correct.sum() / total)
    mean_confidence = float(bins.confidence.sum() / (total * SCALE))
    axes.axvline(accuracy, label="accuracy", **_ACCURACY_LINE)
    axes.axvline(mean_confidence, label="mean confidence", **_CONFIDENCE_LINE)
    axes.set_xlim(0, 1)
    axes.set_xlabel("Confidence", fontsize=_FONT_SIZE)
    axes.set_ylabel("Fraction", fontsize=_FONT_SIZE)
    axes.set_box_aspect(1 / 3)


def _bar_geometry(bins: Bins) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], Tensor]:
    """Left edges and widths of the non-empty bins, and the mask (on the bins' device)."""
    edges, filled = bins.edges.double().cpu(), bins.count > 0
    on_host = filled.cpu()
    return edges[:-1][on_host].numpy(), edges.diff()[on_host].numpy(), filled


def _fade(patches: Sequence[Any], faded: np.ndarray[Any, Any]) -> None:
    for patch, dim in zip(patches, faded.tolist(), strict=True):
        if dim:
            patch.set_alpha(FADED_ALPHA)


def _draw_legend(figure: Figure, columns: int, min_count: int | None) -> None:
    """The legend; with ``min_count``, an entry for the faded bins of fewer samples."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    bars = [
        Patch(label="Accuracy per bin", **_ACCURACY_STYLE),
        Patch(label="Gap: over-confident", **_OVER_STYLE),
        Patch(label="Gap: under-confident", **_UNDER_STYLE),
    ]
    few = f"Bin of < {min_count} samples"
    faded = [] if min_count is None else [Patch(label=few, alpha=FADED_ALPHA, **_ACCURACY_STYLE)]
    lines = [
        Line2D([], [], label="Perfect calibration", **_DIAGONAL),
        Line2D([], [], label="Overall accuracy", **_ACCURACY_LINE),
        Line2D([], [], label="Mean confidence", **_CONFIDENCE_LINE),
    ]
    # Legends fill column by column: a column of bars beside a column of lines for one panel,
    # a row of bars over a row of lines for two or three, one row where four or more make room.
    if columns == 1:
        handles, ncols = bars + faded + lines, 2
    elif columns <= 3:
        pairs = [handle for pair in zip(bars, lines, strict=True) for handle in pair]
        handles, ncols = [*pairs, *faded], 3 + len(faded)
    else:
        handles, ncols = bars + faded + lines, 6 + len(faded)
    figure.legend(
        handles=handles,
        loc="outside lower center",
        ncols=ncols,
        fontsize=_FONT_SIZE,
        frameon=False,
    )
