"""Bad input, end to end: the tests behind the rows of docs/reliability.md that no other test
file shows, and a check that every test the table names exists."""

from __future__ import annotations

import ast
import math
import re
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from focalcal._checks import (
    ProbabilitiesAsLogitsWarning,
    looks_like_probabilities,
    warn_if_probabilities,
)
from focalcal.cli import main
from focalcal.data import BatchLoader, load_dataset
from focalcal.engine.checkpoint import load_checkpoint, save_checkpoint
from focalcal.engine.config import TrainConfig
from focalcal.engine.evaluate import evaluate
from focalcal.engine.runs import load_model
from focalcal.engine.train import predict, train
from focalcal.losses import build_loss
from focalcal.metrics import (
    CalibrationAccumulator,
    calibration_report,
    classwise_calibration_error,
    entropy,
    expected_calibration_error,
    negative_log_likelihood,
    ood_auroc,
)
from focalcal.models import build_model
from focalcal.scaling import fit_temperature
from tests.data.fixtures import fashion_mnist_files

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "docs" / "reliability.md"
DIGITS = TrainConfig(
    dataset="digits", subset=64, val_subset=32, epochs=1, analysis_samples=0, device="cpu"
)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


# --- probabilities passed as logits ---------------------------------------------------------


def trained_like_logits(seed: int) -> list[torch.Tensor]:
    """Logits as models give them: scaled, shifted, biased, log-probabilities, near zero."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(256, 10, generator=g)
    return [0.1 * z, 3 * z, 20 * z + 5, z.log_softmax(1), 1e-3 * z, z.abs(), z.sigmoid()]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_probabilities_are_told_from_logits(dtype):
    for logits in trained_like_logits(seed=1):
        logits = logits.to(dtype)
        assert not looks_like_probabilities(logits)
        assert looks_like_probabilities(logits.softmax(1))
        spatial = logits.reshape(16, 16, 10).movedim(2, 1)  # (N, C, d)
        assert looks_like_probabilities(spatial.softmax(1))
        assert not looks_like_probabilities(spatial)
    one_hot = torch.eye(4, dtype=dtype)[[0, 3, 1]]
    assert looks_like_probabilities(one_hot)
    for never in (torch.ones(5, 1), torch.zeros(0, 3), torch.full((2, 2), math.nan)):
        assert not looks_like_probabilities(never.to(dtype))  # C = 1, empty, NaN


def test_logits_are_told_by_their_first_row(monkeypatch):
    import focalcal._checks as checks

    shapes = []
    gap = checks.distribution_gap

    def recording(rows, tolerance):
        shapes.append(tuple(rows.shape))
        return gap(rows, tolerance)

    monkeypatch.setattr(checks, "distribution_gap", recording)
    logits = torch.randn(1000, 10, 4)
    logits[0, :, 0] = torch.rand(10) + 0.1  # a first row without a negative value
    assert not looks_like_probabilities(logits)
    assert shapes == []  # its sum ended it: the whole tensor was not read
    assert looks_like_probabilities(logits.softmax(1))
    assert shapes == [(4000, 10)]


def test_losses_can_warn_on_probabilities_without_synchronising():
    probs = torch.randn(8, 5).softmax(1)
    with pytest.warns(ProbabilitiesAsLogitsWarning, match="logits look like probabilities"):
        warn_if_probabilities(probs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_probabilities(probs.log())  # logits
        warn_if_probabilities(probs.to("meta"))  # not the CPU: no check, no host sync


@pytest.mark.parametrize("name", ["ce", "fl-3", "flsd-53", "brier", "mmce-weighted", "ls-0.05"])
def test_a_loss_warns_when_given_probabilities(name):
    probs = torch.randn(8, 5).softmax(1)
    with pytest.warns(ProbabilitiesAsLogitsWarning):
        build_loss(name)(probs, torch.randint(5, (8,)))


def test_temperature_scaling_refuses_probabilities():
    probs = torch.randn(100, 5).softmax(1)
    labels = torch.randint(5, (100,))
    for objective in ("ece", "nll"):
        with pytest.raises(ValueError, match=r"look like probabilities.*from_probs=True"):
            fit_temperature(probs, labels, objective)


# --- empty input ----------------------------------------------------------------------------

EMPTY, NO_LABELS = torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: expected_calibration_error(EMPTY, NO_LABELS), "the input is empty"),
        (lambda: negative_log_likelihood(torch.zeros(2, 3, 0), NO_LABELS.view(2, 0)), "empty"),
        (lambda: entropy(EMPTY), "the input is empty"),
        (lambda: ood_auroc(torch.randn(4, 3), EMPTY), "out_logits: the input is empty"),
        (lambda: CalibrationAccumulator(3).update(EMPTY, NO_LABELS), "the input is empty"),
        (lambda: CalibrationAccumulator(3).compute(), "no samples: call update()"),
        (lambda: fit_temperature(EMPTY, NO_LABELS), "the input is empty"),
        (lambda: fit_temperature(EMPTY, NO_LABELS, "nll"), "the input is empty"),
    ],
)
def test_empty_inputs_are_refused(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


@pytest.mark.parametrize("name", ["ce", "fl-3", "flsd-53", "brier", "mmce", "ls-0.05"])
def test_an_empty_batch_gives_a_loss_as_torch_does(name):
    logits = EMPTY.clone().requires_grad_()
    for reduction, expected in (("mean", math.nan), ("sum", 0.0)):
        reference = torch.nn.functional.cross_entropy(logits, NO_LABELS, reduction=reduction)
        reference = reference.detach()
        loss = build_loss(name, reduction=reduction)(logits, NO_LABELS).detach()
        assert math.isnan(loss) if math.isnan(expected) else loss.item() == expected
        assert math.isnan(reference) if math.isnan(expected) else reference.item() == expected


def test_an_empty_dataset_file_is_refused(tmp_path, monkeypatch):
    fashion_mnist_files(tmp_path, monkeypatch, counts=(0, 3))
    for split in ("train", "val"):
        message = f"fashion-mnist {split} split is empty (its file holds no sample)"
        with pytest.raises(ValueError, match=re.escape(message)):
            load_dataset("fashion-mnist", tmp_path, split)
    assert len(load_dataset("fashion-mnist", tmp_path, "test")) == 3


def test_a_training_set_too_small_to_hold_out_validation_is_refused(tmp_path, monkeypatch, capsys):
    fashion_mnist_files(tmp_path, monkeypatch, counts=(5, 3))
    config = tmp_path / "config.toml"
    TrainConfig(dataset="fashion-mnist", root=str(tmp_path), epochs=1, device="cpu").save(config)
    assert main(["train", str(tmp_path / "run"), "--config", str(config), "--quiet"]) == 1
    err = one_line_error(capsys)
    assert "fashion-mnist val split is empty (0.1 of 5 training samples held out)" in err


# --- one class ------------------------------------------------------------------------------


def test_one_class_data_trains_and_evaluates_to_the_metrics_numbers(tmp_path, monkeypatch):
    fashion_mnist_files(tmp_path, monkeypatch, counts=(60, 20), classes=1)
    config = TrainConfig(dataset="fashion-mnist", root=str(tmp_path), epochs=2, batch_size=16,
                         analysis_samples=0, device="cpu")  # fmt: skip
    train(config, tmp_path / "run", progress=False)
    result = evaluate(tmp_path / "run", write=False)

    model, _ = load_model(tmp_path / "run")
    test = load_dataset("fashion-mnist", tmp_path, "test")
    assert (test.labels == 0).all()
    logits = predict(model, BatchLoader(test, config.eval_batch_size))  # evaluate()'s batches
    expected = calibration_report(logits, test.labels)
    assert result["test"]["before"] == expected.to_dict()
    assert expected.num_classes == 10  # from the model's logits, not from the one label seen
    assert all(math.isfinite(v) for v in expected.to_dict().values() if isinstance(v, float))


def test_a_single_class_gives_exact_values():
    logits, labels = torch.randn(7, 1), torch.zeros(7, dtype=torch.long)
    assert expected_calibration_error(logits, labels) == 0  # confidence 1, always right
    assert classwise_calibration_error(logits, labels) == 0
    assert negative_log_likelihood(logits, labels) == 0
    assert (entropy(logits) == 0).all()
    assert ood_auroc(logits[:3], logits[3:]) == 0.5  # no score tells one set from the other


# --- checkpoints ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "digits"
    train(DIGITS, run, progress=False)
    return run


@pytest.fixture
def run_copy(trained_run, tmp_path):
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def test_evaluate_refuses_a_checkpoint_holding_another_models_weights(run_copy, capsys):
    path = run_copy / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    state["model"] = build_model("resnet8", 10, 1, 8).state_dict()
    save_checkpoint(path, state)  # sealed, but the weights are not a small-cnn's
    assert main(["evaluate", str(run_copy)]) == 1
    err = one_line_error(capsys)  # load_state_dict's many lines, joined
    assert "state_dict" in err and "Missing key(s)" in err


def test_evaluate_refuses_a_checkpoint_of_another_run(run_copy, capsys):
    path = run_copy / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    state["config"] = DIGITS.replace(model="resnet8").to_dict()
    state["model"] = build_model("resnet8", 10, 1, 8).state_dict()
    save_checkpoint(path, state)  # another run's sealed checkpoint, copied into this run
    assert main(["evaluate", str(run_copy)]) == 1
    assert "config" in one_line_error(capsys)


def test_evaluate_refuses_a_tampered_checkpoint(run_copy, capsys):
    path = run_copy / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    state["model"]["layers.0.weight"][0, 0, 0, 0] += 1  # keeps the old SHA-256
    torch.save(state, path)
    assert main(["evaluate", str(run_copy)]) == 1
    assert "SHA-256 does not match its content (tampered or damaged)" in one_line_error(capsys)


# --- the table ------------------------------------------------------------------------------

REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }


def test_every_test_the_reliability_table_names_exists():
    references = REFERENCE.findall(TABLE.read_text())
    assert len(references) >= 30
    missing = [
        f"{file}::{name}"
        for file, name in references
        if not (ROOT / file).is_file() or name not in defined_tests(ROOT / file)
    ]
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"
    named_here = {name for file, name in references if file == "tests/test_reliability.py"}
    unnamed = (
        defined_tests(Path(__file__))
        - named_here
        - {"test_every_test_the_reliability_table_names_exists"}
    )
    assert not unnamed, f"tests here that no row of docs/reliability.md names: {unnamed}"
