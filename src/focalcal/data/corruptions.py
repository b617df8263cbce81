"""CIFAR-10-C corruptions (Hendrycks & Dietterich, ICLR 2019) as batched tensor ops.

Each corruption works on a whole uint8 batch ``(N, C, H, W)`` (``C`` = 1 or 3) on whatever device
it lives, with the CIFAR-10 constants of the authors' ``make_cifar_c.py``
(github.com/hendrycks/robustness, ``ImageNet-C/create_c/make_cifar_c.py``); the ImageNet-C ones
differ. Besides the eight corruptions asked for, ``speckle_noise`` and ``gaussian_blur`` (two of
CIFAR-10-C's extra files) are cheap to do exactly; the others need ImageMagick, the frost
pictures or pixel-by-pixel loops and are left out.

The math runs in float32 on ``[0, 1]``, is clipped to ``[0, 1]`` and rounded to the nearest level.
The original truncates (``np.uint8`` of a float), which darkens every pixel by half a level on
average and drops values that carry float error (``0.2 * 255 = 50.99…``) a whole level;
``pixelate`` and ``jpeg_compression`` were 8-bit Pillow images there and are exact levels here too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Generator, Tensor

__all__ = ["CORRUPTIONS", "corrupt"]


def _gaussian_noise(x: Tensor, std: float, generator: Generator | None) -> Tensor:
    """``x + N(0, std²)`` per element (clipped later, like every corruption)."""
    return x + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _shot_noise(x: Tensor, photons: float, generator: Generator | None) -> Tensor:
    """``Poisson(x · photons) / photons`` per element: variance ``x / photons``."""
    return torch.poisson(x * photons, generator=generator) / photons


def _impulse_noise(x: Tensor, amount: float, generator: Generator | None) -> Tensor:
    """Salt and pepper (``skimage`` ``mode='s&p'``): each element independently becomes 0 or 1,
    half and half, with probability ``amount``."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return torch.where(u < amount / 2, 0.0, torch.where(u < amount, 1.0, x))


def _speckle_noise(x: Tensor, std: float, generator: Generator | None) -> Tensor:
    """``x + x · N(0, std²)`` per element."""
    return x + x * std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _filter(x: Tensor, kernel: Tensor, padding_mode: str) -> Tensor:
    """Each channel correlated with the square, odd-sized ``kernel`` (same-size output)."""
    r = kernel.shape[-1] // 2
    weight = kernel.to(x.device, x.dtype).expand(x.shape[1], 1, -1, -1)
    return F.conv2d(F.pad(x, (r, r, r, r), mode=padding_mode), weight, groups=x.shape[1])


def _gaussian_blur(x: Tensor, sigma: float, generator: Generator | None) -> Tensor:
    """``skimage.filters.gaussian``, i.e. ``scipy.ndimage.gaussian_filter`` with its defaults
    (radius ``int(4σ + 0.5)``, edge pixels repeated)."""
    r = int(4 * sigma + 0.5)
    g = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / sigma) ** 2)
    g /= g.sum()
    return _filter(x, torch.outer(g, g), "replicate")


def _defocus_blur(x: Tensor, disk: tuple[float, float], generator: Generator | None) -> Tensor:
    """Correlation with the original's ``disk(radius, alias_blur)``: the pixels within
    ``radius`` of the centre, normalised, then smoothed by a 3 × 3 Gaussian of std
    ``alias_blur`` (``cv2.GaussianBlur``); image borders mirrored like ``cv2.filter2D``
    (``BORDER_REFLECT_101``). The original draws the disk on a 17 × 17 grid that is zero beyond
    ``floor(radius) + 1``; the kernel here is that grid cropped to where it is non-zero."""
    radius, alias_blur = disk
    r = math.floor(radius) + 1
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    kernel = (t[:, None] ** 2 + t**2 <= radius**2).double()
    g = torch.exp(-(torch.arange(-1, 2, dtype=torch.float64) ** 2) / (2 * alias_blur**2))
    g /= g.sum()
    kernel = F.conv2d(kernel[None, None], torch.outer(g, g)[None, None], padding=1)[0, 0]
    return _filter(x, kernel / kernel.sum(), "reflect")


def _contrast(x: Tensor, factor: float, generator: Generator | None) -> Tensor:
    """Each channel pulled towards its own mean over the image: ``(x - mean) · factor + mean``."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * factor + mean


def _brightness(x: Tensor, shift: float, generator: Generator | None) -> Tensor:
    """HSV value ``V`` raised by ``shift`` and clipped at 1, hue and saturation kept.

    Every RGB channel is ``V · (1 - S · k(H))``, so with ``H`` and ``S`` fixed the round trip
    through HSV scales the pixel by ``V' / V``; a black pixel (``S = 0``) becomes grey ``V'``.
    With one channel ``V`` is the intensity, which is simply raised and clipped.
    """
    value = x.amax(dim=1, keepdim=True)
    raised = (value + shift).clamp(max=1.0)
    return torch.where(value > 0, x * raised / value, raised)


def _box_resize_weights(size_in: int, size_out: int) -> Tensor:
    """``(size_out, size_in)`` weights of Pillow's ``Image.resize(..., BOX)`` along one axis.

    Pillow averages, with equal weights, the input pixels whose centres fall in the output
    pixel's footprint; it does not weight by overlapping area, so torch's area interpolation
    differs from it whenever ``size_in / size_out`` is not an integer. Enlarging this way picks
    the input pixel under each output centre (torch's ``nearest-exact``).
    """
    scale = size_in / size_out
    footprint = max(scale, 1.0)
    centre = (torch.arange(size_out, dtype=torch.float64)[:, None] + 0.5) * scale
    pixel = torch.arange(size_in, dtype=torch.float64)
    # Pillow's float operations in Pillow's order, and its rounded search range as well as its
    # filter: a pixel centre on the edge of a footprint goes in or out by the last bit.
    offset = (pixel - centre + 0.5) * (1 / footprint)
    weights = (
        (offset > -0.5)
        & (offset <= 0.5)
        & (pixel >= (centre - footprint / 2 + 0.5).floor())
        & (pixel < (centre + footprint / 2 + 0.5).floor())
    ).double()
    return weights / weights.sum(dim=1, keepdim=True)


def _pixelate(x: Tensor, factor: float, generator: Generator | None) -> Tensor:
    """Pillow ``BOX`` resize to ``int(side · factor)`` and ``BOX`` back, as the original does
    (enlarging with ``BOX`` repeats pixels). Like Pillow it shrinks the width first and keeps
    8-bit levels, rounded half up, after each pass, so it matches Pillow level for level."""
    h, w = x.shape[-2:]
    small_h, small_w = max(1, int(h * factor)), max(1, int(w * factor))
    levels = (x * 255).round()
    levels = (levels @ _box_resize_weights(w, small_w).T.to(x) + 0.5).floor()
    levels = (_box_resize_weights(h, small_h).to(x) @ levels + 0.5).floor()
    up_h, up_w = _box_resize_weights(small_h, h).to(x), _box_resize_weights(small_w, w).to(x)
    return up_h @ levels @ up_w.T / 255


# IJG (JPEG Annex K) base quantisation tables, row-major.
_LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMA_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8,) * 4,
)
# JFIF colour conversion with libjpeg's constants; Cb and Cr are offset by 128.
_RGB_TO_YCBCR = ((0.299, 0.587, 0.114), (-0.16874, -0.33126, 0.5), (0.5, -0.41869, -0.08131))
_YCBCR_TO_RGB = ((1.0, 0.0, 1.402), (1.0, -0.34414, -0.71414), (1.0, 1.772, 0.0))


def _quantised(planes: Tensor, table: tuple[tuple[int, ...], ...], quality: int) -> Tensor:
    """``planes`` (0–255, sides multiples of 8) after an 8 × 8 block DCT-II, quantisation by
    ``table`` scaled to ``quality`` the way libjpeg's ``jpeg_set_quality`` does, and back."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    q = ((torch.tensor(table) * scale + 50) // 100).clamp(1, 255).to(planes.device, planes.dtype)
    u = torch.arange(8, device=planes.device, dtype=planes.dtype)
    dct = torch.cos((2 * u + 1) * u[:, None] * math.pi / 16) * 0.5
    dct[0] = math.sqrt(1 / 8)  # orthonormal DCT-II matrix: rows are frequencies
    n, c, h, w = planes.shape
    blocks = (planes - 128).reshape(n, c, h // 8, 8, w // 8, 8)
    coefficients = torch.einsum("ui,nchiwj,vj->nchuwv", dct, blocks, dct) / q[:, None, :]
    # libjpeg rounds quotients half away from zero.
    levels = coefficients.sign() * (coefficients.abs() + 0.5).floor() * q[:, None, :]
    blocks = torch.einsum("ui,nchuwv,vj->nchiwj", dct, levels, dct) + 128
    # The decoder holds 8-bit samples after the inverse DCT.
    return blocks.reshape(n, c, h, w).round().clamp(0, 255)


def _jpeg_compression(x: Tensor, quality: int, generator: Generator | None) -> Tensor:
    """A JPEG round trip at ``quality`` as Pillow (libjpeg) does it with its defaults.

    RGB goes to YCbCr (JFIF); Cb and Cr are subsampled 4:2:0 by 2 × 2 averaging, quantised with
    the chrominance table and brought back by libjpeg's "fancy" upsampling (bilinear, edges
    repeated); Y is quantised with the luminance table. One channel is coded alone with the
    luminance table, like a Pillow ``"L"`` image. Sides are padded by repeating the last row and
    column up to whole coding units (16 pixels, 8 for one channel) and cropped back.
    """
    h, w = x.shape[-2:]
    unit = 8 if x.shape[1] == 1 else 16
    x = F.pad((x * 255).round(), (0, -w % unit, 0, -h % unit), mode="replicate")
    if x.shape[1] == 1:
        return _quantised(x, _LUMA_TABLE, quality)[..., :h, :w] / 255
    to_ycbcr = torch.tensor(_RGB_TO_YCBCR, device=x.device, dtype=x.dtype)
    to_rgb = torch.tensor(_YCBCR_TO_RGB, device=x.device, dtype=x.dtype)
    offset = torch.tensor([0.0, 128.0, 128.0], device=x.device, dtype=x.dtype)[:, None, None]
    # Like libjpeg, every stage hands on 8-bit samples.
    ycbcr = (torch.einsum("ki,nihw->nkhw", to_ycbcr, x) + offset).round().clamp(0, 255)
    luma = _quantised(ycbcr[:, :1], _LUMA_TABLE, quality)
    # libjpeg's integer rounding, which halves the mismatch with Pillow of plain rounding:
    # 2 × 2 sums plus 1, 2, 1, 2, … by column, over 4 ...
    column = torch.arange(x.shape[-1] // 2, device=x.device)
    chroma = (F.avg_pool2d(ycbcr[:, 1:], 2) * 4 + 1 + column % 2) // 4
    chroma = _quantised(chroma, _CHROMA_TABLE, quality)[..., : -(-h // 2), : -(-w // 2)]
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
    # ... and 16 × bilinear plus 8, 7, 8, 7, … by column, over 16.
    column = torch.arange(chroma.shape[-1], device=x.device)
    chroma = (chroma * 16 + 8 - column % 2) // 16
    ycbcr = torch.cat([luma[..., :h, :w], chroma[..., :h, :w]], dim=1)
    return torch.einsum("ik,nkhw->nihw", to_rgb, ycbcr - offset) / 255


# name: (function, its parameter at severities 1..5), as in make_cifar_c.py. Every function takes
# (images in [0, 1], parameter, generator); the deterministic ones ignore the generator.
_TABLE: dict[str, tuple[Callable[[Tensor, Any, Generator | None], Tensor], tuple[Any, ...]]] = {
    "gaussian_noise": (_gaussian_noise, (0.04, 0.06, 0.08, 0.09, 0.10)),
    "shot_noise": (_shot_noise, (500, 250, 100, 75, 50)),
    "impulse_noise": (_impulse_noise, (0.01, 0.02, 0.03, 0.05, 0.07)),
    "speckle_noise": (_speckle_noise, (0.06, 0.1, 0.12, 0.16, 0.2)),
    "gaussian_blur": (_gaussian_blur, (0.4, 0.6, 0.7, 0.8, 1.0)),
    "defocus_blur": (_defocus_blur, ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1))),
    "contrast": (_contrast, (0.75, 0.5, 0.4, 0.3, 0.15)),
    "brightness": (_brightness, (0.05, 0.1, 0.15, 0.2, 0.3)),
    "pixelate": (_pixelate, (0.95, 0.9, 0.85, 0.75, 0.65)),
    "jpeg_compression": (_jpeg_compression, (80, 65, 58, 50, 40)),
}
CORRUPTIONS: tuple[str, ...] = tuple(_TABLE)


def corrupt(images: Tensor, name: str, severity: int, generator: Generator | None = None) -> Tensor:
    """``images`` with the CIFAR-10-C corruption ``name`` at ``severity`` (1–5).

    ``images``: ``uint8`` ``(N, C, H, W)``, ``C`` = 1 or 3, on any device; returns ``uint8`` of
    the same shape on the same device. ``name``: one of :data:`CORRUPTIONS`. Random draws
    (the noises) come from ``generator`` (on the images' device), else from torch's default
    generator; the others ignore it. Results are clipped to 0–255 and rounded to the nearest
    level.

    With one channel: the noises act per pixel, the blurs, ``contrast`` and ``pixelate`` per
    channel as for RGB, ``brightness`` adds to the intensity and ``jpeg_compression`` codes a
    greyscale JPEG.

    >>> import torch
    >>> grey = torch.full((2, 3, 32, 32), 128, dtype=torch.uint8)
    >>> noisy = corrupt(grey, "gaussian_noise", 3, generator=torch.Generator().manual_seed(0))
    >>> noisy.shape, noisy.dtype
    (torch.Size([2, 3, 32, 32]), torch.uint8)
    >>> round((noisy.float() - 128).std().item() / 255, 2)  # severity 3: std 0.08
    0.08
    >>> corrupt(grey, "contrast", 5).equal(grey)  # a flat image has no contrast to lose
    True
    """
    if name not in _TABLE:
        raise ValueError(f"name must be one of {', '.join(CORRUPTIONS)}; got {name!r}")
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an integer in 1..5, got {severity!r}")
    if not isinstance(images, Tensor) or images.dtype != torch.uint8:
        got = images.dtype if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a uint8 tensor, got {got}")
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"images must have shape (N, C, H, W) with C = 1 or 3, got {tuple(images.shape)}"
        )
    if generator is not None and (
        generator.device.type != images.device.type
        or (generator.device.index or 0) != (images.device.index or 0)
    ):
        raise ValueError(f"generator is on {generator.device} but images on {images.device}")
    function, parameters = _TABLE[name]
    x = function(images.float() / 255, parameters[severity - 1], generator)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)
