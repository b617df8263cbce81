"""evaluate() against the metrics module applied by hand to the same checkpoint, its files, its
OOD sets (normalised with the in-distribution constants) and its errors.

The runs use scikit-learn's bundled digits (8×8 images, 359 test samples): images, so the
corruptions apply, and small enough to predict in milliseconds."""

import dataclasses
import importlib
import json
from pathlib import Path

import pytest
import torch

from focalcal._machine import describe_machine
from focalcal.data import BatchLoader, load_dataset
from focalcal.engine.config import TrainConfig
from focalcal.engine.evaluate import evaluate, is_evaluated, ood_dataset, parse_ood
from focalcal.engine.lock import LOCK_FILE
from focalcal.engine.runs import load_model, load_splits
from focalcal.engine.train import predict, train
from focalcal.metrics import calibration_report, ood_auroc, ood_fpr_at_tpr
from focalcal.scaling import (
    calibrator_names,
    fit_calibrator,
    fit_matrix_scaling,
    fit_temperature,
    fit_vector_scaling,
    odir_penalties,
)

# the module that reads the OOD sets, whose load_dataset a test replaces
ood_module = importlib.import_module("focalcal.engine.ood")
CONFIG = TrainConfig(dataset="digits", subset=256, val_subset=128, epochs=2, analysis_samples=100)
NOISE = "corruption:gaussian_noise:5"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    train(CONFIG, run, progress=False)
    return run


def logits_of(model, data):
    # the batches evaluate() uses: a sample's logits may change in the last bit with the batch
    # size (oneDNN and MKL pick kernels by shape), and these tests compare bit for bit
    return predict(model, BatchLoader(data, CONFIG.eval_batch_size))


def test_writes_every_promised_file(run_dir):
    result = evaluate(run_dir, ood=[NOISE])
    stored = json.loads((run_dir / "evaluation.json").read_text())
    assert stored == json.loads(json.dumps(result))
    assert set(stored) == {
        "version",
        "run",
        "dataset",
        "model",
        "loss",
        "checkpoint",
        "epoch",
        "trained_on",
        "evaluated_on",
        "objective",
        "temperature",
        "val_samples",
        "test",
        "post_hoc",
        "ood",
    }
    assert stored["trained_on"] == [stored["evaluated_on"]] == [describe_machine("cpu")]
    assert (stored["dataset"], stored["model"], stored["loss"]) == ("digits", "small-cnn", "ce")
    assert (stored["checkpoint"], stored["epoch"], stored["val_samples"]) == ("last", 2, 128)
    assert set(stored["ood"][NOISE]) == {"num_samples", "entropy", "confidence", "fpr95"}
    assert set(stored["ood"][NOISE]["fpr95"]) == {"entropy", "confidence"}
    assert list(stored["post_hoc"]) == [n for n in calibrator_names() if n != "temperature"]
    assert set(stored["post_hoc"]["vector"]) == set(stored["test"]["before"]) | {
        "parameters",
        "spread_penalty",
        "bias_penalty",
    }
    markdown = (run_dir / "evaluation.md").read_text()
    assert f"Trained on {describe_machine('cpu')}; evaluated on" in markdown
    assert "| ECE (%) |" in markdown and f"OOD AUROC (%), {NOISE}, entropy" in markdown
    assert f"OOD FPR at 95 % TPR (%), {NOISE}, max confidence" in markdown
    # The post-hoc table: a row per metric, the reports side by side.
    header = "| Metric | Before | After T | Vector, λ = 1, μ = 1 | Matrix, ODIR λ = 9, μ = 1 |"
    assert "## Post-hoc calibration maps" in markdown and header in markdown
    reports = [stored["test"]["before"], stored["test"]["after"], *stored["post_hoc"].values()]
    row = " | ".join(f"{100 * report['ece']:.2f}" for report in reports)
    assert f"| ECE (%) | {row} |" in markdown
    assert (run_dir / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(run_dir.glob("*.tmp")) and [p.name for p in run_dir.glob(".*")] == [LOCK_FILE]


@pytest.mark.parametrize("objective", ["ece", "nll"])
def test_numbers_equal_the_metrics_module_on_the_same_checkpoint(run_dir, objective):
    result = evaluate(run_dir, objective=objective, ood=[NOISE], write=False)

    model, config = load_model(run_dir, "last")
    splits = load_splits(config)
    val, test = logits_of(model, splits["val"]), logits_of(model, splits["test"])
    labels = splits["test"].labels
    temperature = fit_temperature(val, splits["val"].labels, objective)
    assert result["temperature"] == temperature
    assert result["test"]["before"] == calibration_report(test, labels).to_dict()
    after = calibration_report(test / temperature, labels).to_dict()
    assert result["test"]["after"] == {**after, "temperature": temperature}
    # Every other calibrator at its default options (vector and matrix scaling with ODIR at
    # the default penalties, ...), fitted on the same validation logits, applied to the test
    # logits.
    for name in [n for n in calibrator_names() if n != "temperature"]:
        calibrator = fit_calibrator(name, val, splits["val"].labels)
        report = calibration_report(calibrator.transform(test), labels).to_dict()
        expected = {**report, "parameters": calibrator.summary()}
        assert {k: result["post_hoc"][name][k] for k in expected} == expected, name
    penalties = odir_penalties(10)
    assert result["post_hoc"]["vector"]["spread_penalty"] == 1.0  # 0.1 C
    assert result["post_hoc"]["vector"]["bias_penalty"] == 1.0
    assert result["post_hoc"]["matrix"]["off_diagonal_penalty"] == penalties[0]
    assert result["post_hoc"]["matrix"]["bias_penalty"] == penalties[1]
    vector = fit_vector_scaling(val, splits["val"].labels)
    matrix = fit_matrix_scaling(val, splits["val"].labels, *penalties)
    # The maps are fitted by validation NLL: there, neither is worse than temperature scaling
    # by NLL, or than no map at all.
    val_labels = splits["val"].labels
    nll_t = calibration_report(val / fit_temperature(val, val_labels, "nll"), val_labels).nll
    assert calibration_report(vector(val), val_labels).nll <= nll_t + 1e-5  # float32 logits
    assert (
        calibration_report(matrix(val), val_labels).nll <= calibration_report(val, val_labels).nll
    )

    noisy = load_dataset("digits", split="test", corruption="gaussian_noise", severity=5)
    noisy_logits = logits_of(model, noisy)
    for score in ("entropy", "confidence"):
        expected = {
            "before": float(ood_auroc(test, noisy_logits, score)),
            "after": float(ood_auroc(test / temperature, noisy_logits / temperature, score)),
        }
        assert result["ood"][NOISE][score] == expected
        assert all(0.0 <= value <= 1.0 for value in expected.values())
        expected = {
            "before": float(ood_fpr_at_tpr(test, noisy_logits, score)),
            "after": float(ood_fpr_at_tpr(test / temperature, noisy_logits / temperature, score)),
        }
        assert result["ood"][NOISE]["fpr95"][score] == expected
    assert result["ood"][NOISE]["num_samples"] == len(noisy)


def test_best_checkpoint_and_bootstrap_intervals(run_dir):
    result = evaluate(run_dir, checkpoint="best", bootstrap_samples=20, write=False)
    best = json.loads((run_dir / "result.json").read_text())["best_epoch"]
    assert (result["checkpoint"], result["epoch"]) == ("best", best)
    for report in (*result["test"].values(), *result["post_hoc"].values()):
        low, high = report["intervals"]["ece"]
        assert low <= high


def test_the_reliability_diagram_names_the_run(run_dir, monkeypatch):
    titles = []

    def draw(panels, path, **options):
        titles.append(options["title"])
        return Path(path)

    monkeypatch.setattr("focalcal.engine.evaluate.save_reliability_diagram", draw)
    evaluate(run_dir, checkpoint="best")
    best = json.loads((run_dir / "result.json").read_text())["best_epoch"]
    name = f" ({run_dir.name})"  # the folder's name, unless it is the loss's
    assert titles == [f"digits · small-cnn · CE{name}, test split, best checkpoint (epoch {best})"]


def test_ood_inputs_take_the_in_distribution_normalisation(run_dir, monkeypatch):
    """The OOD set is the test split itself, but carries other normalisation constants: read
    with the in-distribution ones, its logits are the test logits and the AUROC is exactly 0.5;
    read with its own, the logits would differ."""
    real = ood_module.load_dataset

    def shifted(*args, **kwargs):
        return dataclasses.replace(real(*args, **kwargs), mean=(0.9,), std=(0.05,))

    monkeypatch.setattr(ood_module, "load_dataset", shifted)
    result = evaluate(run_dir, ood=["digits"], write=False)
    assert result["ood"]["digits"]["entropy"] == {"before": 0.5, "after": 0.5}
    assert result["ood"]["digits"]["confidence"] == {"before": 0.5, "after": 0.5}

    model, config = load_model(run_dir)
    test = load_splits(config)["test"]
    data = ood_dataset("digits", config, test)
    assert (data.mean, data.std) == (test.mean, test.std)
    own = logits_of(model, shifted("digits", split="test"))
    assert not torch.equal(own, logits_of(model, test))


def test_is_evaluated_follows_the_settings(run_dir):
    evaluate(run_dir, ood=[NOISE])
    assert is_evaluated(run_dir, ood=[NOISE])
    assert not is_evaluated(run_dir, ood=[])
    assert not is_evaluated(run_dir, ood=[NOISE], objective="nll")
    assert not is_evaluated(run_dir, ood=[NOISE], checkpoint="best")
    assert not is_evaluated(run_dir.parent / "nowhere")


def test_parse_ood():
    assert parse_ood("svhn") == ("svhn", None, 5, False)
    assert parse_ood("corruption:contrast:2") == (None, "contrast", 2, False)
    assert parse_ood("heldout") == (None, None, 5, True)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nonexistent", "unknown OOD set 'nonexistent'"),
        ("corruption:fog:3", "unknown corruption 'fog'"),
        ("corruption:gaussian_noise:9", "severity must be 1 to 5"),
        ("corruption:gaussian_noise", "severity must be 1 to 5"),
        (
            "mnist1d",
            r"OOD set 'mnist1d' has inputs of shape \(1, 40\), the model takes \(1, 8, 8\)",
        ),
    ],
)
def test_bad_ood_sets_are_named(run_dir, spec, message):
    with pytest.raises(ValueError, match=message):
        evaluate(run_dir, ood=[spec], write=False)


def test_missing_run_or_checkpoint_is_named(tmp_path, run_dir):
    with pytest.raises(FileNotFoundError, match=r"run directory .*missing.* does not exist"):
        evaluate(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="has no 'last' checkpoint"):
        evaluate(tmp_path)
    with pytest.raises(ValueError, match="checkpoint must be one of"):
        evaluate(run_dir, checkpoint="middle")
    with pytest.raises(ValueError, match="objective must be one of"):
        evaluate(run_dir, objective="brier")
