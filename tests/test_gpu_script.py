"""benchmarks/gpu.sh (issue 18) on its CPU path, ``--device cpu --tiny``, so that it cannot rot
before a GPU runs it; and the parts of its helpers that only a GPU would reach: gpu_sync's
verdicts under CUDA's sync debug modes (faked here) and gpu_plan's sizing of step 4."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import subprocess
import warnings
from pathlib import Path
from types import ModuleType

import pytest
import torch

from focalcal._io import tomllib
from focalcal.data import idx
from focalcal.losses import loss_names

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
FASHION_MNIST = idx.DEBIAN_DIR
LOSSES = ("ce", "flsd-53")  # --tiny's


def benchmark(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder ``gpu.sh --device cpu --tiny`` wrote (one run for every test here)."""
    if not all(
        (FASHION_MNIST / f.filename).exists() for f in (*idx.FILES["train"], *idx.FILES["test"])
    ):
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    base = tmp_path_factory.mktemp("gpu")
    scratch = base / "tmp"
    scratch.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(scratch)}  # a shared machine
    command = ["bash", str(BENCHMARKS / "gpu.sh"), str(base / "out"), str(FASHION_MNIST),
               "--device", "cpu", "--tiny"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not list(scratch.glob("focalcal-gpu.*"))  # step 4's runs and checkpoints: removed
    return base / "out"


def test_summary_names_every_step_and_its_status(out: Path) -> None:
    rows = [line.split(" | ") for line in (out / "summary.md").read_text().splitlines()
            if re.match(r"\| \d \|", line)]  # fmt: skip
    assert [row[0] for row in rows] == ["| 1", "| 2", "| 2", "| 3", "| 4", "| 4"]
    # On the CPU, at these sizes, a benchmark may miss its goals; it must not fail.
    assert all(row[2] in ("ok", "goals missed") for row in rows), rows
    assert "cpu" in (out / "summary.md").read_text().splitlines()[0]


def test_step_1_runs_every_loss_and_metric_at_both_shapes(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = json.loads((out / "1-sync.json").read_text())["results"]
    examples = benchmark("gpu_sync", monkeypatch).EXAMPLES  # fl-<x> -> fl-3, ...
    expected = {examples.get(name, name) for name in loss_names()}
    for shape in ("16x10", "2x5x8x8"):
        ran = {r["call"] for r in results if r["shape"] == shape and r["kind"] == "loss"}
        assert ran == expected
        metrics = {r["call"] for r in results if r["shape"] == shape and r["kind"] == "metric"}
        assert {"expected_calibration_error", "CalibrationAccumulator.update"} <= metrics
    assert {r["status"] for r in results} == {"ran (CPU: not checked)"}


def test_step_2_times_losses_and_metrics(out: Path) -> None:
    losses = (out / "2-losses.md").read_text()
    ratio = re.search(r"^\| focalcal flsd-53 \| (\d+\.\d+)x", losses, re.MULTILINE)
    assert ratio and float(ratio.group(1)) > 0
    metrics = (out / "2-metrics.md").read_text()
    equivalents = re.search(r"^\| focalcal ECE \| ([\d.e+]+)", metrics, re.MULTILINE)
    assert equivalents and float(equivalents.group(1)) > 0
    assert re.search(r"^\| torchmetrics ECE \| [\d.e+]+", metrics, re.MULTILINE)


def test_step_3_measures_training_throughput(out: Path) -> None:
    runs = json.loads((out / "3-train.json").read_text())["runs"]
    (run,) = runs.values()
    assert (run["model"], run["image_size"], run["images"]) == ("small-cnn", 28, 128)
    assert set(run["rows"]) >= {
        "focalcal train_epoch + BatchLoader",
        "paper-style loop, DataLoader 0 workers",
    }
    for row in run["rows"].values():
        assert math.isfinite(row["images_per_s"]) and row["images_per_s"] > 0
        assert row["seconds"] == pytest.approx(128 / row["images_per_s"])


def test_step_4_plans_from_step_3_and_runs_the_papers_regime(out: Path) -> None:
    plan = json.loads((out / "4-plan.json").read_text())
    assert plan["model"] == "small-cnn" and plan["fits"]
    assert plan["tried"][0]["source"].startswith("step 3: small-cnn")

    folder = out / "4-fashion-mnist"
    rows = json.loads((folder / "tables.json").read_text())["rows"]
    assert [row["loss"] for row in rows] == list(LOSSES)
    for row in rows:
        for key in ("ece_before", "ece_after", "error", "nll_before", "nll_after"):
            assert math.isfinite(row[key]) and row[key] >= 0, (key, row[key])
        assert 0 <= row["ece_after"] <= 1 and 0 <= row["error"] <= 1
        assert round(row["temperature"] * 10) / 10 == pytest.approx(row["temperature"])
    assert (folder / "tables.md").is_file() and (folder / "analysis.png").is_file()
    for loss in LOSSES:
        run = folder / "runs" / "fashion-mnist" / "small-cnn" / loss
        config = tomllib.loads((run / "config.toml").read_text())
        assert config["root"] == str(FASHION_MNIST)
        assert (config["reduction"], config["grad_clip"], config["lr"]) == ("sum", 2.0, 0.1)
        assert (config["momentum"], config["weight_decay"]) == (0.9, 5e-4)
        (record,) = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        assert {"test_nll_correct", "test_nll_incorrect", "test_entropy"} <= set(record)
        assert not (run / "checkpoints").exists()  # they stay behind: OUT_DIR travels


def test_sync_check_names_every_syncing_line(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu_sync = benchmark("gpu_sync", monkeypatch)
    mode = ["default"]
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda value: mode.__setitem__(0, value))

    def read_back() -> None:  # what CUDA does at a synchronising call in each mode
        if mode[0] == "error":
            raise RuntimeError(gpu_sync.SYNC_MESSAGE)
        if mode[0] == "warn":
            warnings.warn(gpu_sync.SYNC_MESSAGE, UserWarning, stacklevel=1)

    def metric() -> None:
        read_back()
        read_back()

    result = gpu_sync.check(metric, cuda=True)
    assert result["status"] == "syncs" and result["first"].endswith("(read_back)")
    (site, count), *others = result["sites"].items()
    assert site.endswith("(read_back)") and count == 2 and not others
    assert mode == ["default"]
    assert gpu_sync.check(lambda: None, cuda=True) == {"status": "no sync"}
    failed = gpu_sync.check(lambda: int("x"), cuda=True)
    assert failed["status"] == "error" and "ValueError" in failed["error"]


def test_plan_takes_step_3s_figure_or_measures_and_picks_the_first_that_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu_plan = benchmark("gpu_plan", monkeypatch)
    row = {"images_per_s": 1000.0}
    step_3 = {"runs": {"a": {"model": "small-cnn", "image_size": 32, "rows": {gpu_plan.OURS: row}}}}
    (tmp_path / "train.json").write_text(json.dumps(step_3))
    monkeypatch.setattr(gpu_plan, "probe", lambda model, device, batches: 10.0)
    args = argparse.Namespace(
        device="cpu", train_json=tmp_path / "train.json", models=["resnet8", "small-cnn"],
        runs=2, epochs=3, train_images=500, eval_images=300, start_seconds=1.0,
        probe_batches=1, seconds=10.0,
    )  # fmt: skip
    plan = gpu_plan.plan(args)
    resnet8, small = plan["tried"]
    assert resnet8["source"] == "measured here" and resnet8["seconds"] > args.seconds
    speed = 1000.0 * (32 / 28) ** 2  # 32×32 images/s, at 28×28
    parameters = 824_458  # small-cnn's, for 28×28 grey images
    epoch = 500 / speed + 300 / (3 * speed) + 2 * 8 * parameters / 1e9
    assert small["images_per_s"] == pytest.approx(speed)
    assert small["seconds"] == pytest.approx(2 * (1.0 + 3 * epoch))
    assert plan["model"] == "small-cnn" and plan["fits"]

    args.seconds = 1.0  # nothing fits: the last one is planned
    plan = gpu_plan.plan(args)
    assert plan["model"] == "small-cnn" and not plan["fits"]


def test_probe_measures_a_training_speed(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu_plan = benchmark("gpu_plan", monkeypatch)
    speed = gpu_plan.probe("small-cnn", "cpu", batches=1)
    assert math.isfinite(speed) and speed > 0
