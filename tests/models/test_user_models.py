"""Your own models: register_model from code, and module:callable from the command line."""

import json
import shutil
import subprocess
import textwrap

import pytest
import torch
from torch import nn

from focalcal.engine.config import TrainConfig
from focalcal.models import build_model, model_constructor, register_model
from focalcal.models import registry as models_registry

NETS = textwrap.dedent(
    """
    import torch

    def tiny(num_classes, in_channels, image_size):  # the three sizes, by name
        return torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(in_channels * image_size**2, num_classes)
        )

    def classes_only(num_classes, hidden=8):  # takes what it names: the rest is not passed
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(hidden),
                                   torch.nn.ReLU(), torch.nn.Linear(hidden, num_classes))

    not_a_model = 3
    """
)


def test_register_model_builds_with_only_the_sizes_it_takes(monkeypatch):
    monkeypatch.setattr(models_registry, "_MODELS", dict(models_registry._MODELS))  # undone
    seen = {}

    def factory(num_classes, image_size):
        seen.update(num_classes=num_classes, image_size=image_size)
        return nn.Linear(image_size, num_classes)

    register_model("test-linear", factory)
    model = build_model("test-linear", num_classes=3, in_channels=1, image_size=5)
    assert seen == {"num_classes": 3, "image_size": 5}
    assert model(torch.zeros(2, 5)).shape == (2, 3)
    with pytest.raises(ValueError, match="a model named 'test-linear' is already registered"):
        register_model("test-linear", factory)
    with pytest.raises(ValueError, match="lower case, without ':'"):
        register_model("Mine:net", factory)
    register_model("test-not-a-module", lambda num_classes: "a string")
    with pytest.raises(ValueError, match=r"built a str, not a torch nn\.Module"):
        build_model("test-not-a-module", num_classes=2)


def test_module_callable_names_are_imported(tmp_path, monkeypatch):
    (tmp_path / "focalcal_test_nets.py").write_text(NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    model = build_model("focalcal_test_nets:classes_only", num_classes=4, hidden=6)
    assert model(torch.zeros(2, 1, 3, 3)).shape == (2, 4)
    cases = {
        "focalcal_no_such_module:net": "cannot import focalcal_no_such_module",
        "focalcal_test_nets:missing": "focalcal_test_nets has no callable 'missing'",
        "focalcal_test_nets:not_a_model": "has no callable 'not_a_model'",
    }
    for name, message in cases.items():
        with pytest.raises(ValueError, match=message):
            model_constructor(name)


@pytest.mark.skipif(shutil.which("focalcal") is None, reason="the console script is installed")
def test_the_command_line_trains_and_evaluates_a_model_of_the_current_folder(tmp_path):
    """`focalcal` (the console script, whose sys.path lacks the current folder) finds a
    module there, as `python -m focalcal` does; evaluation rebuilds the model from its name."""
    (tmp_path / "mynets.py").write_text(NETS)

    def focalcal(*args):
        return subprocess.run(["focalcal", *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)  # fmt: skip

    trained = focalcal("train", "run", "--dataset", "digits", "--model", "mynets:tiny",
                       "--epochs", "2", "--quiet")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["epochs"] == 2
    assert TrainConfig.load(tmp_path / "run" / "config.toml").model == "mynets:tiny"
    evaluated = focalcal("evaluate", "run")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "mynets:tiny" in evaluated.stdout
    bad = focalcal("train", "run2", "--dataset", "digits", "--model", "mynets:nothing")
    assert bad.returncode == 2
    assert bad.stderr.strip().endswith("mynets has no callable 'nothing'")
    assert not (tmp_path / "run2").exists()


def test_the_mlp_has_the_parameter_count_the_docs_give():
    model = build_model("mlp", num_classes=3, in_channels=5, image_size=1)
    assert (
        sum(p.numel() for p in model.parameters()) == 5 * 128 + 128 + 128 * 128 + 128 + 128 * 3 + 3
    )
    assert sum(p.numel() for p in model.parameters()) == 17_667
    with pytest.raises(ValueError, match="depth must be an integer >= 0, got -1"):
        build_model("mlp", num_classes=3, in_channels=5, image_size=1, depth=-1)
