import colorsys
import io
import itertools

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F
from PIL import Image

from focalcal.data.corruptions import CORRUPTIONS, corrupt

RANDOM = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def natural(n, channels, height=32, width=32, seed=0):
    """Smooth images with detail at a few scales, each channel stretched to 0..255."""
    generator = torch.Generator().manual_seed(seed)
    x = sum(
        weight
        * F.interpolate(
            torch.rand(n, channels, side, side, generator=generator),
            size=(height, width),
            mode="bicubic",
            align_corners=False,
        )
        for side, weight in ((4, 0.6), (8, 0.3), (16, 0.15))
    )
    low, high = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
    return ((x - low) / (high - low) * 255).round().to(torch.uint8)


def grey(level, n=8, channels=3, side=32):
    return torch.full((n, channels, side, side), level, dtype=torch.uint8)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def pillow(images, edit):
    """``edit`` (a function of a PIL image) applied to each image of a uint8 batch."""
    out = []
    for image in images.permute(0, 2, 3, 1).numpy():
        result = np.array(edit(Image.fromarray(image.squeeze(2) if image.shape[2] == 1 else image)))
        out.append(torch.from_numpy(result.reshape(image.shape)).permute(2, 0, 1))
    return torch.stack(out)


def pillow_jpeg(image, quality):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(buffer)


def test_the_cifar_10_c_names_are_there():
    required = {"gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "contrast"}
    assert required | {"brightness", "pixelate", "jpeg_compression"} <= set(CORRUPTIONS)


@pytest.mark.parametrize(("severity", "std"), list(enumerate([0.04, 0.06, 0.08, 0.09, 0.10], 1)))
def test_gaussian_noise_has_the_published_std(severity, std):
    noisy = corrupt(grey(128), "gaussian_noise", severity, seeded()).double() / 255
    assert abs(noisy.mean() - 128 / 255) < 0.002
    assert noisy.std().item() == pytest.approx(std, rel=0.03)


@pytest.mark.parametrize("level", [64, 128])
@pytest.mark.parametrize(("severity", "photons"), [(1, 500), (3, 100), (5, 50)])
def test_shot_noise_keeps_the_mean_with_poisson_variance(level, severity, photons):
    noisy = corrupt(grey(level), "shot_noise", severity, seeded()).double() / 255
    x = level / 255
    assert abs(noisy.mean().item() - x) < 0.002
    assert noisy.var().item() == pytest.approx(x / photons, rel=0.06)
    # Poisson counts k come back as the levels nearest 255 k / photons.
    counts = torch.arange(photons + 1, dtype=torch.float64)
    assert set((noisy * 255).round().unique().tolist()) <= set(
        (counts * 255 / photons).round().tolist()
    )


@pytest.mark.parametrize(("severity", "amount"), list(enumerate([0.01, 0.02, 0.03, 0.05, 0.07], 1)))
def test_impulse_noise_flips_the_published_fraction_half_to_black_half_to_white(severity, amount):
    noisy = corrupt(grey(128, n=16), "impulse_noise", severity, seeded())
    assert set(noisy.unique().tolist()) <= {0, 128, 255}
    assert (noisy != 128).double().mean().item() == pytest.approx(amount, rel=0.1)
    assert (noisy == 255).sum().item() == pytest.approx((noisy == 0).sum().item(), rel=0.15)


def test_speckle_noise_scales_with_the_pixel():
    noisy = corrupt(grey(128), "speckle_noise", 5, seeded()).double() / 255
    assert noisy.std().item() == pytest.approx(0.2 * 128 / 255, rel=0.03)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("severity", "factor"), list(enumerate([0.75, 0.5, 0.4, 0.3, 0.15], 1)))
def test_contrast_matches_the_formula(channels, severity, factor):
    images = natural(4, channels)
    x = images.double().numpy() / 255
    means = x.mean(axis=(2, 3), keepdims=True)
    expected = np.round(np.clip((x - means) * factor + means, 0, 1) * 255)
    out = corrupt(images, "contrast", severity).double().numpy()
    assert np.abs(out - expected).max() <= 1  # float32 against float64 at .5 ties
    assert (out == expected).mean() > 0.99


@pytest.mark.parametrize(("severity", "shift"), list(enumerate([0.05, 0.1, 0.15, 0.2, 0.3], 1)))
def test_brightness_raises_the_hsv_value(severity, shift):
    pixels = torch.randint(0, 256, (1, 3, 10, 20), generator=seeded(), dtype=torch.uint8)
    pixels[0, :, 0, :3] = torch.tensor([[0, 255, 250], [0, 255, 3], [0, 255, 3]])
    out = corrupt(pixels, "brightness", severity)
    for rgb, got in zip(pixels[0].flatten(1).T.tolist(), out[0].flatten(1).T.tolist(), strict=True):
        h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
        expected = colorsys.hsv_to_rgb(h, s, min(v + shift, 1.0))
        assert got == pytest.approx([c * 255 for c in expected], abs=0.5 + 1e-4)


def test_brightness_of_one_channel_adds_to_the_intensity():
    levels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    expected = (levels.double() / 255 + 0.3).clamp(max=1) * 255
    assert corrupt(levels, "brightness", 5).double().sub(expected).abs().max() <= 0.5 + 1e-4


@pytest.mark.parametrize(
    ("channels", "height", "width", "tolerance"),
    # Measured mean |ours - Pillow| is 0.24–0.37 (RGB) and 0.12–0.26 (grey) levels, from
    # libjpeg's integer DCT; swapping the tables, leaving chroma at full resolution or
    # transposing the tables all give 1.7 levels or more.
    [(3, 32, 32, 0.75), (3, 27, 35, 0.75), (1, 32, 32, 0.5), (1, 13, 21, 0.5)],
)
def test_jpeg_matches_pillow(channels, height, width, tolerance):
    images = natural(16, channels, height, width)
    for severity, quality in enumerate([80, 65, 58, 50, 40], 1):
        ours = corrupt(images, "jpeg_compression", severity).double()
        theirs = pillow(images, lambda image, q=quality: pillow_jpeg(image, q)).double()
        assert (ours - theirs).abs().mean() < tolerance
        assert (images.double() - theirs).abs().mean() > 2 * tolerance  # doing nothing fails


@pytest.mark.parametrize(("channels", "height", "width"), [(3, 32, 32), (1, 32, 32), (3, 27, 35)])
def test_pixelate_is_pillows_box_resize_there_and_back(channels, height, width):
    images = natural(8, channels, height, width)
    for severity, factor in enumerate([0.95, 0.9, 0.85, 0.75, 0.65], 1):
        size = (int(width * factor), int(height * factor))
        theirs = pillow(
            images, lambda image, s=size: image.resize(s, Image.BOX).resize(image.size, Image.BOX)
        )
        assert corrupt(images, "pixelate", severity).equal(theirs)
        if (height, width) == (32, 32):  # Pillow's NEAREST enlarges alike at this size
            nearest = pillow(
                images,
                lambda image, s=size: image.resize(s, Image.BOX).resize(image.size, Image.NEAREST),
            )
            assert theirs.equal(nearest)


def reference_disk(radius, alias_blur):
    """make_cifar_c.py's ``disk``: on a 17 × 17 grid, then a 3-tap Gaussian along each axis."""
    t = np.arange(-8, 9)
    disk = (t[:, None] ** 2 + t[None, :] ** 2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    g = np.exp(-(np.arange(-1, 2) ** 2) / (2 * alias_blur**2))
    g /= g.sum()
    return scipy.ndimage.correlate(disk, np.outer(g, g), mode="constant")


DISKS = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)]


@pytest.mark.parametrize(("severity", "disk"), list(enumerate(DISKS, 1)))
def test_defocus_blur_spreads_a_point_into_the_disk(severity, disk):
    point = torch.zeros(1, 1, 33, 33, dtype=torch.uint8)
    point[0, 0, 16, 16] = 255
    expected = reference_disk(*disk) * 255
    got = corrupt(point, "defocus_blur", severity)[0, 0, 8:25, 8:25].double().numpy()
    assert np.abs(got - expected).max() <= 0.5 + 1e-4
    assert corrupt(point, "defocus_blur", severity).sum() == pytest.approx(255, abs=8)


@pytest.mark.parametrize(("severity", "disk"), list(enumerate(DISKS, 1)))
def test_defocus_blur_filters_like_cv2_with_mirrored_borders(severity, disk):
    images = natural(2, 3)
    # scipy's "mirror" is cv2's BORDER_REFLECT_101.
    expected = scipy.ndimage.correlate(
        images.double().numpy(), reference_disk(*disk)[None, None], mode="mirror"
    )
    got = corrupt(images, "defocus_blur", severity).double().numpy()
    assert np.abs(got - np.clip(expected, 0, 255)).max() <= 0.5 + 1e-4
    flat = grey(77, n=2, channels=1, side=5)
    assert corrupt(flat, "defocus_blur", severity).equal(flat)


@pytest.mark.parametrize(("severity", "sigma"), list(enumerate([0.4, 0.6, 0.7, 0.8, 1.0], 1)))
def test_gaussian_blur_matches_scipy(severity, sigma):
    images = natural(2, 3)
    expected = scipy.ndimage.gaussian_filter(
        images.double().numpy(), sigma=(0, 0, sigma, sigma), mode="nearest"
    )
    got = corrupt(images, "gaussian_blur", severity).double().numpy()
    assert np.abs(got - expected).max() <= 0.5 + 1e-4


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_damage_grows_with_severity(name):
    images = natural(8, 3)
    damage = [
        (corrupt(images, name, severity, seeded()).double() - images.double()).abs().mean()
        for severity in range(1, 6)
    ]
    assert all(a < b for a, b in itertools.pairwise(damage)), damage


@pytest.mark.parametrize("name", RANDOM)
def test_a_seeded_generator_repeats_itself(name):
    images = natural(2, 3)
    first = corrupt(images, name, 3, seeded(7))
    assert corrupt(images, name, 3, seeded(7)).equal(first)
    assert not corrupt(images, name, 3, seeded(8)).equal(first)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_shape_dtype_and_device_are_kept(name, channels, device):
    images = natural(2, channels, 13, 21).to(device)
    generator = torch.Generator(device).manual_seed(0)
    out = corrupt(images, name, 5, generator)
    assert (out.shape, out.dtype, out.device) == (images.shape, torch.uint8, images.device)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((grey(1), "fog", 1), r"name must be one of gaussian_noise, .*got 'fog'"),
        ((grey(1), "contrast", 0), "severity must be an integer in 1..5, got 0"),
        ((grey(1), "contrast", 6), "severity must be an integer in 1..5, got 6"),
        ((grey(1), "contrast", 2.0), "severity must be an integer in 1..5, got 2.0"),
        ((grey(1).float(), "contrast", 1), "images must be a uint8 tensor, got torch.float32"),
        ((grey(1)[0], "contrast", 1), r"images must have shape \(N, C, H, W\) .*got \(3, 32, 32\)"),
        ((grey(1, channels=2), "contrast", 1), r"with C = 1 or 3, got \(8, 2, 32, 32\)"),
        (
            (grey(1).to("meta"), "gaussian_noise", 1, seeded()),
            "generator is on cpu but images on meta",
        ),
    ],
)
def test_bad_arguments_are_named(arguments, message):
    with pytest.raises(ValueError, match=message):
        corrupt(*arguments)
