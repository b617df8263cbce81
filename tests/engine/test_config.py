"""TrainConfig: checked values, TOML/YAML round trips, the paper presets."""

import pytest

from focalcal.engine.checkpoint import load_checkpoint, save_checkpoint
from focalcal.engine.config import TrainConfig
from focalcal.experiments.presets import PRESETS, preset


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_configs_round_trip(tmp_path, suffix):
    config = TrainConfig(loss="ls-0.05", milestones=[3, 7], epochs=10, grad_clip=2.0,
                         loss_options={"lam": 2.0}, subset=None)  # fmt: skip
    config.save(tmp_path / f"config{suffix}")
    assert TrainConfig.load(tmp_path / f"config{suffix}") == config
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"reduction": "none"}, "reduction must be one of"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"milestones": [5, 40]}, "milestones must be increasing epochs in"),
        ({"milestones": [20, 10]}, "milestones must be increasing"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"grad_clip": -1.0}, "grad_clip must be positive"),
        ({"subset": 0}, "subset must be an integer >= 1"),
        ({"colour": "blue"}, r"unknown config keys \['colour'\]"),
    ],
)
def test_bad_values_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig().replace(**changes)


def test_unreadable_config_file_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("epochs = [")
    with pytest.raises(ValueError, match=r"bad\.toml: not a readable config"):
        TrainConfig.load(path)


def test_paper_cifar_presets_are_the_protocol_of_the_design():
    for name in ("paper-cifar10", "paper-cifar100"):
        config = PRESETS[name]
        assert (config.optimizer, config.lr, config.momentum, config.weight_decay) == (
            "sgd", 0.1, 0.9, 5e-4)  # fmt: skip
        assert (config.milestones, config.lr_decay, config.epochs) == ([150, 250], 0.1, 350)
        assert (config.batch_size, config.reduction, config.grad_clip) == (128, "sum", 2.0)
        assert config.augment and config.model == "resnet50"
    tiny = PRESETS["paper-tiny-imagenet"]
    assert (tiny.model, tiny.epochs, tiny.milestones, tiny.batch_size) == (
        "resnet50-tiny", 100, [40, 60], 64)  # fmt: skip
    with pytest.raises(ValueError, match="unknown preset"):
        preset("paper-imagenet")


def test_checkpoints_are_atomic_and_refuse_code(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"epoch": 3, "values": [1.0, 2.0]})
    assert load_checkpoint(path) == {"epoch": 3, "values": [1.0, 2.0]}
    assert not list(tmp_path.glob("*.part"))
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ValueError, match=r"c\.pt: not a loadable checkpoint"):
        load_checkpoint(path)

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    import torch

    torch.save({"model": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"evil\.pt: not a loadable checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_checkpoints_carry_a_sha256_of_their_content(tmp_path):
    import torch

    state = {"model": {"w": torch.randn(3, 3), "b": torch.zeros(2, dtype=torch.bfloat16)},
             "config": {"lr": 0.1, "milestones": [2]}, "epoch": 1}  # fmt: skip
    path = save_checkpoint(tmp_path / "c.pt", state)
    assert load_checkpoint(path)["config"] == state["config"]
    for change in (
        lambda raw: raw["model"]["w"].add_(1e-6),  # a weight
        lambda raw: raw["config"].update(lr=0.2),  # the config it was trained with
        lambda raw: raw.pop("sha256"),  # a checkpoint from elsewhere
    ):
        raw = torch.load(path, weights_only=True)
        change(raw)
        torch.save(raw, tmp_path / "changed.pt")
        with pytest.raises(
            ValueError, match=r"changed\.pt: (its SHA-256 does not match|carries no)"
        ):
            load_checkpoint(tmp_path / "changed.pt")
