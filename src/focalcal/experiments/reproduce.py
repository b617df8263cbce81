"""The paper's comparison as one call: train a grid of runs (losses × models × datasets),
evaluate each, and write the paper-style tables and figures.

Everything goes under ``out_dir``:

- ``runs/<name>/``: one run directory per run (``config.toml``, ``log.jsonl``, ``checkpoints/``,
  ``result.json`` from :func:`focalcal.engine.train.train`; ``evaluation.json``,
  ``evaluation.md``, ``reliability.png`` from :func:`focalcal.engine.evaluate.evaluate`);
- ``tables.md``, ``tables.tex``, ``tables.json``: :func:`focalcal.report.tables.write_tables`;
- ``nll_curves.png``: test NLL per epoch of every run (:func:`focalcal.report.plot_nll_curves`);
- ``analysis.png``: the paper's Figures 2–3, test NLL of the correct and of the incorrect
  predictions, entropy and last-layer weight norm per epoch, mean ± sd over seeds
  (:func:`focalcal.report.analysis_figure`);
- ``reliability_by_loss.png``: the losses' test reliability diagrams side by side
  (:func:`focalcal.report.reliability_by_loss_figure`), one ``reliability_by_loss-<dataset>-
  <model>.png`` per dataset and model when the grid has several;
- ``figures.md``: a page showing these figures and every run's ``reliability.png``.

The images need matplotlib; without it they (and their links) are left out.

Calling :func:`reproduce` again continues where it stopped: a finished and evaluated run is
skipped, an unfinished one resumes from its last checkpoint, a finished one evaluated with
other settings (objective, checkpoint, OOD sets) is evaluated again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm import tqdm

from focalcal.data import dataset_label
from focalcal.engine.config import TrainConfig, check_names
from focalcal.engine.evaluate import OBJECTIVES, evaluate, is_evaluated
from focalcal.engine.lock import RunLockedError, hold
from focalcal.engine.ood import check_ood, parse_ood
from focalcal.engine.runs import load_split
from focalcal.engine.train import check_run, read_history, train
from focalcal.experiments.figures import write_figures
from focalcal.report.cells import format_percent, format_temperature
from focalcal.report.tables import result_row, write_tables
from focalcal.scaling import Objective

# The paper's Table 1 columns: cross-entropy, its three calibration baselines, FL-3, FLSD-53.
DEFAULT_LOSSES = ("ce", "brier", "mmce", "ls-0.05", "fl-3", "flsd-53")
WAIT = 2.0  # seconds between looks at the runs another process holds


def grid(
    base: TrainConfig,
    losses: Sequence[str] = DEFAULT_LOSSES,
    models: Sequence[str] = (),
    datasets: Sequence[str] = (),
    seeds: int = 1,
    keep: Sequence[str] = (),
) -> dict[str, TrainConfig]:
    """One config per (dataset, model, loss), named ``"<dataset>/<model>/<loss>"``; empty
    ``models`` or ``datasets`` keep ``base``'s. Everything else comes from ``base``, but a
    dataset or model other than ``base``'s does not inherit the fields chosen for ``base``'s
    (:meth:`TrainConfig.retarget`; ``keep`` names those that it does). With
    ``seeds`` = K > 1, K runs of each with seeds ``base.seed``, ``base.seed + 1``, …, named
    ``"<dataset>/<model>/<loss>/seed-<seed>"``.

    Example:
        >>> list(grid(TrainConfig(), ["ce", "flsd-53"]))
        ['fashion-mnist/small-cnn/ce', 'fashion-mnist/small-cnn/flsd-53']
        >>> list(grid(TrainConfig(seed=7), ["ce"], seeds=2))
        ['fashion-mnist/small-cnn/ce/seed-7', 'fashion-mnist/small-cnn/ce/seed-8']
    """
    if not losses:
        raise ValueError("losses is empty: name at least one loss")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    runs = {}
    for dataset in datasets or (base.dataset,):
        for model in models or (base.model,):
            for loss in losses:
                for seed in range(base.seed, base.seed + seeds):
                    where = f"{dataset_label(dataset)}/{model}/{loss}"
                    name = where + (f"/seed-{seed}" if seeds > 1 else "")
                    config = base.retarget(dataset, model, keep)
                    runs[name] = config.replace(loss=loss, seed=seed)
    return runs


@dataclass(frozen=True)
class Grid:
    """A grid spec for :func:`reproduce`: ``base`` crossed with ``losses``, ``models`` and
    ``datasets``, each run ``seeds`` times, as in :func:`grid`."""

    base: TrainConfig = field(default_factory=TrainConfig)
    losses: Sequence[str] = DEFAULT_LOSSES
    models: Sequence[str] = ()
    datasets: Sequence[str] = ()
    seeds: int = 1

    def configs(self) -> dict[str, TrainConfig]:
        """The grid's runs by name."""
        return grid(self.base, self.losses, self.models, self.datasets, self.seeds)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Grid:
        """A grid from plain data (a TOML or YAML file): ``base`` a config mapping, the rest
        lists of names; unknown keys are an error that names them.

        Example:
            >>> spec = Grid.from_dict({"base": {"epochs": 2}, "losses": ["ce", "fl-3"]})
            >>> spec.base.epochs, list(spec.configs())[1]
            (2, 'fashion-mnist/small-cnn/fl-3')
        """
        known = ("base", "losses", "models", "datasets", "seeds")
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown grid keys {unknown}; known: {', '.join(known)}")
        base = TrainConfig.from_dict(dict(values.get("base", {})))
        lists = {k: tuple(values[k]) for k in ("losses", "models", "datasets") if k in values}
        return cls(base, **lists, seeds=values.get("seeds", 1))


def reproduce(
    configs: Mapping[str, TrainConfig] | Grid,
    out_dir: str | os.PathLike[str],
    *,
    ood: Sequence[str] = (),
    objective: Objective = "ece",
    checkpoint: str = "last",
    bootstrap_samples: int = 0,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train, evaluate and tabulate every run of ``configs`` (name → config, or a
    :class:`Grid`) under ``out_dir`` (see the module docstring for the files).

    Runs go in order; each is skipped when finished and evaluated with these settings,
    resumed when unfinished, then evaluated (``checkpoint``, T fitted by ``objective``, AUROC
    against each ``ood`` set, ``bootstrap_samples`` resamples for intervals). With
    ``progress``, prints a line as each run starts training and as it ends (with the grid's
    ETA), and one per epoch; on a terminal, a bar over the grid's epochs shows the runs done
    and the ETA, with the running epoch's bar beneath it. Each run is trained and evaluated
    holding its directory's lock (:mod:`focalcal.engine.lock`): a run another process holds is
    left to it and this call takes the next, then waits for the held ones to finish, so N
    processes on one grid (a job array without ``shard``) share its runs and never repeat one.
    Returns the table rows (:func:`focalcal.report.tables.result_row`), one per run, in order.
    Runs of one (dataset, model, loss) with different seeds are averaged in the tables (mean ±
    standard deviation).

    ``shard=(k, n)``: only the runs ``k, k + n, k + 2n, …`` of the grid, and no tables. Each
    process of a job array (or of ``torchrun``, see the CLI) takes its own shard: the runs are
    independent, so a grid spreads over devices and machines that share ``out_dir``; a last
    call without ``shard`` finds every run finished and writes the tables.

    Everything is checked before the first run starts: run names (relative paths without
    ``..``), losses, models, datasets and OOD specs must be known, and two runs may not share
    a (dataset, model, loss) and seed. A finished run whose stored config differs
    from the one given is a ``ValueError``: train it into another ``out_dir``.

    Example:
        >>> import tempfile
        >>> base = TrainConfig(dataset="digits", subset=256, epochs=1)
        >>> with tempfile.TemporaryDirectory() as out:
        ...     rows = reproduce(Grid(base, ["ce", "fl-3"]), out, progress=False)
        ...     sorted(p.name for p in Path(out).iterdir())  # doctest: +NORMALIZE_WHITESPACE
        ['analysis.png', 'figures.md', 'nll_curves.png', 'reliability_by_loss.png', 'runs',
         'tables.json', 'tables.md', 'tables.tex']
        >>> [row["run"] for row in rows]
        ['digits/small-cnn/ce', 'digits/small-cnn/fl-3']
    """
    runs = configs.configs() if isinstance(configs, Grid) else dict(configs)
    _check_runs(runs, ood, objective)
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard must be (k, n) with 0 <= k < n, got {shard}")
    selected = list(runs.items())[index::count]
    where = f" of shard {index}/{count}" if count > 1 else ""
    out = Path(out_dir)
    done: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    held: dict[str, str] = {}  # runs another process holds: name -> its PID
    with _Progress(selected, where, progress) as report:
        while len(done) < len(selected):
            for name, config in selected:
                if name in done:
                    continue
                start, trained = time.perf_counter(), report.epochs
                run_dir = out / "runs" / name
                try:
                    with hold(run_dir):
                        if not (run_dir / "result.json").exists():
                            report.say(f"[{len(done) + 1}/{len(selected)}{where}] {name}: training")
                        status, evaluation = _run(
                            config, run_dir, ood, objective, checkpoint, bootstrap_samples,
                            progress, report.epoch,
                        )  # fmt: skip
                        history = read_history(run_dir)  # rebuilt from the checkpoint if damaged
                except RunLockedError as error:
                    if held.get(name) != error.pid:
                        report.say(f"[{name}] held by process {error.pid or '?'}: taking the next")
                    held[name] = error.pid
                    continue
                done[name] = result_row(evaluation, run=name, seed=config.seed), history
                report.ended(
                    name, f"{status} in {time.perf_counter() - start:.1f} s; "
                    f"{_summary(done[name][0])}", config.epochs - (report.epochs - trained),
                )  # fmt: skip
            if len(done) < len(selected):  # the rest are another process's: wait for them
                time.sleep(WAIT)
    rows = [done[name][0] for name, _ in selected]
    histories = {name: done[name][1] for name, _ in selected}
    if count > 1:
        return rows  # a shard: a last call without one writes the tables
    write_tables(rows, out)
    write_figures(runs, rows, histories, out, checkpoint)
    return rows


def _check_runs(runs: Mapping[str, TrainConfig], ood: Sequence[str], objective: str) -> None:
    """Fail before hours of training, not after: every name and setting checked, every
    dataset read, up front."""
    if not runs:
        raise ValueError("configs is empty: give at least one run")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    for spec in ood:
        parse_ood(spec)
    cells: dict[tuple[str, str, str, int], str] = {}
    found: set[tuple[str, str | None, str, str]] = set()
    for name, config in runs.items():
        parts = PurePosixPath(name).parts
        if not parts or name.startswith("/") or "\\" in name or {".", ".."} & set(parts):
            raise ValueError(f"run name {name!r} must be a relative path without '.' or '..'")
        try:
            check_names(config)
        except (ValueError, TypeError) as error:
            raise ValueError(f"run {name!r}: {error}") from error
        options = json.dumps(config.dataset_options, sort_keys=True)
        data = (config.dataset, config.root, options, json.dumps(config.classes))
        if data not in found:  # read once here, cached for training
            try:
                load_split(config, "test")
            except (OSError, ValueError) as error:
                raise ValueError(f"run {name!r}: dataset {config.dataset!r}: {error}") from error
            try:
                for spec in ood:
                    check_ood(spec, config)
            except ValueError as error:
                raise ValueError(f"run {name!r}: {error}") from error
            found.add(data)
        inside = next((other for other in runs if other.startswith(name + "/")), None)
        if inside is not None:  # a run's directory holds its lock and files, not other runs
            raise ValueError(f"run {inside!r} would lie inside run {name!r}'s directory")
        cell = (config.dataset, config.model, config.loss, config.seed)
        if cell in cells:
            raise ValueError(
                f"runs {cells[cell]!r} and {name!r} are both {'/'.join(cell[:3])} with seed "
                f"{config.seed}: a table has one cell per dataset, model, loss and seed"
            )
        cells[cell] = name


def _run(
    config: TrainConfig,
    run_dir: Path,
    ood: Sequence[str],
    objective: Objective,
    checkpoint: str,
    bootstrap_samples: int,
    progress: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Skip, train, resume or evaluate one run (with ``progress``, training shows its epochs;
    ``on_epoch`` as :func:`~focalcal.engine.train.train`'s); returns what was done and its
    evaluation."""
    finished = (run_dir / "result.json").exists()
    if finished:  # train() checks the run it resumes; a run skipped or evaluated, here
        check_run(config, run_dir)
        if is_evaluated(run_dir, checkpoint=checkpoint, objective=objective, ood=ood):
            evaluation = json.loads((run_dir / "evaluation.json").read_text())
            if bool(evaluation["test"]["before"].get("intervals")) == bool(bootstrap_samples):
                return "skipped", evaluation
        status = "evaluated"
    else:
        status = "resumed" if (run_dir / "checkpoints" / "last.pt").exists() else "trained"
        train(config, run_dir, resume=True, progress=progress, on_epoch=on_epoch)
    return status, evaluate(
        run_dir, checkpoint=checkpoint, objective=objective, ood=ood,
        bootstrap_samples=bootstrap_samples, device=config.device,
    )  # fmt: skip


class _Progress:
    """What :func:`reproduce` shows: lines (a run's start and end, with the grid's ETA) and, on
    a terminal, a bar over the grid's epochs with the running epoch's bar beneath it (tqdm
    stacks them); the bar's total drops by the epochs found done (finished earlier, or by
    another process), so its ETA is for the rest."""

    def __init__(self, selected: Sequence[tuple[str, TrainConfig]], where: str, show: bool):
        self.show, self.where, self.runs, self.done = show, where, len(selected), 0
        self.began = time.perf_counter()
        self.bar = tqdm(total=sum(config.epochs for _, config in selected), unit="epoch",
                        desc=f"grid 0/{self.runs} runs", disable=not show or None)  # fmt: skip
        self.epochs = 0  # trained by this call

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def say(self, line: str) -> None:
        if self.show:  # above the bars on a terminal, a plain line when piped
            tqdm.write(line)

    def epoch(self, record: dict[str, Any]) -> None:
        self.epochs += 1
        self.bar.update()

    def ended(self, name: str, what: str, untrained: int) -> None:
        """Run ``name`` is done (``what``: how), ``untrained`` of its epochs not by this call."""
        self.done += 1
        self.bar.total = (self.bar.total or 0) - untrained
        self.bar.set_description(f"grid {self.done}/{self.runs} runs")
        left = self.runs - self.done
        eta = (time.perf_counter() - self.began) / self.done * left
        self.say(f"[{self.done}/{self.runs}{self.where}] {name}: {what}"
                 + (f"; {left} to go, ETA {_duration(eta)}" if left else ""))  # fmt: skip


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 10 min``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def _summary(row: Mapping[str, Any]) -> str:
    return (
        f"error {format_percent(row['error'])} %, ECE {format_percent(row['ece_before'])} → "
        f"{format_percent(row['ece_after'])} % (T = {format_temperature(row['temperature'])})"
    )
