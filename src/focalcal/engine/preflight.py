"""Before a run writes anything: does its model fit its data? A model that cannot be built for
the data's shape (``small-cnn`` on a table of features, ``cnn1d`` on images) or cannot take a
batch of it would otherwise fail only after the run directory was made."""

from __future__ import annotations

import torch

from focalcal.data import BatchLoader
from focalcal.engine.config import TrainConfig
from focalcal.engine.runs import load_split, model_for


def check_fit(config: TrainConfig) -> None:
    """``ValueError`` naming the model and the dataset unless ``config.model`` builds for the
    run's training data and maps two of its samples (normalised as in training) to logits of
    the class count. Reads the data (a missing file keeps its ``FileNotFoundError``).

    Example:
        >>> check_fit(TrainConfig(dataset="digits", model="small-cnn"))
        >>> check_fit(TrainConfig(dataset="mnist1d", model="small-cnn"))
        Traceback (most recent call last):
        ...
        ValueError: model 'small-cnn' does not fit dataset 'mnist1d' (inputs (1, 40)): ...
    """
    data = load_split(config, "train")
    shape = tuple(data.inputs.shape[1:])
    try:
        model = model_for(config, data).eval()
        (inputs, _), *_ = BatchLoader(data.select(torch.arange(min(2, len(data)))), 2)
        with torch.no_grad():
            logits = model(inputs)
    except (ValueError, RuntimeError, TypeError, IndexError) as error:
        message = " ".join(str(error).split())
        raise ValueError(
            f"model {config.model!r} does not fit dataset {config.dataset!r} (inputs {shape}): "
            f"{message}"
        ) from None
    if tuple(logits.shape) != (len(inputs), len(data.classes)):
        raise ValueError(
            f"model {config.model!r} gives outputs {tuple(logits.shape)} for "
            f"{len(inputs)} samples of dataset {config.dataset!r}; expected logits "
            f"({len(inputs)}, {len(data.classes)})"
        )
