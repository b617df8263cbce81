"""The paper's CIFAR Wide-ResNet (Zagoruyko & Komodakis, 2016) as its code builds it.

Three groups of 3×3 basic blocks, ``(depth - 2) / 6`` per group, widths 16k/32k/64k at strides
1, 2, 2. The paper's WRN-26-10 therefore has 4 blocks per group (Zagoruyko's count of the same
net is 28) and post-activation blocks (conv, batch norm, ReLU), as in the paper's
``Net/wide_resnet.py``; the dropout between the two convolutions is Zagoruyko's option.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from focalcal.models.resnet import he_init, shortcut


class WideBasicBlock(nn.Module):
    """3×3 conv, batch norm, ReLU, dropout, 3×3 conv, batch norm, added to the shortcut (a
    strided 1×1 convolution + batch norm where the shape changes), then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv2d(planes, planes, 3, padding=1, bias=False),
            nn.BatchNorm2d(planes),
        )
        self.shortcut = shortcut(in_planes, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, in_planes, H, W)`` -> ``(N, planes, H / stride, W / stride)``."""
        return torch.relu(self.residual(x) + self.shortcut(x))


class WideResNet(nn.Module):
    """CIFAR Wide-ResNet-``depth``-``widen_factor``: images ``(N, in_channels, H, W)`` -> logits
    ``(N, num_classes)``, with a global average pool before the linear layer.

    Args:
        depth: ``6 n + 2`` for ``n`` blocks per group (the paper's counting).
        widen_factor: k, the groups' widths are 16k, 32k and 64k.
        num_classes: outputs of the final linear layer.
        in_channels: channels of the input images.
        dropout: dropout probability inside each block (0: none, the paper's setting).

    Raises:
        ValueError: if ``depth`` is not ``6 n + 2`` with ``n >= 1``.
    """

    def __init__(
        self,
        depth: int,
        widen_factor: int,
        num_classes: int,
        in_channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6 n + 2 with n >= 1, got {depth}")
        per_group = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
        )
        groups: list[nn.Module] = []
        in_planes = 16
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        for planes, stride in zip(widths, (1, 2, 2), strict=True):
            blocks = [WideBasicBlock(in_planes, planes, stride, dropout)]
            blocks += [WideBasicBlock(planes, planes, 1, dropout) for _ in range(per_group - 1)]
            groups.append(nn.Sequential(*blocks))
            in_planes = planes
        self.groups = nn.Sequential(*groups)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        he_init(self)

    def forward(self, x: Tensor) -> Tensor:
        """Images ``(N, in_channels, H, W)`` -> logits ``(N, num_classes)``."""
        logits: Tensor = self.fc(torch.flatten(self.pool(self.groups(self.stem(x))), 1))
        return logits


def wide_resnet26_10(
    num_classes: int, in_channels: int = 3, image_size: int = 32, dropout: float = 0.0
) -> WideResNet:
    """The paper's Wide-ResNet-26-10 (4 blocks of width 160/320/640 per group): 36,481,434
    parameters with 10 classes. Any ``image_size`` works."""
    return WideResNet(26, 10, num_classes, in_channels, dropout)
