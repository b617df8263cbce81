"""The figures of :func:`~focalcal.experiments.reproduce.reproduce` and the page that shows
them, ``figures.md``: the test-NLL curves, the paper's analysis figure (its Figures 2–3), the
reliability diagrams by loss, and every run's own reliability diagram. The images need
matplotlib; without it they (and their links) are left out."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from focalcal._io import atomic_write_text
from focalcal.data import BatchLoader, dataset_label
from focalcal.engine.config import TrainConfig
from focalcal.engine.runs import load_model, load_split
from focalcal.engine.train import predict, resolve_device
from focalcal.metrics import reliability_bins
from focalcal.metrics.binning import Bins
from focalcal.report.analysis import ANALYSIS_PANELS, analysis_figure, reliability_by_loss_figure
from focalcal.report.cells import format_percent, format_temperature, loss_label
from focalcal.report.plots import MIN_COUNT, plot_nll_curves, save_figure


def write_figures(
    runs: Mapping[str, TrainConfig],
    rows: Sequence[Mapping[str, Any]],
    histories: Mapping[str, list[dict[str, Any]]],
    out: Path,
    checkpoint: str,
) -> None:
    """Write the figures of a finished grid (``runs`` by name, their table ``rows`` and
    per-epoch ``histories``) and ``figures.md`` into ``out``."""
    figures = []
    if importlib.util.find_spec("matplotlib") is not None:
        figures = _write_figures(runs, histories, out, checkpoint)
    images = {
        name: (Path("runs") / name / "reliability.png").as_posix()
        for name in runs
        if (out / "runs" / name / "reliability.png").exists()
    }
    atomic_write_text(out / "figures.md", figures_page(rows, images, figures))


def figures_page(
    rows: Sequence[Mapping[str, Any]],
    images: Mapping[str, str],
    figures: Sequence[tuple[str, str, str]] = (),
) -> str:
    """The Markdown of ``figures.md``: each of ``figures`` (heading, image path, one-line
    caption), then per row its reliability diagram ``images[row["run"]]`` under its ECE
    before → after T; paths relative to the page.

    Example:
        >>> row = {"run": "a/ce", "ece_before": 0.0435, "ece_after": 0.0135, "temperature": 2.5}
        >>> curves = ("Test NLL per epoch", "nll_curves.png", "One line per loss.")
        >>> print(figures_page([row], {"a/ce": "runs/a/ce/reliability.png"}, [curves]))
        # Figures
        <BLANKLINE>
        ## Test NLL per epoch
        <BLANKLINE>
        ![Test NLL per epoch](nll_curves.png)
        <BLANKLINE>
        One line per loss.
        <BLANKLINE>
        ## Reliability diagrams, before | after temperature scaling
        <BLANKLINE>
        ### a/ce
        <BLANKLINE>
        ECE 4.35 % → 1.35 % (T = 2.5)
        <BLANKLINE>
        ![a/ce](runs/a/ce/reliability.png)
        <BLANKLINE>
    """
    lines = ["# Figures", ""]
    for heading, path, caption in figures:
        lines += [f"## {heading}", "", f"![{heading}]({quote(path)})", "", caption, ""]
    lines += ["## Reliability diagrams, before | after temperature scaling", ""]
    for row in rows:
        name = str(row["run"])
        ece = f"ECE {format_percent(row['ece_before'])} % → {format_percent(row['ece_after'])} %"
        lines += [f"### {name}", "", f"{ece} (T = {format_temperature(row['temperature'])})", ""]
        if name in images:
            lines += [f"![{name}]({quote(images[name])})", ""]
    return "\n".join(lines)


def _curve_labels(
    runs: Mapping[str, TrainConfig], histories: Mapping[str, list[dict[str, Any]]]
) -> dict[str, list[list[dict[str, Any]]]]:
    """The histories of each (dataset, model, loss), one per seed, labelled by the loss as the
    tables spell it when every run shares one dataset and model (the paper's Figure 2), else
    by the first seed's run name without its ``/seed-<seed>``."""
    single = len({(config.dataset, config.model) for config in runs.values()}) == 1
    groups: dict[tuple[str, str, str], tuple[str, list[list[dict[str, Any]]]]] = {}
    for name, history in histories.items():
        config = runs[name]
        label = loss_label(config.loss) if single else name.removesuffix(f"/seed-{config.seed}")
        cell = (config.dataset, config.model, config.loss)
        groups.setdefault(cell, (label, []))[1].append(history)
    return dict(groups.values())


def _write_figures(
    runs: Mapping[str, TrainConfig],
    histories: Mapping[str, list[dict[str, Any]]],
    out: Path,
    checkpoint: str,
) -> list[tuple[str, str, str]]:
    """Write ``nll_curves.png``, ``analysis.png`` and the reliability diagrams by loss (one
    per dataset and model) into ``out``; returns (heading, file, caption) of each."""
    curves = _curve_labels(runs, histories)
    seeds = "/".join(sorted({str(len(group)) for group in curves.values()}))
    first = ", first seed" if seeds != "1" else ""
    plot_nll_curves({label: group[0] for label, group in curves.items()}, out / "nll_curves.png")
    caption = "Test NLL, NLL of the correct and of the incorrect predictions, and entropy"
    figures = [("Test NLL per epoch", "nll_curves.png", f"{caption} per epoch{first}.")]
    settings: dict[tuple[str, str], dict[str, str]] = {}  # the first seed's run of each loss
    for name, config in runs.items():
        setting = (dataset_label(config.dataset), config.model)
        settings.setdefault(setting, {}).setdefault(loss_label(config.loss), name)
    logged = {key for group in curves.values() for h in group for record in h for key in record}
    if logged & {panel[2] for panel in ANALYSIS_PANELS}:
        title = " · ".join(next(iter(settings))) if len(settings) == 1 else None
        save_figure(analysis_figure(curves, title=title), out / "analysis.png")
        band = f", mean ± sd over {seeds} seeds" if first else ""
        caption = (
            "Test NLL of the correct and of the incorrect predictions, test entropy and "
            f"last-layer weight norm per epoch{band}; the y-axes fit the epochs after the first."
        )
        figures.append(("Training analysis (the paper's Figures 2–3)", "analysis.png", caption))
    for (dataset, model), losses in settings.items():
        where = f"{dataset} · {model}"
        file = "reliability_by_loss.png"
        if len(settings) > 1:
            file = f"reliability_by_loss-{dataset}-{model}.png"
        panels = {
            label: _test_bins(out / "runs" / name, runs[name], checkpoint)
            for label, name in losses.items()
        }
        figure = reliability_by_loss_figure(panels, title=f"{where}, test split{first}")
        save_figure(figure, out / file)
        caption = (
            f"Test split before temperature scaling, `{checkpoint}` checkpoint{first}; sample "
            f"counts over the histogram bars; bins of fewer than {MIN_COUNT} samples faded."
        )
        figures.append((f"Reliability diagrams by loss, {where}", file, caption))
    return figures


def _test_bins(run_dir: Path, config: TrainConfig, checkpoint: str) -> Bins:
    """The top-label bins of a run's test predictions, as evaluate bins them: predicted again,
    since ``evaluation.json`` keeps the metrics but not the bins."""
    device = resolve_device(config.device)
    model, config = load_model(run_dir, checkpoint, device)
    test = load_split(config, "test")
    loader = BatchLoader(test, config.eval_batch_size, device=device, rank=0, world_size=1)
    return reliability_bins(predict(model, loader), test.labels.to(device))
