"""The paper's CIFAR DenseNet-121 (Huang et al., 2017; kuangliu/pytorch-cifar style).

A 3×3 stem of ``2 * growth_rate`` channels, four dense blocks of pre-activation bottleneck
layers (batch norm, ReLU, 1×1 conv to ``4 * growth_rate``, batch norm, ReLU, 3×3 conv to
``growth_rate``), each layer's output concatenated in front of its input; between blocks a
transition halves the channels (1×1 conv) and the resolution (2×2 average pool).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from focalcal.models.resnet import he_init


class DenseLayer(nn.Module):
    """Adds ``growth_rate`` channels: ``(N, C, H, W)`` -> ``(N, C + growth_rate, H, W)``."""

    def __init__(self, in_planes: int, growth_rate: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.BatchNorm2d(in_planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_planes, 4 * growth_rate, 1, bias=False),
            nn.BatchNorm2d(4 * growth_rate),
            nn.ReLU(inplace=True),
            nn.Conv2d(4 * growth_rate, growth_rate, 3, padding=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, C + growth_rate, H, W)``, new channels first."""
        return torch.cat([self.features(x), x], 1)


def transition(in_planes: int, out_planes: int) -> nn.Sequential:
    """Batch norm, ReLU, 1×1 conv to ``out_planes``, 2×2 average pool."""
    return nn.Sequential(
        nn.BatchNorm2d(in_planes),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_planes, out_planes, 1, bias=False),
        nn.AvgPool2d(2),
    )


class DenseNet(nn.Module):
    """CIFAR DenseNet: images ``(N, in_channels, H, W)`` with H, W >= 8 -> logits
    ``(N, num_classes)``.

    Args:
        blocks: dense layers in each dense block, e.g. ``(6, 12, 24, 16)`` for DenseNet-121.
        num_classes: outputs of the final linear layer.
        in_channels: channels of the input images.
        growth_rate: channels each dense layer adds.
        reduction: fraction of the channels a transition keeps (rounded down).
    """

    def __init__(
        self,
        blocks: Sequence[int],
        num_classes: int,
        in_channels: int = 3,
        growth_rate: int = 32,
        reduction: float = 0.5,
    ) -> None:
        super().__init__()
        planes = 2 * growth_rate
        layers: list[nn.Module] = [nn.Conv2d(in_channels, planes, 3, padding=1, bias=False)]
        for i, count in enumerate(blocks):
            layers += [DenseLayer(planes + j * growth_rate, growth_rate) for j in range(count)]
            planes += count * growth_rate
            if i < len(blocks) - 1:
                out_planes = math.floor(planes * reduction)
                layers.append(transition(planes, out_planes))
                planes = out_planes
        layers += [nn.BatchNorm2d(planes), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(planes, num_classes)
        he_init(self)

    def forward(self, x: Tensor) -> Tensor:
        """Images ``(N, in_channels, H, W)`` -> logits ``(N, num_classes)``."""
        logits: Tensor = self.fc(torch.flatten(self.features(x), 1))
        return logits


def densenet121(num_classes: int, in_channels: int = 3, image_size: int = 32) -> DenseNet:
    """The paper's CIFAR DenseNet-121, dense blocks ``(6, 12, 24, 16)``, growth rate 32:
    6,956,298 parameters with 10 classes.

    Raises:
        ValueError: if ``image_size`` < 8: the three transitions halve it three times.
    """
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 for DenseNet-121, got {image_size}")
    return DenseNet((6, 12, 24, 16), num_classes, in_channels)
