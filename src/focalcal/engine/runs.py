"""A run's data and model as its config describes them: the splits it reads, the model sized
for them, and the model of a saved checkpoint (checked to be this run's)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from focalcal.data import Dataset, load_dataset
from focalcal.engine.checkpoint import load_checkpoint
from focalcal.engine.config import TrainConfig
from focalcal.models import build_model


def load_split(config: TrainConfig, split: str) -> Dataset:
    """One split of the run's data as configured (dataset, root, subset, dataset options, and
    ``classes``: only those classes, relabelled 0, 1, …; a class index out of range is a
    ``ValueError`` naming it)."""
    subset = {"train": config.subset, "val": config.val_subset}.get(split)
    return load_dataset(
        config.dataset, config.root, split, subset=subset, classes=config.classes,
        **config.dataset_options,
    )  # fmt: skip


def load_splits(config: TrainConfig) -> dict[str, Dataset]:
    """The run's ``train``, ``val`` and ``test`` splits (:func:`load_split`)."""
    return {split: load_split(config, split) for split in ("train", "val", "test")}


def model_for(config: TrainConfig, data: Dataset) -> nn.Module:
    """The configured model sized for ``data`` (classes, channels, image size, vocabulary)."""
    options = dict(config.model_options)
    if data.vocabulary is not None:
        options.setdefault("vocab_size", len(data.vocabulary))
        return build_model(config.model, len(data.classes), **options)
    shape = data.inputs.shape
    return build_model(config.model, len(data.classes), shape[1], shape[2], **options)


def load_model(
    run_dir: str | os.PathLike[str], which: str = "last", device: str | torch.device = "cpu"
) -> tuple[nn.Module, TrainConfig]:
    """The model of a run's ``last`` or ``best`` checkpoint, in eval mode, and its config.

    A checkpoint whose config differs from the run's ``config.toml`` (another run's, copied in)
    or whose weights do not fit the model is a ``ValueError`` naming the file."""
    path = Path(run_dir) / "checkpoints" / f"{which}.pt"
    state = load_checkpoint(path)
    stored = Path(run_dir) / "config.toml"
    if stored.exists():
        check_same_run(TrainConfig.load(stored), state["config"], path)
    config = TrainConfig.from_dict(state["config"])
    model = model_for(config, load_split(config, "train"))
    load_weights(model, state["model"], path)
    return model.to(device).eval(), config


def check_same_run(config: TrainConfig, stored: dict[str, Any], path: Path) -> None:
    # Read through TrainConfig, so a field added since the checkpoint was written takes its
    # default instead of counting as a difference.
    known = TrainConfig.from_dict(stored).to_dict()
    differ = sorted(k for k, v in config.to_dict().items() if known[k] != v)
    if differ:
        raise ValueError(
            f"{path} was trained with another config (differs in {differ}): not this run's "
            "checkpoint; resume with the same config or train into another directory"
        )


def load_weights(model: nn.Module, weights: dict[str, Tensor], path: Path) -> None:
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        summary = " ".join(str(error).split())
        raise ValueError(f"{path}: its weights do not fit the model: {summary}") from None
