"""TrainConfig: checked values, TOML/YAML round trips, the paper presets."""

import dataclasses
import math
import re

import pytest
import torch

from focalcal.cli import main
from focalcal.engine.checkpoint import load_checkpoint, save_checkpoint
from focalcal.engine.config import _RULES, TrainConfig, check_device, check_names
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
        ({"milestones": [5, 5]}, "milestones must be increasing"),  # MultiStepLR: decays twice
        ({"milestones": 5}, r"milestones must be a list of integers \(epochs\), got 5"),
        ({"milestones": [2.5]}, "milestones must be a list of integers"),
        ({"milestones": [True]}, "milestones must be a list of integers"),
        ({"lr": 0.0}, r"lr must be positive \(a finite number > 0\), got 0\.0"),
        ({"lr": True}, r"lr must be positive \(a finite number > 0\), got True"),
        ({"lr": "abc"}, r"lr must be positive \(a finite number > 0\), got 'abc'"),
        ({"lr": math.inf}, r"lr must be positive \(a finite number > 0\), got inf"),
        ({"momentum": -1}, r"momentum must be a number in \[0, 1\), got -1"),
        ({"momentum": 1.0}, r"momentum must be a number in \[0, 1\), got 1\.0"),
        ({"momentum": math.nan}, "momentum must be a number in .*, got nan"),
        ({"weight_decay": math.nan}, "weight_decay must be a finite number >= 0, got nan"),
        ({"weight_decay": -1e-4}, "weight_decay must be a finite number >= 0"),
        ({"lr_decay": math.nan}, r"lr_decay must be positive \(a finite number > 0\), got nan"),
        ({"lr_decay": 0}, r"lr_decay must be positive \(a finite number > 0\), got 0"),
        ({"grad_clip": -1.0}, r"grad_clip must be positive \(a finite number > 0\) or None"),
        ({"grad_clip": math.inf}, r"grad_clip must be positive .* or None, got inf"),
        ({"subset": 0}, "subset must be an integer >= 1"),
        ({"subset": True}, "subset must be an integer >= 1 or None, got True"),
        ({"val_subset": 2.0}, "val_subset must be an integer >= 1 or None, got 2.0"),
        ({"analysis_samples": -1}, "analysis_samples must be an integer >= 0 or None"),
        ({"batch_size": 1.5}, "batch_size must be a positive integer, got 1.5"),
        ({"eval_batch_size": False}, "eval_batch_size must be a positive integer, got False"),
        ({"seed": "abc"}, r"seed must be an integer in \[0, 2\*\*32\), got 'abc'"),
        ({"seed": -1}, "seed must be an integer in"),
        ({"seed": 2**32}, "seed must be an integer in"),
        ({"seed": 1.0}, "seed must be an integer in"),
        ({"dataset": 3}, "dataset must be a dataset name"),
        ({"root": 3}, r"root must be a folder \(a string\) or None, got 3"),
        ({"model": ["small-cnn"]}, "model must be a model name"),
        ({"loss": None}, "loss must be a loss name"),
        ({"device": 0}, "device must be a device name"),
        ({"model_options": [1]}, "model_options must be a table"),
        ({"loss_options": {1: 2.0}}, r"loss_options must be a table \(dict\) with string keys"),
        ({"precision": "fp16"}, "precision must be one of"),
        ({"augment": 1}, "augment must be true or false, got 1"),
        ({"compile": "yes"}, "compile must be true or false"),
        ({"tensorboard": 0}, "tensorboard must be true or false"),
        ({"skip_nonfinite": None}, "skip_nonfinite must be true or false"),
        ({"colour": "blue"}, r"unknown config keys \['colour'\]"),
    ],
)
def test_bad_values_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig().replace(**changes)


def test_every_field_has_a_check():
    assert list(_RULES) == [f.name for f in dataclasses.fields(TrainConfig)]


def test_good_values_at_the_edges_are_kept():
    config = TrainConfig(lr=1, momentum=0, weight_decay=0, lr_decay=2, grad_clip=1, seed=2**32 - 1,
                         milestones=(3, 7), epochs=10, analysis_samples=0, root="data",
                         loss_options={"gamma": 3})  # fmt: skip
    assert (config.lr, config.momentum, config.weight_decay, config.seed) == (1, 0, 0, 2**32 - 1)
    assert config.milestones == [3, 7]  # a tuple from code becomes the list a file gives


def test_the_largest_seed_seeds_every_epoch_of_the_loader():
    from focalcal.data.dataset import Dataset
    from focalcal.data.loader import BatchLoader

    data = Dataset(torch.zeros(4, 1, 4, 4, dtype=torch.uint8), torch.arange(4) % 2, ("a", "b"))
    loader = BatchLoader(data, batch_size=2, shuffle=True, augment=True,
                         seed=TrainConfig(seed=2**32 - 1).seed)  # fmt: skip
    assert sum(len(labels) for _, labels in loader) == 4


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "cuda:-1", "CUDA", "", "cuda:0 "])
def test_malformed_devices_are_refused(name):
    with pytest.raises(
        ValueError, match="device must be 'auto', 'cpu' or a torch device.*" + re.escape(repr(name))
    ):
        check_device(name)


def test_devices_this_machine_lacks_are_refused_and_its_own_kept():
    check_device("auto")
    check_device("cpu")
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for index in range(cuda):
        check_device(f"cuda:{index}")
    with pytest.raises(ValueError, match=f"'cuda:{cuda}' is not available here.*{cuda} cuda"):
        check_device(f"cuda:{cuda}")
    if not torch.mps.is_available():
        with pytest.raises(ValueError, match="'mps' is not available here"):
            check_device("mps")
    with pytest.raises(ValueError, match="'meta' is not available here"):
        check_device("meta")
    with pytest.raises(ValueError, match="device 'cuda:99' is not available"):
        check_names(TrainConfig(device="cuda:99"))


BAD_SETTINGS = [
    (["--set", "lr=true"], "lr must be positive (a finite number > 0), got True"),
    (["--set", "lr=abc"], "lr must be positive (a finite number > 0), got 'abc'"),
    (["--set", "weight_decay=nan"], "weight_decay must be a finite number >= 0, got nan"),
    (["--set", "lr_decay=nan"], "lr_decay must be positive (a finite number > 0), got nan"),
    (["--set", "momentum=-1"], "momentum must be a number in [0, 1), got -1"),
    (["--set", "seed=abc"], "seed must be an integer in [0, 2**32), got 'abc'"),
    (["--set", "device=cuda:99"], "device 'cuda:99' is not available here"),
    (["--device", "gpu"], "device must be 'auto', 'cpu' or a torch device"),
]
if not torch.cuda.is_available():
    BAD_SETTINGS.append((["--set", "device=cuda"], "device 'cuda' is not available here"))


@pytest.mark.parametrize(
    ("flags", "message"), BAD_SETTINGS, ids=[" ".join(f) for f, _ in BAD_SETTINGS]
)
def test_cli_refuses_bad_values_before_making_the_run_directory(flags, message, tmp_path, capsys):
    run_dir = tmp_path / "run"
    # Should the value be accepted after all, the run is short.
    small = ["--epochs", "1", "--subset", "8", "--set", "val_subset=8", "--set", "milestones=[]"]
    assert main(["train", str(run_dir), "--quiet", *small, *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("focalcal train: error: ")
    assert message in err
    assert not run_dir.exists()


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


def test_with_epochs_moves_the_milestones_in_proportion():
    base = TrainConfig(epochs=30, milestones=[15, 22])
    assert base.with_epochs(60).milestones == [30, 44]
    assert base.with_epochs(5).milestones == [3, 4]  # 2.5 and 3.67, rounded half up
    assert base.with_epochs(2).milestones == [1]  # both land on epoch 1: one milestone
    assert base.with_epochs(1).milestones == []  # none inside (0, 1)
    assert base.with_epochs(30) == base
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        base.with_epochs(0)
