"""The paper's four-stage CIFAR ResNets with bottleneck blocks (kuangliu/pytorch-cifar style),
and He et al.'s small three-stage CIFAR ResNets for CPU-sized experiments.

A 3×3 stride-1 stem and no max-pool keep 32×32 images at full resolution into the first stage;
stages of widths 64/128/256/512 (×4 out of each bottleneck) run at strides 1, 2, 2, 2. These are
not He et al.'s three-stage CIFAR nets (ResNet-110 there has 1.7 M parameters, here 45.86 M);
those are :class:`ThreeStageResNet` (``resnet8``, ``resnet20``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

EXPANSION = 4  # a bottleneck's output has 4× the channels of its 3×3 convolution
WIDTHS = (64, 128, 256, 512)
STRIDES = (1, 2, 2, 2)


def he_init(model: nn.Module) -> None:
    """He-normal convolution weights (fan-out, ReLU gain), zero convolution biases.

    The init of the paper's Wide-ResNet and Tiny-ImageNet ResNet; we use it for every deep
    convolutional net instead of PyTorch's default, which the paper's other nets kept.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    """The identity, or a strided 1×1 convolution + batch norm where the shape changes."""
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
    )


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (carrying the stride), 1×1 expand to ``4 * planes``, each followed by
    batch norm; the shortcut is a strided 1×1 convolution + batch norm where the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = EXPANSION * planes
        self.residual = nn.Sequential(
            nn.Conv2d(in_planes, planes, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, out_planes, 1, bias=False),
            nn.BatchNorm2d(out_planes),
        )
        self.shortcut = shortcut(in_planes, out_planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, in_planes, H, W)`` -> ``(N, 4 * planes, H / stride, W / stride)``."""
        return torch.relu(self.residual(x) + self.shortcut(x))


class BasicBlock(nn.Module):
    """Two 3×3 convolutions (the first carrying the stride), each followed by batch norm; the
    shortcut is a strided 1×1 convolution + batch norm where the shape changes (He et al.'s
    option B)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, padding=1, bias=False),
            nn.BatchNorm2d(planes),
        )
        self.shortcut = shortcut(in_planes, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, in_planes, H, W)`` -> ``(N, planes, H / stride, W / stride)``."""
        return torch.relu(self.residual(x) + self.shortcut(x))


class ThreeStageResNet(nn.Module):
    """He et al.'s (2016) CIFAR ResNet of depth ``6n + 2``: a 3×3 convolution to ``width``
    channels, three stages of ``n`` basic blocks (``width``, 2·``width``, 4·``width``
    channels at strides 1, 2, 2), global average pooling and a linear layer. Images
    ``(N, in_channels, H, W)`` -> logits ``(N, num_classes)``; any ``H, W`` work.

    Raises:
        ValueError: if ``depth`` is not ``6n + 2`` for some ``n >= 1`` or ``width < 1``.
    """

    def __init__(self, depth: int, num_classes: int, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 (8, 14, 20, ...), got {depth}")
        if width < 1:
            raise ValueError(f"width must be a positive integer, got {width}")
        blocks = (depth - 2) // 6
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        in_planes = width
        for planes, stride in ((width, 1), (2 * width, 2), (4 * width, 2)):
            for block in range(blocks):
                layers.append(BasicBlock(in_planes, planes, stride if block == 0 else 1))
                in_planes = planes
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(in_planes, num_classes)
        he_init(self)

    def forward(self, x: Tensor) -> Tensor:
        """Images ``(N, in_channels, H, W)`` -> logits ``(N, num_classes)``."""
        logits: Tensor = self.fc(self.features(x))
        return logits


class ResNet(nn.Module):
    """Four-stage CIFAR ResNet of bottleneck blocks: images ``(N, in_channels, H, W)`` -> logits
    ``(N, num_classes)``.

    Args:
        blocks: bottleneck blocks in each of the four stages, e.g. ``(3, 4, 6, 3)``.
        num_classes: outputs of the final linear layer.
        in_channels: channels of the input images.
        pooled_size: the last feature map is average-pooled to ``pooled_size × pooled_size``, so
            the linear layer sees ``2048 * pooled_size**2`` features (1: global pooling).
    """

    def __init__(
        self, blocks: Sequence[int], num_classes: int, in_channels: int = 3, pooled_size: int = 1
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, WIDTHS[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(WIDTHS[0]),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        in_planes = WIDTHS[0]
        for count, planes, stride in zip(blocks, WIDTHS, STRIDES, strict=True):
            stage = [Bottleneck(in_planes, planes, stride)]
            stage += [Bottleneck(EXPANSION * planes, planes) for _ in range(count - 1)]
            stages.append(nn.Sequential(*stage))
            in_planes = EXPANSION * planes
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(pooled_size)
        self.fc = nn.Linear(in_planes * pooled_size**2, num_classes)
        he_init(self)

    def forward(self, x: Tensor) -> Tensor:
        """Images ``(N, in_channels, H, W)`` -> logits ``(N, num_classes)``."""
        logits: Tensor = self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))
        return logits


def resnet50(num_classes: int, in_channels: int = 3, image_size: int = 32) -> ResNet:
    """The paper's CIFAR ResNet-50, bottleneck blocks ``(3, 4, 6, 3)``, global average pool:
    23,520,842 parameters with 10 classes. Any ``image_size`` works."""
    return ResNet((3, 4, 6, 3), num_classes, in_channels)


def resnet110(num_classes: int, in_channels: int = 3, image_size: int = 32) -> ResNet:
    """The paper's CIFAR ResNet-110, bottleneck blocks ``(3, 4, 26, 3)``, global average pool:
    45,864,522 parameters with 10 classes. Any ``image_size`` works."""
    return ResNet((3, 4, 26, 3), num_classes, in_channels)


def resnet50_tiny(num_classes: int, in_channels: int = 3, image_size: int = 64) -> ResNet:
    """The paper's Tiny-ImageNet ResNet-50: ResNet-50's 3×3 stride-1 stem, but the final map
    (8×8 for the 64×64 images) is average-pooled to 2×2, as the paper's code does with an
    adaptive pool, so 8,192 features reach the linear layer: 25,138,952 parameters with 200
    classes. Any ``image_size`` works, with the same parameters."""
    return ResNet((3, 4, 6, 3), num_classes, in_channels, pooled_size=2)


def resnet8(
    num_classes: int, in_channels: int = 3, image_size: int = 32, width: int = 16
) -> nn.Module:
    """He et al.'s ResNet-8 (one basic block per stage): 77,754 parameters for one input
    channel and 10 classes. The ResNet of the longer CPU experiment on Fashion-MNIST."""
    return ThreeStageResNet(8, num_classes, in_channels, width)


def resnet20(
    num_classes: int, in_channels: int = 3, image_size: int = 32, width: int = 16
) -> nn.Module:
    """He et al.'s ResNet-20 (three basic blocks per stage): 272,474 parameters for three
    input channels and 10 classes."""
    return ThreeStageResNet(20, num_classes, in_channels, width)
