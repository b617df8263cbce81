"""Small, fast nets for the CPU-sized experiments: Fashion-MNIST images and MNIST-1D signals.

Both keep PyTorch's default init, as the example and the numbers in the design notes did.
"""

from __future__ import annotations

from torch import Tensor, nn


class SmallCNN(nn.Module):
    """Two 3×3 conv + ReLU + 2×2 max-pool stages (``width``, 2·``width`` channels), then a
    hidden layer of 8·``width`` units: images ``(N, in_channels, image_size, image_size)`` ->
    logits ``(N, num_classes)``.

    With the default width 32: 824,458 parameters for 28×28 grey images and 10 classes (the
    Fashion-MNIST example's net); width 16 is about 4× cheaper.

    Raises:
        ValueError: if ``image_size`` is not a positive multiple of 4 (the two 2×2 pools).
    """

    def __init__(
        self, num_classes: int, in_channels: int = 1, image_size: int = 28, width: int = 32
    ) -> None:
        super().__init__()
        if image_size < 4 or image_size % 4:
            raise ValueError(f"image_size must be a positive multiple of 4, got {image_size}")
        if width < 1:
            raise ValueError(f"width must be a positive integer, got {width}")
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * (image_size // 4) ** 2, 8 * width),
            nn.ReLU(),
            nn.Linear(8 * width, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Images ``(N, in_channels, image_size, image_size)`` -> logits ``(N, num_classes)``."""
        logits: Tensor = self.layers(x)
        return logits


class CNN1d(nn.Module):
    """Three 1-D conv + ReLU layers (32 channels, then 64 and 64 at stride 2) and a linear
    read-out of the flattened features: signals ``(N, in_channels, length)`` -> logits
    ``(N, num_classes)``. The read-out keeps positions, which MNIST-1D's digits depend on.

    25,162 parameters for MNIST-1D (one channel, length 40, 10 classes); about 95 % test
    accuracy there after 30 epochs of SGD on its 4,000 training signals.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, length: int = 40) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv1d(in_channels, 32, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(64, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * -(-length // 4), num_classes),  # each stride-2 conv: ceil(length / 2)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Signals ``(N, in_channels, length)`` -> logits ``(N, num_classes)``."""
        logits: Tensor = self.layers(x)
        return logits


class MLP(nn.Module):
    """A multilayer perceptron for tabular features (or any small input): the input flattened
    (``in_features`` values), ``depth`` hidden layers of ``hidden`` units with ReLU, and a
    linear read-out to ``num_classes`` logits.

    Example:
        >>> import torch
        >>> MLP(3, in_features=8, hidden=16)(torch.zeros(5, 8, 1)).shape
        torch.Size([5, 3])
    """

    def __init__(self, num_classes: int, in_features: int, hidden: int = 128, depth: int = 2):
        super().__init__()
        for name, value in (("in_features", in_features), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ValueError(f"depth must be an integer >= 0, got {depth!r}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Inputs ``(N, ...)`` of ``in_features`` values each -> logits ``(N, num_classes)``."""
        logits: Tensor = self.layers(x)
        return logits
