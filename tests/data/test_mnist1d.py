"""MNIST-1D's batched generator against the published recipe applied one sample at a time."""

import numpy as np
from scipy.ndimage import gaussian_filter

from focalcal.data.mnist1d import generate_mnist1d, templates


def resample(x, size):
    return np.interp(np.linspace(0, 1, size), np.linspace(0, 1, len(x)), x)


def recipe_sample(template, rng):
    """The authors' transform: pad, stretch, scale, roll, noise, shear, resample."""
    padding = 36 + int(rng.rand() * 25)
    x = resample(np.concatenate([template + 1e-8, np.zeros(padding)]), 72)
    x = x * (1 + 0.4 * (rng.rand() - 0.5))
    shift = rng.choice(48)
    x = np.concatenate([x[-shift:], x[:-shift]]) if shift else x
    correlated = gaussian_filter(0.25 * rng.randn(72), 2)
    mask = x != 0
    x = mask * x + (1 - mask) * correlated + 0.02 * rng.randn(72)
    x = x - 0.75 * (rng.rand() - 0.5) * np.linspace(-0.5, 0.5, 72)
    return resample(x, 40)


def test_generator_equals_the_recipe_sample_by_sample():
    rng = np.random.RandomState(5)
    shapes = templates()
    xs = np.stack([recipe_sample(shape, rng) for shape in shapes for _ in range(500)])
    ys = np.repeat(np.arange(10), 500)
    order = rng.permutation(5000)
    xs, ys = xs[order], ys[order]
    xs = (xs - xs.mean()) / xs.std()
    for split, rows in (("train", slice(0, 4000)), ("test", slice(4000, 5000))):
        x, y = generate_mnist1d(split, seed=5)
        np.testing.assert_allclose(x[:, 0].double().numpy(), xs[rows], atol=1e-6)
        assert (y.numpy() == ys[rows]).all()


def test_templates_are_whitened_and_start_at_zero():
    shapes = templates()
    assert shapes.shape == (10, 12) and np.allclose(shapes[:, 0], 0)
    np.testing.assert_allclose(shapes.std(1) * 6, 1)
