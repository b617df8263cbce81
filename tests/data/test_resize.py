"""resize_images against PIL and a float64 bilinear reference; channels repeated and averaged."""

import numpy as np
import pytest
import torch
from PIL import Image

from focalcal.data.resize import resize_images


def random_images(n, channels, height, width, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, height, width), generator=g, dtype=torch.uint8)


def pil_resize(images, size):
    """PIL's BILINEAR (antialiased when shrinking) of every grey plane, as uint8."""
    height, width = size
    bilinear = Image.Resampling.BILINEAR
    planes = [
        np.asarray(Image.fromarray(plane.numpy()).resize((width, height), bilinear))
        for plane in images.reshape(-1, *images.shape[2:])
    ]
    return torch.from_numpy(np.stack(planes)).reshape(*images.shape[:2], height, width)


@pytest.mark.parametrize(("source", "target"), [((8, 8), (28, 28)), ((64, 48), (32, 32))])
def test_equals_pil_bilinear_to_one_grey_level(source, target):
    images = random_images(6, 3, *source)
    got = resize_images(images, 3, target)
    assert got.dtype == torch.uint8 and got.shape == (6, 3, *target)
    # PIL works in fixed point, we in float32: the same value, rounded apart at most once
    assert (got.int() - pil_resize(images, target).int()).abs().max() <= 1


def test_grey_to_colour_repeats_and_colour_to_grey_averages():
    grey = random_images(4, 1, 5, 7)
    colour = resize_images(grey, 3, (5, 7))
    assert torch.equal(colour, grey.expand(-1, 3, -1, -1))
    rgb = random_images(4, 3, 5, 7, seed=1)
    mean = rgb.double().mean(1, keepdim=True)
    assert (resize_images(rgb, 1, (5, 7)).double() - mean).abs().max() <= 0.5
    assert resize_images(rgb, 3, (5, 7)) is rgb  # nothing to do


@pytest.mark.parametrize(
    ("images", "channels", "message"),
    [
        (random_images(2, 4, 8, 8), 3, "cannot make images of 4 channels into 3 channels"),
        (torch.rand(2, 1, 8, 8), 1, "images must be uint8 of shape"),
        (random_images(2, 1, 8, 8)[:, 0], 1, r"images must be uint8 of shape \(N, C, H, W\)"),
    ],
)
def test_bad_images_are_refused(images, channels, message):
    with pytest.raises(ValueError, match=message):
        resize_images(images, channels, (4, 4))
