"""Images of one size and channel count made into another: how an OOD set of other images
(scikit-learn's 8×8 digits) meets a model trained on 28×28 Fashion-MNIST."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

CHUNK = 4096  # images per interpolation call: bounds the float copy (SVHN at 64×64 is 1.3 GB)


def resize_images(images: Tensor, channels: int, size: tuple[int, int]) -> Tensor:
    """``images`` ``(N, C, H, W)`` uint8 as ``(N, channels, *size)`` uint8 on the same 0–255
    scale: grey made colour by repeating its channel, colour made grey by averaging the
    channels (any other change of channel count is a ``ValueError``), then resized bilinearly
    (``torch.nn.functional.interpolate``, half-pixel centres, antialiased when shrinking, as
    PIL's ``BILINEAR``), rounded to the nearest grey level. Images already of that shape come
    back as they are.

    Example:
        >>> import torch
        >>> grey = torch.tensor([[[[0, 255], [255, 0]]]], dtype=torch.uint8)
        >>> resize_images(grey, 3, (4, 4)).shape
        torch.Size([1, 3, 4, 4])
        >>> resize_images(grey, 1, (4, 4))[0, 0, 0].tolist()
        [0, 64, 191, 255]
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(
            f"images must be uint8 of shape (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    if images.shape[1] != channels and 1 not in (images.shape[1], channels):
        raise ValueError(
            f"cannot make images of {images.shape[1]} channels into {channels} channels: "
            "only grey to colour (repeated) and colour to grey (averaged)"
        )
    if tuple(images.shape[1:]) == (channels, *size):
        return images
    chunks = []
    for start in range(0, len(images), CHUNK):
        x = images[start : start + CHUNK].float()
        if x.shape[1] != channels:
            x = x.expand(-1, channels, -1, -1) if x.shape[1] == 1 else x.mean(1, keepdim=True)
        if tuple(x.shape[2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        chunks.append(x.round().clamp_(0, 255).to(torch.uint8))
    if not chunks:
        return images.new_empty((0, channels, *size))
    return torch.cat(chunks)
