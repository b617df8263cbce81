"""``protocol="official-code"``: the lr timing, reductions, clipping and loss options the
paper's released code trains with; the default protocol trains the config as written."""

import pytest
import torch

from focalcal.engine import train as train_module
from focalcal.engine.config import TrainConfig
from focalcal.engine.protocol import apply_protocol
from focalcal.engine.train import read_history, train
from focalcal.losses import LabelSmoothingLoss
from tests.engine.test_train import train_interrupted_after_two_epochs

TINY = TrainConfig(dataset="digits", subset=128, val_subset=64, epochs=4, milestones=[2],
                   batch_size=64, analysis_samples=0, loss="ls-0.05", device="cpu")  # fmt: skip


def test_the_default_protocol_changes_nothing():
    for config in (TINY, TINY.replace(loss="brier", reduction="sum", grad_clip=None)):
        assert apply_protocol(config) is config


@pytest.mark.parametrize(
    ("loss", "reduction", "options"),
    [
        ("ce", "sum", {}),
        ("fl-3", "sum", {}),
        ("flsd-53", "sum", {}),
        ("brier", "mean", {}),
        ("ls-0.05", "sum", {"spread": "others"}),
        ("mmce", "sum", {"form": "official-code"}),
        ("mmce-weighted", "sum", {"form": "official-code"}),
    ],
)
def test_official_code_sums_every_loss_but_brier_and_clips_at_2(loss, reduction, options):
    for asked in ("mean", "sum"):
        config = TINY.replace(loss=loss, reduction=asked, protocol="official-code")
        used = apply_protocol(config)
        assert (used.reduction, used.grad_clip, used.loss_options) == (reduction, 2.0, options)
        assert used.replace(reduction=asked, grad_clip=None, loss_options={}) == config


def test_official_code_keeps_an_explicit_clip_and_loss_option():
    config = TINY.replace(protocol="official-code", grad_clip=5.0, loss_options={"spread": "all"})
    used = apply_protocol(config)
    assert (used.grad_clip, used.loss_options) == (5.0, {"spread": "all"})


def logged_rates_and_steps(config, run_dir, monkeypatch):
    """The lr of every epoch in the run's log, and what each epoch's steps trained with."""
    seen = []
    epoch, clip = train_module.train_epoch, torch.nn.utils.clip_grad_norm_

    def spy_epoch(model, criterion, optimizer, batches, used, autocast=None):
        seen.append((criterion, used.reduction, used.grad_clip))
        return epoch(model, criterion, optimizer, batches, used, autocast)

    def spy_clip(parameters, max_norm, *args, **kwargs):
        seen.append(("clip", max_norm))
        return clip(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_epoch", spy_epoch)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy_clip)
    train(config, run_dir, progress=False)
    return [record["lr"] for record in read_history(run_dir)], seen


def test_the_lr_drops_an_epoch_early_under_official_code(tmp_path, monkeypatch):
    # The log's lr is the one each epoch trained with; milestone 2 of 4 epochs.
    rates, seen = logged_rates_and_steps(TINY, tmp_path / "focalcal", monkeypatch)
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.01])
    criterion, reduction, grad_clip = seen[0]
    used = (criterion.spread, criterion.reduction, reduction, grad_clip)
    assert used == ("all", "mean", "mean", None)
    assert not [s for s in seen if s[0] == "clip"]

    official = TINY.replace(protocol="official-code")
    rates, seen = logged_rates_and_steps(official, tmp_path / "official", monkeypatch)
    assert rates == pytest.approx([0.1, 0.01, 0.01, 0.01])
    epochs = [s for s in seen if s[0] != "clip"]
    assert len(epochs) == 4
    for criterion, reduction, grad_clip in epochs:
        assert isinstance(criterion, LabelSmoothingLoss)
        used = (criterion.spread, criterion.reduction, reduction, grad_clip)
        assert used == ("others", "sum", "sum", 2.0)
    clips = [s[1] for s in seen if s[0] == "clip"]
    assert clips == [2.0] * (4 * 2)  # 128 samples in batches of 64, 4 epochs
    # The run's config is the one asked for; the protocol is applied anew on resuming.
    assert TrainConfig.load(tmp_path / "official" / "config.toml") == official


def test_a_resumed_official_code_run_keeps_its_lr_schedule(tmp_path, monkeypatch):
    official = TINY.replace(protocol="official-code", loss="brier")
    train_interrupted_after_two_epochs(official, tmp_path, monkeypatch)
    train(official, tmp_path, resume=True, progress=False)
    rates = [record["lr"] for record in read_history(tmp_path)]
    assert rates == pytest.approx([0.1, 0.01, 0.01, 0.01])
