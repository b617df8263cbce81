"""Model names: ``build_model("resnet110", num_classes=10)`` returns a plain ``nn.Module``.

Each name maps to a constructor called as
``constructor(num_classes=..., in_channels=..., image_size=..., **options)``; it raises
``ValueError`` for an ``image_size`` its net cannot take.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from focalcal._checks import unknown_name
from focalcal.models.densenet import densenet121
from focalcal.models.resnet import resnet8, resnet20, resnet50, resnet50_tiny, resnet110
from focalcal.models.small import CNN1d, SmallCNN
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
    # Text models read token ids: the image sizes do not apply; vocab_size is an option.
    "textcnn": lambda num_classes, in_channels, image_size, **options: TextCNN(
        num_classes=num_classes, **options
    ),
    "tree-lstm": lambda num_classes, in_channels, image_size, **options: TreeLSTM(
        num_classes=num_classes, **options
    ),
}


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
    constructor = _MODELS.get(name.strip().lower())
    if constructor is None:
        raise unknown_name("model", name, list(_MODELS))
    sizes = {"num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}
    for argument, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{argument} must be a positive integer, got {value!r}")
    try:
        return constructor(**sizes, **options)
    except TypeError as error:  # an option the model lacks, or a missing one (vocab_size)
        raise ValueError(f"model {name!r}: {error}") from None
