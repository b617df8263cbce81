"""``TrainConfig``: every hyperparameter of a run in one plain structure, saved with the run.

Configs load from and save to TOML (standard library) or YAML (with PyYAML installed):

    dataset = "cifar10"
    model = "resnet50"
    loss = "flsd-53"
    epochs = 350
    milestones = [150, 250]
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from focalcal._io import atomic_write_text, tomllib

OPTIMIZERS = ("sgd", "adam", "adagrad")
REDUCTIONS = ("mean", "sum")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainConfig:
    """One training run. Field by field:

    - ``dataset``, ``root``: a :func:`focalcal.data.load_dataset` name and its data folder;
      ``subset`` / ``val_subset``: keep the first N training / validation samples.
    - ``model``, ``model_options``: a :func:`focalcal.models.build_model` name and extra options.
    - ``loss``, ``loss_options``: a :func:`focalcal.losses.build_loss` name (``"flsd-53"``,
      ``"fl-3"``, ``"ls-0.05"`` …) and extra options; ``reduction`` ``"mean"`` or ``"sum"``
      (the paper sums over the batch).
    - ``optimizer`` (``sgd``, ``adam``, ``adagrad``), ``lr``, ``momentum``, ``weight_decay``,
      ``milestones`` (epochs at which the lr is multiplied by ``lr_decay``), ``grad_clip``
      (max gradient norm, ``None`` for none), ``epochs``, ``batch_size``, ``augment`` (random
      crop + flip), ``seed``.
    - ``device`` (``"auto"``: CUDA if available, else CPU), ``precision`` (``"auto"``: bf16
      autocast on CUDA, fp32 elsewhere), ``compile`` (``torch.compile`` the model on CUDA).
    - ``skip_nonfinite``: skip (and count, as ``skipped_steps`` in the log) a step whose loss
      is NaN or infinite instead of stopping the run (the default).
    - ``tensorboard``: also log every epoch's record to ``run_dir/tensorboard`` (needs the
      ``tensorboard`` package).
    - ``analysis_samples``: how many test samples the per-epoch analysis (test NLL of right and
      wrong predictions, entropy) reads: ``None`` all, ``0`` none.
    """

    dataset: str = "fashion-mnist"
    root: str | None = None
    subset: int | None = None
    val_subset: int | None = None
    model: str = "small-cnn"
    model_options: dict[str, Any] = field(default_factory=dict)
    loss: str = "ce"
    loss_options: dict[str, Any] = field(default_factory=dict)
    reduction: str = "mean"
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: list[int] = field(default_factory=list)
    lr_decay: float = 0.1
    grad_clip: float | None = None
    epochs: int = 30
    batch_size: int = 128
    augment: bool = False
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    tensorboard: bool = False
    skip_nonfinite: bool = False
    eval_batch_size: int = 256  # on a CPU, batches of a few hundred beat 1 000 (cache)
    analysis_samples: int | None = None

    def __post_init__(self) -> None:
        self.milestones = list(self.milestones)  # a tuple from code equals the list from a file
        choices = {"optimizer": OPTIMIZERS, "reduction": REDUCTIONS, "precision": PRECISIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("subset", "val_subset", "analysis_samples"):
            value = getattr(self, name)
            low = 0 if name == "analysis_samples" else 1
            if value is not None and (not isinstance(value, int) or value < low):
                raise ValueError(f"{name} must be an integer >= {low} or None, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip!r}")
        if sorted(self.milestones) != list(self.milestones) or any(
            not 0 < m < self.epochs for m in self.milestones
        ):
            raise ValueError(
                f"milestones must be increasing epochs in (0, {self.epochs}), got {self.milestones}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from a mapping; unknown keys are an error that names them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known: {sorted(known)}")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (and checked)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the config as TOML (``.toml``) or YAML (``.yaml``/``.yml``), atomically."""
        path = Path(path)
        text = _to_yaml(self.to_dict()) if path.suffix in (".yaml", ".yml") else _to_toml(self)
        atomic_write_text(path, text)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainConfig:
        """Read a TOML or YAML config written by :meth:`save` or by hand."""
        path = Path(path)
        text = path.read_text()
        try:
            yaml = path.suffix in (".yaml", ".yml")
            values = _from_yaml(text) if yaml else tomllib.loads(text)
        except ValueError as error:  # TOMLDecodeError is one; YAML errors become one
            raise ValueError(f"{path}: not a readable config ({error})") from error
        return cls.from_dict(values)


def _toml_value(value: Any) -> str:
    # JSON's strings, numbers, booleans and arrays are TOML's; tables are written inline.
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
        )
    return json.dumps(value)


def _to_toml(config: TrainConfig) -> str:
    # TOML has no null: an unset option (None) is left out and takes its default on loading.
    lines = [f"{k} = {_toml_value(v)}" for k, v in config.to_dict().items() if v is not None]
    return "\n".join(lines) + "\n"


def _yaml_module() -> Any:
    try:
        import yaml
    except ImportError:
        raise ValueError("YAML configs need PyYAML: `pip install pyyaml` (or use .toml)") from None
    return yaml


def _to_yaml(values: dict[str, Any]) -> str:
    return str(_yaml_module().safe_dump(values, sort_keys=False))


def _from_yaml(text: str) -> dict[str, Any]:
    yaml = _yaml_module()
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(str(error)) from error
    if not isinstance(values, dict):
        raise ValueError("a config must be a mapping of keys to values")
    return values


def check_names(config: TrainConfig) -> None:
    """``ValueError`` for an unknown dataset, model or loss, or a loss option the loss refuses
    (γ < 0, say): the checks a run would otherwise fail on only after it started."""
    from focalcal.data import dataset_names
    from focalcal.losses import build_loss
    from focalcal.models import model_names

    if config.dataset not in dataset_names():
        raise ValueError(f"unknown dataset {config.dataset!r}; known: {', '.join(dataset_names())}")
    if config.model.strip().lower() not in model_names():  # as build_model reads it
        raise ValueError(f"unknown model {config.model!r}; known: {', '.join(model_names())}")
    build_loss(config.loss, **config.loss_options)
