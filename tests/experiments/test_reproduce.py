"""reproduce() on a 2 × 1 × 1 grid of digits runs: every promised file, table values equal to
the runs' evaluation.json, skipping, resuming and re-evaluating, and errors before training."""

import importlib
import json
import re
import shutil
import statistics
from pathlib import Path
from urllib.parse import unquote

import pytest

from focalcal._machine import describe_machine
from focalcal.engine.config import TrainConfig
from focalcal.experiments import DEFAULT_LOSSES, Grid, grid, read_history, reproduce
from focalcal.losses import build_loss
from focalcal.report import nll_curves_figure
from focalcal.report.cells import Cell, format_cell
from focalcal.report.tables import result_row

BASE = TrainConfig(dataset="digits", subset=256, val_subset=128, epochs=2, analysis_samples=100)
# the module, not the function the package exports under its name
reproduce_module = importlib.import_module("focalcal.experiments.reproduce")
figures_module = importlib.import_module("focalcal.experiments.figures")
NAMES = ["digits/small-cnn/ce", "digits/small-cnn/flsd-53"]
NOISE = "corruption:gaussian_noise:5"
RUN_FILES = [
    "config.toml",
    "log.jsonl",
    "checkpoints/last.pt",
    "checkpoints/best.pt",
    "result.json",
    "evaluation.json",
    "evaluation.md",
    "reliability.png",
]


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    rows = reproduce(Grid(BASE, ["ce", "flsd-53"]), out, ood=[NOISE], progress=False)
    return out, rows


@pytest.fixture
def copy(done, tmp_path):
    """A private copy of the finished grid, for the tests that change it."""
    return Path(shutil.copytree(done[0], tmp_path / "out"))


def forbid(monkeypatch, *names):
    def fail(*args, **kwargs):
        raise AssertionError("must not be called")

    for name in names:
        monkeypatch.setattr(reproduce_module, name, fail)


def spy(monkeypatch, name, module=reproduce_module):
    calls = []
    real = getattr(module, name)

    def record(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, record)
    return calls


def test_writes_every_promised_file(done):
    out, rows = done
    assert sorted(p.name for p in out.iterdir()) == [
        "analysis.png",
        "figures.md",
        "nll_curves.png",
        "reliability_by_loss.png",
        "runs",
        "tables.json",
        "tables.md",
        "tables.tex",
    ]
    for name in NAMES:
        for file in RUN_FILES:
            assert (out / "runs" / name / file).is_file(), f"{name}/{file}"
    figures = (out / "figures.md").read_text()
    links = [unquote(link) for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", figures)]
    grid_figures = ["nll_curves.png", "analysis.png", "reliability_by_loss.png"]
    assert links == grid_figures + [f"runs/{name}/reliability.png" for name in NAMES]
    assert all((out / link).read_bytes()[:4] == b"\x89PNG" for link in links)
    for image in grid_figures:  # each under a heading, with a one-line caption
        lines = figures.split(f"]({image})\n\n")[1].splitlines()
        assert lines[0].endswith(".") and lines[1] == ""
    assert [row["run"] for row in rows] == NAMES


def test_table_values_equal_the_evaluations(done):
    out, rows = done
    document = json.loads((out / "tables.json").read_text())
    markdown = (out / "tables.md").read_text()
    assert f"Trained on {describe_machine('cpu')}. The same command repeats" in markdown
    for name, row in zip(NAMES, rows, strict=True):
        evaluation = json.loads((out / "runs" / name / "evaluation.json").read_text())
        assert row == result_row(evaluation, run=name, seed=BASE.seed)
        before, after = evaluation["test"]["before"], evaluation["test"]["after"]
        assert (row["ece_before"], row["ece_after"]) == (before["ece"], after["ece"])
        assert row["ood"][NOISE]["entropy"] == evaluation["ood"][NOISE]["entropy"]
        ece = Cell(before["ece"], after["ece"], evaluation["temperature"])
        assert format_cell(ece) in markdown
        tables = {table["key"]: table for table in document["tables"]}
        cell = next(c for c in tables["ece"]["cells"] if c["loss"] == evaluation["loss"])
        assert (cell["before"], cell["after"]) == (before["ece"], after["ece"])
        assert f"{100 * before['error']:.2f}" in markdown
    assert document["rows"] == rows


def test_second_call_skips_finished_runs(done, monkeypatch, capsys):
    out, rows = done
    stamps = {n: (out / "runs" / n / "evaluation.json").stat().st_mtime_ns for n in NAMES}
    forbid(monkeypatch, "train", "evaluate")
    assert reproduce(Grid(BASE, ["ce", "flsd-53"]), out, ood=[NOISE]) == rows
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(": skipped in " in line for line in lines)
    assert lines[0].startswith(f"[1/2] {NAMES[0]}: skipped") and "ECE" in lines[0]
    assert stamps == {n: (out / "runs" / n / "evaluation.json").stat().st_mtime_ns for n in NAMES}


def test_unfinished_run_resumes_and_new_settings_re_evaluate(copy, monkeypatch, capsys):
    (copy / "runs" / NAMES[1] / "result.json").unlink()
    trained = spy(monkeypatch, "train")
    evaluated = spy(monkeypatch, "evaluate")
    reproduce(Grid(BASE, ["ce", "flsd-53"]), copy, ood=[NOISE])
    assert [(args[1], kwargs["resume"]) for args, kwargs in trained] == [
        (copy / "runs" / NAMES[1], True)
    ]
    assert [args[0] for args, _ in evaluated] == [copy / "runs" / NAMES[1]]
    assert ": resumed in " in capsys.readouterr().out

    forbid(monkeypatch, "train")
    evaluated = spy(monkeypatch, "evaluate")
    rows = reproduce(Grid(BASE, ["ce", "flsd-53"]), copy, objective="nll", progress=False)
    assert len(evaluated) == 2 and all(row["objective"] == "nll" for row in rows)
    assert all(row["ood"] == {} for row in rows)


def test_changed_config_of_a_finished_run_is_an_error(copy):
    with pytest.raises(ValueError, match=r"another config \(differs in \['lr'\]\)"):
        reproduce(Grid(BASE.replace(lr=0.05), ["ce"]), copy, progress=False)


@pytest.mark.parametrize("lost", ["reliability.png", "evaluation.md"])
def test_a_run_missing_an_output_is_evaluated_again(copy, monkeypatch, capsys, lost):
    (copy / "runs" / NAMES[0] / lost).unlink()  # as a kill between two outputs left it
    forbid(monkeypatch, "train")
    evaluated = spy(monkeypatch, "evaluate")
    reproduce(Grid(BASE, ["ce", "flsd-53"]), copy, ood=[NOISE])
    assert [args[0] for args, _ in evaluated] == [copy / "runs" / NAMES[0]]
    assert f"{NAMES[0]}: evaluated in " in capsys.readouterr().out
    assert (copy / "runs" / NAMES[0] / lost).is_file()
    assert f"runs/{NAMES[0]}/reliability.png" in unquote((copy / "figures.md").read_text())


def test_an_evaluation_interrupted_between_its_files_counts_as_not_done(copy, monkeypatch):
    from focalcal.engine import evaluate as evaluate_module

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_module, "save_reliability_diagram", killed)
    with pytest.raises(KeyboardInterrupt):
        reproduce(Grid(BASE, ["ce", "flsd-53"]), copy, objective="nll", progress=False)
    run = copy / "runs" / NAMES[0]
    assert not (run / "evaluation.json").exists()  # written last: absent, so not evaluated
    assert not evaluate_module.is_evaluated(run, ood=[NOISE])


def test_checkpoints_swapped_between_runs_are_noticed(copy):
    first, second = (copy / "runs" / name / "checkpoints" / "last.pt" for name in NAMES)
    first_bytes = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(first_bytes)
    with pytest.raises(ValueError, match=rf"{first} was trained with another config "
                       r"\(differs in \['loss'\]\)"):  # fmt: skip
        reproduce(Grid(BASE, ["ce", "flsd-53"]), copy, ood=[NOISE], progress=False)


def test_a_damaged_log_is_rebuilt_from_the_checkpoint(copy, done):
    log = copy / "runs" / NAMES[0] / "log.jsonl"
    text = log.read_text()
    log.write_text(text[: len(text) // 2])
    assert reproduce(Grid(BASE, ["ce", "flsd-53"]), copy, ood=[NOISE], progress=False) == done[1]
    assert log.read_text() == text


@pytest.mark.parametrize(
    ("configs", "message"),
    [
        ({"a": BASE, "a/b": BASE.replace(loss="fl-3")}, "run 'a/b' would lie inside run 'a'"),
        ({"x": BASE.replace(loss="nope")}, "run 'x': unknown loss 'nope'"),
        ({"x": BASE.replace(model="nope")}, "run 'x': unknown model 'nope'"),
        ({"x": BASE.replace(dataset="nope")}, "run 'x': unknown dataset 'nope'"),
        ({"../x": BASE}, "run name '../x' must be a relative path"),
        ({"a": BASE, "b": BASE}, "runs 'a' and 'b' are both digits/small-cnn/ce"),
        ({}, "configs is empty"),
    ],
)
def test_bad_grids_fail_before_training(tmp_path, configs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        reproduce(configs, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_bad_ood_or_objective_fail_before_training(tmp_path):
    with pytest.raises(ValueError, match="unknown OOD set 'nope'"):
        reproduce({"x": BASE}, tmp_path / "out", ood=["nope"], progress=False)
    with pytest.raises(ValueError, match="objective must be one of"):
        reproduce({"x": BASE}, tmp_path / "out", objective="brier", progress=False)
    assert not (tmp_path / "out").exists()


def test_grid_names_and_spec():
    configs = grid(BASE, ["ce", "fl-3"], models=["small-cnn"], datasets=["digits", "fashion-mnist"])
    assert list(configs) == [
        "digits/small-cnn/ce",
        "digits/small-cnn/fl-3",
        "fashion-mnist/small-cnn/ce",
        "fashion-mnist/small-cnn/fl-3",
    ]
    # another dataset than the base's does not inherit the base's sample counts
    assert configs["digits/small-cnn/fl-3"] == BASE.replace(loss="fl-3")
    assert configs["fashion-mnist/small-cnn/fl-3"] == BASE.replace(
        dataset="fashion-mnist", loss="fl-3", subset=None, val_subset=None
    )
    kept = grid(BASE, ["ce"], datasets=["fashion-mnist"], keep=["subset"])
    assert kept["fashion-mnist/small-cnn/ce"].subset == BASE.subset
    spec = Grid.from_dict(
        {"base": {"dataset": "digits"}, "losses": ["ce"], "models": ["small-cnn"]}
    )
    assert spec.configs() == {"digits/small-cnn/ce": TrainConfig(dataset="digits")}
    with pytest.raises(ValueError, match=r"unknown grid keys \['loss'\]"):
        Grid.from_dict({"loss": ["ce"]})
    with pytest.raises(ValueError, match="losses is empty"):
        grid(BASE, [])
    with pytest.raises(ValueError, match="seeds must be a positive integer, got 0"):
        grid(BASE, ["ce"], seeds=0)
    seeded = Grid.from_dict({"base": {"seed": 3}, "losses": ["ce"], "seeds": 2}).configs()
    assert {name: config.seed for name, config in seeded.items()} == {
        "fashion-mnist/small-cnn/ce/seed-3": 3,
        "fashion-mnist/small-cnn/ce/seed-4": 4,
    }
    for loss in DEFAULT_LOSSES:
        build_loss(loss)


def test_nll_curves_show_what_the_logs_hold(done):
    out, _ = done
    histories = {name: read_history(out / "runs" / name) for name in NAMES}
    assert [len(h) for h in histories.values()] == [2, 2]
    titles = [axes.get_title() for axes in nll_curves_figure(histories).axes]
    assert titles == ["Test NLL", "Test NLL of correct and incorrect predictions", "Test entropy"]
    without_analysis = {
        n: [{"epoch": r["epoch"], "val_nll": r["val_nll"]} for r in h] for n, h in histories.items()
    }
    assert [a.get_title() for a in nll_curves_figure(without_analysis).axes] == ["Validation NLL"]
    with pytest.raises(ValueError, match="history 'x' must be a non-empty list"):
        nll_curves_figure({"x": []})


def test_grid_figures_show_each_loss_as_the_tables_name_it(copy, monkeypatch):
    drawn = {
        name: spy(monkeypatch, name, figures_module)
        for name in ("analysis_figure", "reliability_by_loss_figure")
    }
    forbid(monkeypatch, "train", "evaluate")
    rows = reproduce(Grid(BASE, ["ce", "flsd-53"]), copy, ood=[NOISE], progress=False)
    ((args, kwargs),) = drawn["analysis_figure"]
    assert args[0] == {label: [read_history(copy / "runs" / name)]
                       for label, name in zip(["CE", "FLSD-53"], NAMES, strict=True)}  # fmt: skip
    assert kwargs["title"] == "digits · small-cnn"
    ((args, kwargs),) = drawn["reliability_by_loss_figure"]
    assert list(args[0]) == ["CE", "FLSD-53"]  # the first seed's test bins of each loss
    for bins, row in zip(args[0].values(), rows, strict=True):
        assert int(bins.count.sum()) == 359  # the digits test split
        assert float(bins.calibration_error()) == pytest.approx(row["ece_before"], abs=1e-9)
    assert kwargs["title"] == "digits · small-cnn, test split"


def test_curve_labels_group_seeds_and_name_losses_as_the_tables_do():
    labels = figures_module._curve_labels
    runs = grid(BASE, ["ce", "flsd-53"], seeds=2)
    histories = {name: [{"epoch": 1, "run": name}] for name in runs}
    assert labels(runs, histories) == {
        "CE": [histories["digits/small-cnn/ce/seed-0"], histories["digits/small-cnn/ce/seed-1"]],
        "FLSD-53": [histories[f"digits/small-cnn/flsd-53/seed-{seed}"] for seed in (0, 1)],
    }
    runs = grid(BASE, ["ce"], models=["small-cnn", "mlp"], seeds=2)
    histories = {name: [{"epoch": 1, "run": name}] for name in runs}
    assert {label: len(group) for label, group in labels(runs, histories).items()} == {
        "digits/small-cnn/ce": 2,
        "digits/mlp/ce": 2,
    }


def test_seeds_give_means_and_standard_deviations_and_mark_only_clear_winners(tmp_path):
    base = BASE.replace(epochs=1)
    rows = reproduce(Grid(base, ["ce", "fl-3"], seeds=2), tmp_path, progress=False)
    names = [f"digits/small-cnn/{loss}/seed-{seed}" for loss in ("ce", "fl-3") for seed in (0, 1)]
    assert [row["run"] for row in rows] == names and [row["seed"] for row in rows] == [0, 1] * 2
    evaluations = {
        name: json.loads((tmp_path / "runs" / name / "evaluation.json").read_text())
        for name in names
    }
    markdown = (tmp_path / "tables.md").read_text()
    comparison = markdown[markdown.index("## Losses compared") :]
    for loss in ("ce", "fl-3"):
        runs = [evaluations[f"digits/small-cnn/{loss}/seed-{seed}"] for seed in (0, 1)]
        values = [100 * run["test"]["before"]["ece"] for run in runs]
        mean, std = statistics.mean(values), statistics.stdev(values)
        assert f"{mean:.2f} ± {std:.2f}" in markdown  # the ECE table and the comparison
        line = next(row for row in comparison.splitlines() if row.startswith(f"| {loss.upper()} "))
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[2].strip("*") == f"{mean:.2f} ± {std:.2f}"
    # the bold marks follow the rule, recomputed from the evaluations
    for metric, when in [("ece", "before"), ("nll", "after")]:
        stats = {}
        for loss in ("ce", "fl-3"):
            values = [evaluations[f"digits/small-cnn/{loss}/seed-{s}"]["test"][when][metric]
                      for s in (0, 1)]  # fmt: skip
            stats[loss] = (statistics.mean(values), statistics.stdev(values))
        (best, best_std), (runner, runner_std) = sorted(stats.values())
        winner = (
            min(stats, key=lambda k: stats[k][0])
            if runner - best > max(best_std, runner_std)
            else None
        )
        index = 2 if metric == "ece" else 9
        for loss in ("ce", "fl-3"):
            line = next(r for r in comparison.splitlines() if r.startswith(f"| {loss.upper()} "))
            cell = [c.strip() for c in line.strip("|").split("|")][index]
            assert cell.startswith("**") == (loss == winner), (metric, when, loss, cell)
    assert "over 2 seeds" in comparison and "[" not in comparison.split("###")[1]


def test_single_runs_show_bootstrap_intervals_in_the_comparison(copy):
    rows = reproduce(Grid(BASE, ["ce", "flsd-53"]), copy, ood=[NOISE], bootstrap_samples=50,
                     progress=False)  # fmt: skip
    comparison = (copy / "tables.md").read_text().split("## Losses compared")[1]
    for row in rows:
        low, high = row["intervals"]["ece_before"]
        assert low <= row["ece_before"] <= high
        assert f"{100 * row['ece_before']:.2f} [{100 * low:.2f}, {100 * high:.2f}]" in comparison
    assert "**" not in comparison.split("Lower is better")[0]


def test_shards_split_a_grid_and_a_last_call_tabulates(tmp_path, monkeypatch):
    spec = Grid(BASE.replace(epochs=1), ["ce", "fl-3", "flsd-53"])
    first = reproduce(spec, tmp_path, shard=(0, 2), progress=False)
    second = reproduce(spec, tmp_path, shard=(1, 2), progress=False)
    names = [f"digits/small-cnn/{loss}" for loss in ("ce", "fl-3", "flsd-53")]
    assert [r["run"] for r in first] == names[0::2] and [r["run"] for r in second] == names[1::2]
    assert not (tmp_path / "tables.md").exists()  # shards write runs only
    forbid(monkeypatch, "train", "evaluate")
    rows = reproduce(spec, tmp_path, progress=False)
    assert [r["run"] for r in rows] == names and (tmp_path / "tables.md").is_file()
    with pytest.raises(ValueError, match=r"shard must be \(k, n\) with 0 <= k < n, got \(2, 2\)"):
        reproduce(spec, tmp_path, shard=(2, 2), progress=False)


def test_a_missing_dataset_fails_before_the_first_run(tmp_path):
    configs = {"ok": BASE, "late": BASE.replace(dataset="cifar10", root=str(tmp_path / "none"))}
    with pytest.raises(ValueError, match=r"run 'late': dataset 'cifar10': .*cifar-10-python"):
        reproduce(configs, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


class Terminal:
    """A stream that says it is a terminal, as tqdm asks before it draws a bar."""

    def __init__(self):
        self.text = []

    def write(self, text):
        self.text.append(text)

    def flush(self):
        pass

    def isatty(self):
        return True


def test_progress_is_a_line_per_epoch_when_piped_and_bars_on_a_terminal(
    tmp_path, monkeypatch, capsys
):
    spec = Grid(BASE.replace(subset=128, epochs=2, analysis_samples=0), ["ce", "fl-3"])
    reproduce(spec, tmp_path / "piped")
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "[1/2] digits/small-cnn/ce", "epoch 1/2", "epoch 2/2", "[1/2] digits/small-cnn/ce",
        "[2/2] digits/small-cnn/fl-3", "epoch 1/2", "epoch 2/2", "[2/2] digits/small-cnn/fl-3",
    ]  # fmt: skip
    assert lines[0].endswith(": training") and lines[3].startswith(f"[1/2] {NAMES[0]}: trained in")
    assert re.search(r"; 1 to go, ETA \d+ s$", lines[3]) and "to go" not in lines[7]
    assert captured.err == ""  # no bar drawn into a pipe
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    reproduce(spec.__class__(spec.base.replace(seed=1), spec.losses), tmp_path / "tty")
    bars = "".join(terminal.text)
    assert "grid 0/2 runs" in bars and "grid 2/2 runs" in bars and "4/4" in bars  # epochs
    assert "epoch 1/2" in bars  # the running epoch's bar over its batches, beneath
    assert len(capsys.readouterr().out.splitlines()) == 8  # the lines go above the bars
