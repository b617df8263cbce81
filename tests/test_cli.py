"""The command line: exit codes, one-line errors, train and list."""

import json
import subprocess
import sys

import pytest

from focalcal.cli import main
from focalcal.engine.config import TrainConfig


def test_gamma_prints_the_lambert_w_gamma(capsys):
    assert main(["gamma", "--p0", "0.2"]) == 0
    assert capsys.readouterr().out.strip() == "4.85055"


def test_list_names_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("flsd-53", "resnet110", "cifar10-c", "paper-cifar10"):
        assert word in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["gamma", "--p0", "0.7"], "p0 must lie in (0, 0.5)"),
        (["train", "RUN", "--set", "lr=-1"], "lr must be positive"),
        (["train", "RUN", "--set", "lr"], "--set expects key=value"),
        (["train", "RUN", "--preset", "imagenet"], "unknown preset 'imagenet'"),
        (["train", "RUN", "--set", "colour=1"], "unknown config keys"),
        (["train", "RUN", "--loss", "fl-2.5x"], "loss 'fl-2.5x': '2.5x' is not a number"),
        (["train", "RUN", "--loss", "focal"], "unknown loss 'focal'"),
        (
            ["train", "RUN", "--loss", "flsd53"],
            "loss 'flsd53' (did you mean 'flsd-53'?); known: ce,",
        ),
        (
            ["reproduce", "--losses", "ce", "flsd_53"],
            "unknown loss 'flsd_53' (did you mean 'flsd-53'?)",
        ),
        (["train", "RUN", "--preset", "paper_cifar10"], "(did you mean 'paper-cifar10'?)"),
        (["train", "RUN", "--loss", "fl--1"], "gamma must be a finite float >= 0, got -1.0"),
        (
            ["train", "RUN", "--model", "resnet-9"],
            "model 'resnet-9' (did you mean 'resnet8'?); known: ",
        ),
        (
            ["train", "RUN", "--dataset", "cifar11"],
            "dataset 'cifar11' (did you mean 'cifar10'?); known:",
        ),
        (["reproduce", "--dataset", "cifar11"], "unknown dataset 'cifar11'"),
        (
            ["train", "RUN", "--dataset", "mnist1d", "--model", "small-cnn"],
            "model 'small-cnn' does not fit dataset 'mnist1d' (inputs (1, 40))",
        ),
        (
            ["reproduce", "--datasets", "digits", "mnist1d", "--losses", "ce"],
            "model 'small-cnn' does not fit dataset 'mnist1d'",
        ),
        (["evaluate", "RUN", "--ood", "svhm"], "(did you mean 'svhn'?)"),
    ],
)
def test_bad_values_exit_2_with_one_line(argv, message, capsys, tmp_path):
    argv = [str(tmp_path / a) if a == "RUN" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "RUN").exists()  # refused before a run directory is made


def test_bad_flags_exit_2_from_argparse():
    result = subprocess.run([sys.executable, "-m", "focalcal", "train"], capture_output=True,
                            text=True)  # fmt: skip
    assert result.returncode == 2 and "run_dir" in result.stderr


@pytest.mark.parametrize("command", ["train RUN", "evaluate RUN", "reproduce", "list"])
def test_an_unknown_flag_shows_its_commands_usage(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([*command.split(), "--colour"])
    err = capsys.readouterr().err
    name = command.split()[0]
    assert stop.value.code == 2 and f"usage: focalcal {name} " in err
    assert f"focalcal {name}: error: unrecognized arguments: --colour" in err


def test_a_failing_run_exits_1_with_one_line(capsys, tmp_path):
    argv = ["train", str(tmp_path / "run"), "--dataset", "cifar10", "--set", "root='/nowhere'"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "FileNotFoundError" in err and "cifar-10-python.tar.gz" in err
    assert err.count("\n") == 1


def test_train_applies_flags_and_overrides(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", str(run), "--subset", "128", "--epochs", "1", "--quiet", "--loss", "fl-3"]
    argv += ["--set", "val_subset=64", "--set", "analysis_samples=0", "--set", "milestones=[]"]
    assert main(argv) == 0
    config = TrainConfig.load(run / "config.toml")
    assert (config.subset, config.epochs, config.loss, config.val_subset) == (128, 1, "fl-3", 64)
    assert json.loads(capsys.readouterr().out)["epochs"] == 1


def test_epochs_moves_the_presets_milestones_unless_they_are_set(tmp_path, capsys):
    assert main(["train", str(tmp_path / "a"), "--epochs", "5"]) == 0  # preset: [15, 22] of 30
    assert TrainConfig.load(tmp_path / "a" / "config.toml").milestones == [3, 4]
    captured = capsys.readouterr()
    assert captured.out.count("\nepoch ") == 4 and captured.out.startswith("epoch 1/5: loss")
    assert captured.err.strip() == f"next: focalcal evaluate {tmp_path / 'a'}"
    small = ["--subset", "128", "--set", "val_subset=64", "--set", "analysis_samples=0", "--quiet"]
    argv = ["train", str(tmp_path / "b"), "--epochs", "3", "--set", "milestones=[2]", *small]
    assert main(argv) == 0
    assert TrainConfig.load(tmp_path / "b" / "config.toml").milestones == [2]


def test_another_dataset_and_model_do_not_inherit_the_presets_subset_and_options(tmp_path):
    """The default preset keeps 2 000 training and 1 000 validation images and a small CNN of
    width 24: none of it fits MNIST-1D (400 validation signals) or cnn1d (no width option),
    and its default OOD set (noise on images) fits no signal. From flags alone, it runs."""
    out = tmp_path / "out"
    argv = ["reproduce", "--dataset", "mnist1d", "--model", "cnn1d", "--losses", "ce", "flsd-53",
            "--epochs", "3", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    for loss in ("ce", "flsd-53"):
        run = out / "runs" / "mnist1d" / "cnn1d" / loss
        config = TrainConfig.load(run / "config.toml")
        assert (config.subset, config.val_subset, config.model_options) == (None, None, {})
        assert config.milestones == [2]  # the preset's [15, 22] of 30 epochs, moved to 3
        assert json.loads((run / "evaluation.json").read_text())["ood"] == {}
    # an explicit subset is kept for the other dataset; digits has 1 294 training images
    argv = ["train", str(tmp_path / "digits"), "--dataset", "digits", "--epochs", "1",
            "--set", "val_subset=100", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    config = TrainConfig.load(tmp_path / "digits" / "config.toml")
    assert (config.subset, config.val_subset, config.model_options) == (None, 100, {"width": 24})


def test_reproduce_runs_the_grid_table_of_a_config_file(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(
        'dataset = "digits"\nsubset = 256\nval_subset = 128\nepochs = 1\nanalysis_samples = 0\n'
        '[grid]\nlosses = ["ce", "fl-3"]\nseeds = 2\nood = []\n'
    )
    out = tmp_path / "out"
    assert main(["reproduce", "--config", str(path), "--out", str(out), "--quiet"]) == 0
    runs = sorted(str(p.parent.relative_to(out / "runs")) for p in out.rglob("evaluation.json"))
    assert runs == [f"digits/small-cnn/{loss}/seed-{seed}" for loss in ("ce", "fl-3")
                    for seed in (0, 1)]  # fmt: skip
    evaluation = json.loads((out / "runs" / runs[0] / "evaluation.json").read_text())
    assert evaluation["ood"] == {}
    # flags win over the table; train refuses a file with a grid
    assert main(["reproduce", "--config", str(path), "--out", str(tmp_path / "o2"),
                 "--losses", "ce", "--seeds", "1", "--quiet"]) == 0  # fmt: skip
    assert [p.name for p in (tmp_path / "o2" / "runs" / "digits" / "small-cnn").iterdir()] == ["ce"]
    assert main(["train", str(tmp_path / "run"), "--config", str(path)]) == 2


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[grid]\nloss = ["ce"]\n', "unknown grid keys ['loss']"),
        ('[grid]\nlosses = "ce"\n', "grid.losses must be a list of names"),
        ("[grid]\nseeds = 0\n", "grid.seeds must be an integer >= 1"),
        ('grid = "x"\n', "grid must be a table"),
    ],
)
def test_a_bad_grid_table_exits_2_naming_it(tmp_path, capsys, table, message):
    path = tmp_path / "grid.toml"
    path.write_text('dataset = "digits"\n' + table)
    assert main(["reproduce", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_every_option_has_help_with_its_default():
    from focalcal.cli import parser

    (commands,) = (a for a in parser()._actions if a.dest == "command")
    missing = []
    for name, command in commands.choices.items():
        for action in command._actions:
            if action.dest in ("help",) or not action.option_strings:
                continue
            text = action.help or ""
            if not (
                action.required or "default" in text or "required" in text or "with --apply" in text
            ):
                missing.append(f"{name} {action.option_strings[0]}: {text!r}")
    assert missing == []


def test_evaluate_refuses_heldout_for_a_run_that_keeps_every_class(tmp_path, capsys):
    TrainConfig(dataset="digits").save(tmp_path / "config.toml")
    assert main(["evaluate", str(tmp_path), "--ood", "heldout"]) == 2
    assert "this run keeps every class" in capsys.readouterr().err
