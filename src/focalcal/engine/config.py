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
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from focalcal._io import atomic_write_text, tomllib

OPTIMIZERS = ("sgd", "adam", "adagrad")
REDUCTIONS = ("mean", "sum")
PRECISIONS = ("auto", "fp32", "bf16")
PROTOCOLS = ("focalcal", "official-code")


def _integer(value: Any, low: float = -math.inf, high: float = math.inf) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value < high


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _options(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(key, str) for key in value)


# Every field: a check of its value (type and range) and what it allows, for the message.
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "dataset": (lambda v: isinstance(v, str), "a dataset name (a string)"),
    "root": (lambda v: v is None or isinstance(v, str), "a folder (a string) or None"),
    "subset": (lambda v: v is None or _integer(v, 1), "an integer >= 1 or None"),
    "val_subset": (lambda v: v is None or _integer(v, 1), "an integer >= 1 or None"),
    "dataset_options": (_options, "a table (dict) with string keys"),
    "classes": (
        lambda v: (
            v is None
            or (
                isinstance(v, list)
                and len(v) >= 2
                and all(_integer(c, 0) for c in v)
                and len(set(v)) == len(v)
            )
        ),
        "None or a list of at least two distinct class indices (integers >= 0)",
    ),
    "model": (lambda v: isinstance(v, str), "a model name (a string)"),
    "model_options": (_options, "a table (dict) with string keys"),
    "loss": (lambda v: isinstance(v, str), "a loss name (a string)"),
    "loss_options": (_options, "a table (dict) with string keys"),
    "reduction": (lambda v: v in REDUCTIONS, f"one of {REDUCTIONS}"),
    "optimizer": (lambda v: v in OPTIMIZERS, f"one of {OPTIMIZERS}"),
    "lr": (lambda v: _real(v) and v > 0, "positive (a finite number > 0)"),
    "momentum": (lambda v: _real(v) and 0 <= v < 1, "a number in [0, 1)"),
    "weight_decay": (lambda v: _real(v) and v >= 0, "a finite number >= 0"),
    "milestones": (
        lambda v: isinstance(v, list) and all(_integer(m) for m in v),
        "a list of integers (epochs)",
    ),
    "lr_decay": (lambda v: _real(v) and v > 0, "positive (a finite number > 0)"),
    "grad_clip": (
        lambda v: v is None or (_real(v) and v > 0),
        "positive (a finite number > 0) or None",
    ),
    "epochs": (lambda v: _integer(v, 1), "a positive integer"),
    "batch_size": (lambda v: _integer(v, 1), "a positive integer"),
    "augment": (lambda v: isinstance(v, bool), "true or false"),
    # The loader seeds each epoch with seed * 1_000_003 + epoch, which must stay below 2**64.
    "seed": (lambda v: _integer(v, 0, 2**32), "an integer in [0, 2**32)"),
    "device": (lambda v: isinstance(v, str), "a device name (a string)"),
    "precision": (lambda v: v in PRECISIONS, f"one of {PRECISIONS}"),
    "compile": (lambda v: isinstance(v, bool), "true or false"),
    "tensorboard": (lambda v: isinstance(v, bool), "true or false"),
    "skip_nonfinite": (lambda v: isinstance(v, bool), "true or false"),
    "eval_batch_size": (lambda v: _integer(v, 1), "a positive integer"),
    "analysis_samples": (lambda v: v is None or _integer(v, 0), "an integer >= 0 or None"),
    "protocol": (lambda v: v in PROTOCOLS, f"one of {PROTOCOLS}"),
}


DATASET_FIELDS = ("subset", "val_subset", "dataset_options", "classes")
"""The fields a preset chooses for its dataset, which another dataset does not inherit."""
MODEL_FIELDS = ("model_options",)
"""The fields a preset chooses for its model, which another model does not inherit."""


@dataclass
class TrainConfig:
    """One training run. Field by field:

    - ``dataset``, ``root``: a :func:`focalcal.data.load_dataset` name and its data folder;
      ``subset`` / ``val_subset``: keep the first N training / validation samples;
      ``dataset_options``: passed to the dataset's reader (an image folder's ``image_size``
      and ``channels``, a text dataset's ``vocabulary_size`` …); ``classes``: train, validate
      and test on these classes only (their indices in the dataset), relabelled 0, 1, … in
      the order given.
    - ``model``, ``model_options``: a :func:`focalcal.models.build_model` name and extra options.
    - ``loss``, ``loss_options``: a :func:`focalcal.losses.build_loss` name (``"flsd-53"``,
      ``"fl-3"``, ``"ls-0.05"`` …) and extra options; ``reduction`` ``"mean"`` or ``"sum"``
      (the paper sums over the batch).
    - ``optimizer`` (``sgd``, ``adam``, ``adagrad``), ``lr``, ``momentum``, ``weight_decay``,
      ``milestones`` (epochs at which the lr is multiplied by ``lr_decay``), ``grad_clip``
      (max gradient norm, ``None`` for none), ``epochs``, ``batch_size``, ``augment`` (random
      crop + flip), ``seed`` (an integer in [0, 2**32)).
    - ``device`` (``"auto"``: CUDA if available, else CPU), ``precision`` (``"auto"``: bf16
      autocast on CUDA, fp32 elsewhere), ``compile`` (``torch.compile`` the model on CUDA).
    - ``skip_nonfinite``: skip (and count, as ``skipped_steps`` in the log) a step whose loss
      is NaN or infinite instead of stopping the run (the default).
    - ``tensorboard``: also log every epoch's record to ``run_dir/tensorboard`` (needs the
      ``tensorboard`` package).
    - ``analysis_samples``: how many test samples the per-epoch analysis (test NLL of right and
      wrong predictions, entropy) reads: ``None`` all, ``0`` none.
    - ``protocol``: ``"focalcal"`` (the paper's formulas, as documented) or ``"official-code"``
      (what the paper's released code does where it differs; see docs/claims.md).
    """

    dataset: str = "fashion-mnist"
    root: str | None = None
    subset: int | None = None
    val_subset: int | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    classes: list[int] | None = None
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
    protocol: str = "focalcal"

    def __post_init__(self) -> None:
        if isinstance(self.milestones, (list, tuple)):  # a tuple from code equals a file's list
            self.milestones = list(self.milestones)
        for name, (valid, allowed) in _RULES.items():
            value = getattr(self, name)
            if not valid(value):
                raise ValueError(f"{name} must be {allowed}, got {value!r}")
        # Strictly: MultiStepLR would apply a repeated milestone's decay twice.
        if self.milestones != sorted(set(self.milestones)) or any(
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

    def retarget(
        self, dataset: str | None = None, model: str | None = None, keep: Iterable[str] = ()
    ) -> TrainConfig:
        """A copy for another ``dataset`` and/or ``model``: the fields chosen for this config's
        dataset (:data:`DATASET_FIELDS`: how many samples to keep) or model
        (:data:`MODEL_FIELDS`: its options) return to their defaults where the dataset or the
        model changes, but those named in ``keep`` (the ones a user set explicitly).

        Example:
            >>> default = TrainConfig(dataset="fashion-mnist", subset=2000, val_subset=1000)
            >>> signals = default.retarget(dataset="mnist1d")
            >>> signals.dataset, signals.subset, signals.val_subset
            ('mnist1d', None, None)
            >>> default.retarget(dataset="mnist1d", keep=["subset"]).subset
            2000
        """
        changes: dict[str, Any] = {}
        defaults = TrainConfig()
        for name, value, tied in (
            ("dataset", dataset, DATASET_FIELDS),
            ("model", model, MODEL_FIELDS),
        ):
            if value is not None and value != getattr(self, name):
                changes[name] = value
                changes.update({f: getattr(defaults, f) for f in tied if f not in keep})
        return self.replace(**changes)

    def with_epochs(self, epochs: int) -> TrainConfig:
        """A copy trained for ``epochs``, its lr milestones moved in proportion (the same
        fractions of the run, rounded half up; those that fall on the same epoch, or outside
        ``(0, epochs)``, dropped).

        Example:
            >>> TrainConfig(epochs=30, milestones=[15, 22]).with_epochs(5).milestones
            [3, 4]
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
        moved = {math.floor(m * epochs / self.epochs + 0.5) for m in self.milestones}
        return self.replace(epochs=epochs, milestones=sorted(m for m in moved if 0 < m < epochs))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the config as TOML (``.toml``) or YAML (``.yaml``/``.yml``), atomically."""
        path = Path(path)
        text = _to_yaml(self.to_dict()) if path.suffix in (".yaml", ".yml") else _to_toml(self)
        atomic_write_text(path, text)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainConfig:
        """Read a TOML or YAML config written by :meth:`save` or by hand (a ``[grid]`` table
        is :func:`load_config_file`'s, for ``reproduce``)."""
        config, grid = load_config_file(path)
        if grid:
            raise ValueError(f"{path}: its [grid] table is for focalcal reproduce, not one run")
        return config


GRID_KEYS = ("losses", "models", "datasets", "seeds", "ood")


def load_config_file(path: str | os.PathLike[str]) -> tuple[TrainConfig, dict[str, Any]]:
    """A TOML or YAML file's run fields, as a :class:`TrainConfig`, and its ``grid`` table
    (empty without one): ``losses``, ``models``, ``datasets`` and ``ood`` lists of names,
    ``seeds`` a count, as ``focalcal reproduce``'s flags of those names take them.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "grid.toml"
        ...     _ = path.write_text('epochs = 3\\n[grid]\\nlosses = ["ce", "flsd-53"]\\n')
        ...     config, grid = load_config_file(path)
        >>> config.epochs, grid
        (3, {'losses': ['ce', 'flsd-53']})
    """
    path = Path(path)
    text = path.read_text()
    try:
        yaml = path.suffix in (".yaml", ".yml")
        values = _from_yaml(text) if yaml else tomllib.loads(text)
    except ValueError as error:  # TOMLDecodeError is one; YAML errors become one
        raise ValueError(f"{path}: not a readable config ({error})") from error
    grid = values.pop("grid", {})
    if not isinstance(grid, dict):
        raise ValueError(f"{path}: grid must be a table, got {type(grid).__name__}")
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown grid keys {unknown}; known: {', '.join(GRID_KEYS)}")
    for key, value in grid.items():
        names = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if key != "seeds" and not names:
            raise ValueError(f"{path}: grid.{key} must be a list of names, got {value!r}")
        if key == "seeds" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{path}: grid.seeds must be an integer >= 1, got {value!r}")
    return TrainConfig.from_dict(values), grid


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
    """``ValueError`` for an unknown dataset, model or loss, a loss option the loss refuses
    (γ < 0, say), or a device this machine or torch build cannot use: the checks a run would
    otherwise fail on only after it started."""
    from focalcal.data.registry import dataset_entry
    from focalcal.losses import build_loss
    from focalcal.models import model_constructor

    dataset_entry(config.dataset)  # a registered name, or an arrays file that exists
    model_constructor(config.model)  # a registered name, or module:callable that imports
    build_loss(config.loss, **config.loss_options)
    check_device(config.device)


def check_device(name: str) -> None:
    """``ValueError`` unless ``name`` is ``"auto"``, ``"cpu"`` or a device of a type and index
    that this machine's torch can use (``"cuda"``, ``"cuda:1"``, ``"mps"`` …).

    >>> check_device("cpu")
    """
    import torch

    if name in ("auto", "cpu"):
        return
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(
            f"device must be 'auto', 'cpu' or a torch device such as 'cuda:0', got {name!r}"
        ) from None
    if device.type == "cpu":
        return
    backend: Any = getattr(torch, device.type, None)  # torch.cuda, torch.mps, torch.xpu …
    usable = hasattr(backend, "is_available") and backend.is_available()
    count = int(backend.device_count()) if usable else 0
    if count == 0 or (device.index or 0) >= count:
        raise ValueError(
            f"device {name!r} is not available here: this torch has {count} {device.type} "
            "device(s); use device=auto or device=cpu"
        )
