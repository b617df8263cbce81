"""The training loop: the files of a run, exact resumption, refusing to mix runs."""

import json
import math

import pytest
import torch

from focalcal._machine import describe_machine
from focalcal.data import BatchLoader, Dataset
from focalcal.engine import train as train_module
from focalcal.engine.checkpoint import load_checkpoint
from focalcal.engine.config import TrainConfig
from focalcal.engine.runs import load_model
from focalcal.engine.train import NonFiniteLossError, predict, train
from focalcal.losses import AdaFocalLoss, EpochStart

TINY = TrainConfig(dataset="fashion-mnist", subset=256, val_subset=128, epochs=3, batch_size=64,
                   milestones=[2], analysis_samples=200, loss="flsc-531", augment=True,
                   device="cpu")  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    return run, train(TINY, run, progress=False)


def test_a_run_writes_its_config_log_checkpoints_and_result(finished):
    run, result = finished
    assert TrainConfig.load(run / "config.toml") == TINY
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[0]["lr"] == 0.1 and records[2]["lr"] == pytest.approx(0.01)
    for key in ("train_loss", "val_accuracy", "val_nll", "test_nll", "test_nll_correct",
                "test_nll_incorrect", "test_entropy", "weight_norm", "seconds"):  # fmt: skip
        assert all(key in r for r in records), key
    assert json.loads((run / "result.json").read_text()) == result
    assert result["best_epoch"] == max(records, key=lambda r: r["val_accuracy"])["epoch"]
    assert not list(run.rglob("*.tmp"))
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["epoch"] == 3 and last["history"] == records
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["epoch"] == result["best_epoch"]
    assert result["machines"] == last["machines"] == [describe_machine("cpu")]


def test_the_logged_validation_accuracy_is_the_models(finished):
    run, _ = finished
    model, config = load_model(run, "last")
    validation = train_module.load_splits(config)["val"]
    logits = predict(model, BatchLoader(validation, config.eval_batch_size))
    accuracy = float((logits.argmax(1) == validation.labels).double().mean())
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert accuracy == pytest.approx(records[-1]["val_accuracy"], abs=1e-12)


def train_interrupted_after_two_epochs(config, run_dir, monkeypatch):
    write = train_module.atomic_write_text

    def interrupt_after_two_epochs(path, text):
        write(path, text)
        if path.name == "log.jsonl" and text.count("\n") == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "atomic_write_text", interrupt_after_two_epochs)
    with pytest.raises(KeyboardInterrupt):
        train(config, run_dir, progress=False)
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"] == 2
    monkeypatch.setattr(train_module, "atomic_write_text", write)


def test_resume_after_an_interruption_ends_like_an_uninterrupted_run(
    finished, tmp_path, monkeypatch
):
    run, _ = finished
    train_interrupted_after_two_epochs(TINY, tmp_path, monkeypatch)
    train(TINY, tmp_path, resume=True, progress=False)
    resumed = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    straight = load_checkpoint(run / "checkpoints" / "last.pt")
    for name, tensor in straight["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name
    for a, b in zip(resumed["history"], straight["history"], strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {
            k: v for k, v in b.items() if k != "seconds"
        }


def test_a_run_resumed_on_another_machine_names_both(tmp_path, monkeypatch):
    train_interrupted_after_two_epochs(TINY, tmp_path, monkeypatch)
    monkeypatch.setattr(train_module, "describe_machine", lambda device: "another machine")
    result = train(TINY, tmp_path, resume=True, progress=False)
    assert result["machines"] == [describe_machine("cpu"), "another machine"]
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["machines"] == result["machines"]


def test_a_run_directory_is_not_overwritten_or_resumed_with_another_config(finished):
    run, _ = finished
    with pytest.raises(ValueError, match="already holds a run"):
        train(TINY, run, progress=False)
    with pytest.raises(ValueError, match=r"another config \(differs in \['lr'\]\)"):
        train(TINY.replace(lr=0.05), run, resume=True, progress=False)


def test_tensorboard_gets_every_logged_value(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = TINY.replace(epochs=2, milestones=[], tensorboard=True, augment=False)
    train(config, tmp_path, progress=False)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    for key in ("train_loss", "val_accuracy", "test_nll_incorrect", "weight_norm"):
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        assert logged == [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in records]


def poison_the_sixth_loss(monkeypatch):
    real = train_module.build_loss

    def build(name, **options):
        criterion, calls = real(name, **options), iter(range(1, 10**6))

        class Poisoned(torch.nn.Module):
            def forward(self, logits, target):
                loss = criterion(logits, target)
                return loss * float("nan") if next(calls) == 6 else loss

        return Poisoned()

    monkeypatch.setattr(train_module, "build_loss", build)


def test_a_nonfinite_loss_stops_the_run_at_its_step(tmp_path, monkeypatch):
    poison_the_sixth_loss(monkeypatch)  # 4 steps per epoch: epoch 2, step 2
    config = TINY.replace(loss="ce", epochs=2, milestones=[])
    message = (r"epoch 2, step 2 of the epoch: the loss is nan; the batch: 64 samples, inputs "
               r"min .* labels \d\.\.\d; the last good checkpoint is .*last\.pt")  # fmt: skip
    with pytest.raises(FloatingPointError, match=message):
        train(config, tmp_path, progress=False)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["epoch"] == 1


def test_skip_nonfinite_skips_and_counts_the_step(tmp_path, monkeypatch):
    poison_the_sixth_loss(monkeypatch)
    config = TINY.replace(loss="ce", epochs=2, milestones=[], skip_nonfinite=True)
    train(config, tmp_path, progress=False)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["skipped_steps"] for r in records] == [0, 1]
    weights = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["model"]
    assert all(bool(w.isfinite().all()) for w in weights.values())


def poison_one_training_image(monkeypatch, index=100):
    """Training images as floats (0-1, as the loader reads float inputs), one pixel NaN."""
    real = train_module.load_splits

    def load(config):
        splits = real(config)
        train = splits["train"]
        images = train.inputs.float() / 255
        images[index, 0, 14, 14] = float("nan")
        splits["train"] = Dataset(images, train.labels, train.classes, train.mean, train.std)
        return splits

    monkeypatch.setattr(train_module, "load_splits", load)


@pytest.mark.parametrize("model", ["small-cnn", "resnet8"])  # resnet8: BatchNorm's statistics
def test_skip_nonfinite_skips_a_batch_holding_a_nan_pixel(tmp_path, monkeypatch, model):
    poison_one_training_image(monkeypatch)
    config = TINY.replace(model=model, loss="flsd-53", epochs=2, milestones=[],
                          skip_nonfinite=True)  # fmt: skip
    train(config, tmp_path, progress=False)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["skipped_steps"] for r in records] == [1, 1]  # the one batch holding it, each epoch
    assert all(math.isfinite(r["val_nll"]) and math.isfinite(r["train_loss"]) for r in records)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert all(bool(w.isfinite().all()) for w in state["model"].values() if w.is_floating_point())


def test_a_nan_pixel_stops_the_run_naming_the_step_and_the_last_checkpoint(tmp_path, monkeypatch):
    poison_one_training_image(monkeypatch)
    config = TINY.replace(loss="flsd-53", epochs=2, milestones=[])
    message = (r"epoch 1, step \d of the epoch: the logits hold NaN or infinite values; the batch: "
               r"64 samples, .* all finite: False, .*; the last good checkpoint is none "
               r"\(the first epoch\)")  # fmt: skip
    with pytest.raises(NonFiniteLossError, match=message):
        train(config, tmp_path, progress=False)


def test_adafocal_adapts_through_the_epoch_hook_and_resumes_exactly(tmp_path, monkeypatch):
    config = TINY.replace(loss="adafocal", milestones=[])
    train(config, tmp_path / "straight", progress=False)
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    train_interrupted_after_two_epochs(config, tmp_path / "resumed", monkeypatch)
    after_two = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    # epoch 3 started from the validation logits of the epoch-2 model, as the hook promises
    model, _ = load_model(tmp_path / "resumed", "last")
    validation = train_module.load_splits(config)["val"]
    expected = AdaFocalLoss()
    expected.load_state_dict(after_two["criterion"])
    logits = predict(model, BatchLoader(validation, config.eval_batch_size))
    expected.start_epoch(EpochStart(2, 3, logits, validation.labels))
    torch.testing.assert_close(straight["criterion"]["gammas"], expected.gammas)
    assert not torch.equal(expected.gammas, after_two["criterion"]["gammas"])  # it moved
    train(config, tmp_path / "resumed", resume=True, progress=False)
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    for key in ("model", "criterion"):
        for name, tensor in straight[key].items():
            assert torch.equal(resumed[key][name], tensor), (key, name)
