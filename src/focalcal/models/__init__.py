"""Models as plain ``nn.Module``s that map inputs to logits; no training logic.

:func:`build_model` builds one by name: the paper's CIFAR nets (``resnet50``, ``resnet110``,
``wrn-26-10``, ``densenet121``), its Tiny-ImageNet ``resnet50-tiny``, and small nets for CPU
runs (``small-cnn`` for 28×28 images, He et al.'s ``resnet8`` and ``resnet20``, ``cnn1d`` for
MNIST-1D signals), and the text models
(``textcnn`` for 20 Newsgroups, ``tree-lstm`` for SST; ``vocab_size=`` as an option).
"""

from focalcal.models.densenet import DenseNet, densenet121
from focalcal.models.registry import build_model, model_constructor, model_names, register_model
from focalcal.models.resnet import (
    ResNet,
    ThreeStageResNet,
    resnet8,
    resnet20,
    resnet50,
    resnet50_tiny,
    resnet110,
)
from focalcal.models.small import MLP, CNN1d, SmallCNN
from focalcal.models.text import TextCNN, TreeLSTM
from focalcal.models.wide_resnet import WideResNet, wide_resnet26_10

__all__ = [
    "MLP",
    "CNN1d",
    "DenseNet",
    "ResNet",
    "SmallCNN",
    "TextCNN",
    "ThreeStageResNet",
    "TreeLSTM",
    "WideResNet",
    "build_model",
    "densenet121",
    "model_constructor",
    "model_names",
    "register_model",
    "resnet8",
    "resnet20",
    "resnet50",
    "resnet50_tiny",
    "resnet110",
    "wide_resnet26_10",
]
