"""Model names: ``build_model("resnet110", num_classes=10)`` returns a plain ``nn.Module``.

Each name maps to a constructor called with those of ``num_classes=``, ``in_channels=`` and
``image_size=`` that it accepts, and the model options; it raises ``ValueError`` for an
``image_size`` its net cannot take. Your own models join in two ways: ``register_model(name,
constructor)`` from code, or the name ``"module.path:callable"`` (``focalcal train --model
mypkg.nets:resnet``), which imports the module (installed, on ``PYTHONPATH`` or in the current
directory) and uses the callable as the constructor.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from torch import nn

from focalcal._checks import unknown_name
from focalcal.models.densenet import densenet121
from focalcal.models.resnet import resnet8, resnet20, resnet50, resnet50_tiny, resnet110
from focalcal.models.small import MLP, CNN1d, SmallCNN
from focalcal.models.text import TextCNN, TreeLSTM
from focalcal.models.wide_resnet import wide_resnet26_10

_MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet50": resnet50,
    "resnet110": resnet110,
    "wrn-26-10": wide_resnet26_10,
    "densenet121": densenet121,
    "resnet50-tiny": resnet50_tiny,
    "resnet8": resnet8,
    "resnet20": resnet20,
    "small-cnn": SmallCNN,
    "cnn1d": lambda num_classes, in_channels, image_size: CNN1d(
        num_classes, in_channels, length=image_size
    ),
    # Tabular features (N, D, 1), or any input of in_channels x image_size values (signals).
    "mlp": lambda num_classes, in_channels, image_size, **options: MLP(
        num_classes, in_channels * image_size, **options
    ),
    # Text models read token ids: the image sizes do not apply; vocab_size is an option.
    "textcnn": lambda num_classes, in_channels, image_size, **options: TextCNN(
        num_classes=num_classes, **options
    ),
    "tree-lstm": lambda num_classes, in_channels, image_size, **options: TreeLSTM(
        num_classes=num_classes, **options
    ),
}


def register_model(name: str, constructor: Callable[..., nn.Module]) -> None:
    """Make ``constructor`` buildable as ``name`` (lower case, not already taken), in this
    process: :func:`build_model`, the configs and the command line then take the name. The
    constructor is called with those of ``num_classes``, ``in_channels`` and ``image_size``
    that it accepts, plus the model options.

    Example:
        >>> import torch
        >>> register_model("linear-28", lambda num_classes: torch.nn.Sequential(
        ...     torch.nn.Flatten(), torch.nn.Linear(28 * 28, num_classes)))
        >>> build_model("linear-28", num_classes=10, in_channels=1, image_size=28)[1]
        Linear(in_features=784, out_features=10, bias=True)
    """
    key = name.strip().lower()
    if not key or ":" in key or key != name:
        raise ValueError(f"a model name is lower case, without ':' or spaces, got {name!r}")
    if key in _MODELS:
        raise ValueError(f"a model named {name!r} is already registered")
    if not callable(constructor):
        raise ValueError(f"model {name!r}: the constructor must be callable")
    _MODELS[key] = constructor


def model_constructor(name: str) -> Callable[..., nn.Module]:
    """The constructor :func:`build_model` calls for ``name``: a registered one, or the
    callable ``"module.path:callable"`` names. ``ValueError`` for a name that is neither."""
    constructor = _MODELS.get(name.strip().lower())
    if constructor is not None:
        return constructor
    if ":" not in name:
        raise unknown_name("model", name, list(_MODELS))
    module_name, _, attribute = name.strip().partition(":")
    try:
        module = _import(module_name)
    except ImportError as error:
        raise ValueError(f"model {name!r}: cannot import {module_name}: {error}") from None
    found = getattr(module, attribute, None)
    if not callable(found):
        raise ValueError(f"model {name!r}: {module_name} has no callable {attribute!r}")
    built: Callable[..., nn.Module] = found
    return built


def _import(module_name: str) -> Any:
    """The module, looked for in the current directory too (as ``python -m`` does)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        here = os.getcwd()
        if here in sys.path or error.name != module_name.split(".")[0]:
            raise
        sys.path.append(here)  # the console script, unlike python -m, lacks the current folder
        return importlib.import_module(module_name)


def model_names() -> list[str]:
    """Every name :func:`build_model` accepts, the paper's CIFAR nets first."""
    return list(_MODELS)


def build_model(
    name: str, num_classes: int, in_channels: int = 3, image_size: int = 32, **options: Any
) -> nn.Module:
    """Build a model from its name; ``options`` go to its constructor (e.g. ``dropout``).

    Args:
        name: one of :func:`model_names`, case-insensitive.
        num_classes: outputs of the model: it returns logits ``(N, num_classes)``.
        in_channels: channels of the input (1 for grey images and signals).
        image_size: height and width of the input images (the length of 1-D signals); the
            ResNets and the Wide-ResNet take any size, DenseNet-121 at least 8, ``"small-cnn"``
            a multiple of 4.

    Raises:
        ValueError: for an unknown name, a ``num_classes``, ``in_channels`` or ``image_size``
            that is not a positive integer, or an ``image_size`` the model cannot take.

    Example:
        >>> import torch
        >>> model = build_model("small-cnn", num_classes=10, in_channels=1, image_size=28)
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    constructor = model_constructor(name)
    sizes = {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}
    for argument, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{argument} must be a positive integer, got {value!r}")
    try:
        model = constructor(**_accepted(constructor, sizes), **options)
    except TypeError as error:  # an option the model lacks, or a missing one (vocab_size)
        raise ValueError(f"model {name!r}: {error}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {name!r} built a {type(model).__name__}, not a torch nn.Module")
    return model


def _accepted(constructor: Callable[..., Any], sizes: dict[str, int]) -> dict[str, int]:
    """The ``sizes`` the constructor takes by name (all of them if it takes ``**kwargs``)."""
    try:
        parameters = inspect.signature(constructor).parameters
    except (TypeError, ValueError):  # a builtin without a signature: give it everything
        return sizes
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return sizes
    return {key: value for key, value in sizes.items() if key in parameters}
