import itertools
import math

import numpy as np
import pytest
import relplot  # the authors' reference implementation, a test-only dependency
import torch

from focalcal.metrics.binning import Bins, equal_width_edges
from focalcal.metrics.extensions import (
    MIN_BANDWIDTH,
    TOLERANCE,
    debiased_calibration_error,
    debiased_from_bins,
    smooth_calibration_error,
    smooth_ece,
)


def binned_l2_reference(confidence, correct, edges, debias=True):
    """The ℓ2 calibration error by Python loops over samples and bins, in float64.

    Bin b holds (edges[b], edges[b + 1]]; the first bin also takes values at or below edges[0]
    and the last values above edges[-1]. With ``debias``, Kumar et al.'s estimator: each bin
    with n >= 2 samples adds (n/N)·[(mean c − acc)² − acc(1 − acc)/(n − 1)], others add 0;
    the total is clipped at 0 before the square root. Without, the plug-in estimate.
    """
    num_bins = len(edges) - 1
    members = [[] for _ in range(num_bins)]
    for c, a in zip(confidence, correct, strict=True):
        b = next((b for b in range(num_bins - 1) if c <= edges[b + 1]), num_bins - 1)
        members[b].append((float(c), float(a)))
    total = 0.0
    for pairs in members:
        n = len(pairs)
        if n < (2 if debias else 1):
            continue
        mean_confidence = sum(c for c, _ in pairs) / n
        accuracy = sum(a for _, a in pairs) / n
        term = (mean_confidence - accuracy) ** 2
        if debias:
            term -= accuracy * (1 - accuracy) / (n - 1)
        total += n / len(confidence) * term
    return math.sqrt(max(total, 0.0))


def equal_mass_edges_reference(confidence, num_bins):
    """Interpolated quantiles at positions k·N/B of the sorted confidences (numpy)."""
    n = len(confidence)
    positions = [k * n / num_bins for k in range(num_bins + 1)]
    return np.interp(positions, np.arange(n), np.sort(confidence)).tolist()


def top_label_reference(probs, labels):
    probs = np.asarray(probs, dtype=np.float64)
    return probs.max(1), (probs.argmax(1) == np.asarray(labels)).astype(np.float64)


def binary_probs(confidence):
    return torch.stack([confidence, 1 - confidence], dim=1)


def assert_squares_close(got, expected):
    # The fixed-point sums round each confidence by at most 2^-25, which moves each bin's
    # (n_b/N)·gap_b² by at most 2|gap_b|·2^-25 / N: the total by at most 2^-24. Compare squares,
    # since the square root magnifies the rounding where the clipped total is close to 0.
    assert got.dtype == torch.float64 and got.dim() == 0
    assert float(got) ** 2 == pytest.approx(expected**2, abs=2**-24)


@pytest.mark.parametrize("num_samples", [1, 2, 7, 60])
@pytest.mark.parametrize("num_bins", [1, 4, 15, 40])
def test_debiased_from_bins_equals_loop(num_samples, num_bins):
    g = torch.Generator().manual_seed(num_samples * 100 + num_bins)
    confidence = torch.rand(num_samples, generator=g, dtype=torch.float64)
    confidence[: min(3, num_samples)] = torch.tensor([0.0, 1.0, 0.5])[: min(3, num_samples)]
    correct = torch.rand(num_samples, generator=g) < 0.6
    edges = [b / num_bins for b in range(num_bins + 1)]
    bins = Bins.top_label(confidence, correct, equal_width_edges(num_bins))
    expected = binned_l2_reference(confidence.tolist(), correct.tolist(), edges)
    assert_squares_close(debiased_from_bins(bins), expected)


@pytest.mark.parametrize(("num_samples", "num_bins"), [(1, 15), (5, 15), (30, 15), (37, 4)])
@pytest.mark.parametrize("ties", [False, True])
def test_debiased_equal_mass_equals_loop(num_samples, num_bins, ties):
    g = torch.Generator().manual_seed(num_samples + 7 * num_bins)
    confidence = 0.5 + 0.5 * torch.rand(num_samples, generator=g, dtype=torch.float64)
    if ties:
        confidence = (confidence * 10).round() / 10
    labels = torch.randint(2, (num_samples,), generator=g)
    probs = binary_probs(confidence)
    conf, correct = top_label_reference(probs, labels)
    edges = equal_mass_edges_reference(conf, num_bins)
    expected = binned_l2_reference(conf, correct, edges)
    got = debiased_calibration_error(probs, labels, num_bins=num_bins, from_probs=True)
    assert_squares_close(got, expected)


def test_debiased_from_logits_equals_loop():
    g = torch.Generator().manual_seed(3)
    logits = 2 * torch.randn(500, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(4, (500,), generator=g)
    conf, correct = top_label_reference(torch.softmax(logits, 1), labels)
    expected = binned_l2_reference(conf, correct, equal_mass_edges_reference(conf, 15))
    assert expected > 0.05  # the clipping at 0 is not what is being compared
    assert_squares_close(debiased_calibration_error(logits, labels), expected)


def test_debiased_is_much_closer_to_zero_than_plug_in_when_calibrated():
    debiased, plug_in = [], []
    for seed in range(200):
        g = torch.Generator().manual_seed(seed)
        confidence = 0.5 + 0.5 * torch.rand(200, generator=g, dtype=torch.float64)
        labels = (torch.rand(200, generator=g, dtype=torch.float64) >= confidence).long()
        probs = binary_probs(confidence)  # label 0, the prediction, is right with p = confidence
        debiased.append(float(debiased_calibration_error(probs, labels, from_probs=True)))
        conf, correct = top_label_reference(probs, labels)
        edges = equal_mass_edges_reference(conf, 15)
        plug_in.append(binned_l2_reference(conf, correct, edges, debias=False))
    assert np.mean(plug_in) > 0.08  # the plug-in bias, about sqrt(B·acc(1 − acc)/N)
    assert np.mean(debiased) < 0.3 * np.mean(plug_in)


def test_debiased_is_close_to_plug_in_when_clearly_miscalibrated():
    g = torch.Generator().manual_seed(11)
    confidence = 0.5 + 0.5 * torch.rand(5000, generator=g, dtype=torch.float64)
    labels = (torch.rand(5000, generator=g, dtype=torch.float64) >= confidence - 0.3).long()
    probs = binary_probs(confidence)
    conf, correct = top_label_reference(probs, labels)
    plug_in = binned_l2_reference(conf, correct, equal_mass_edges_reference(conf, 15), False)
    got = float(debiased_calibration_error(probs, labels, from_probs=True))
    assert plug_in == pytest.approx(0.3, abs=0.03)
    assert plug_in - 0.01 < got < plug_in


def smooth_ece_reference(confidence, correct, sigma, points=20_001):
    """∫₀¹ |(1/N) Σ_i K̃(t, f_i)(y_i − f_i)| dt by the trapezoid rule on a fine grid, with the
    reflected Gaussian K̃ written out as its sum of images φ(t − f − 2k) + φ(t + f − 2k)."""
    f = np.asarray(confidence, dtype=np.float64)
    residual = np.asarray(correct, dtype=np.float64) - f
    t = np.linspace(0.0, 1.0, points)[:, None]
    images = math.ceil(5 * sigma) + 2
    kernel = sum(
        np.exp(-0.5 * ((t - sign * f - 2 * k) / sigma) ** 2)
        for k in range(-images, images + 1)
        for sign in (1, -1)
    ) / (sigma * math.sqrt(2 * math.pi))
    smoothed = kernel @ residual / len(f)
    return float(np.trapezoid(np.abs(smoothed), t[:, 0]))


def miscalibrated_sample(num_samples, seed, slope=1.5):
    """Confidences in [0, 1], under-confident below 0.5 and over-confident above: the smoothed
    residual changes sign, so smECE depends on σ."""
    g = torch.Generator().manual_seed(seed)
    confidence = torch.rand(num_samples, generator=g, dtype=torch.float64)
    accuracy = (0.5 + slope * (confidence - 0.5)).clamp(0, 1)
    return confidence, torch.rand(num_samples, generator=g, dtype=torch.float64) < accuracy


@pytest.mark.parametrize("sigma", [0.01, 0.05, 0.2, 1.0, 3.0])
def test_smooth_ece_equals_direct_integration(sigma):
    confidence, correct = miscalibrated_sample(57, seed=1)
    confidence = torch.cat([confidence, torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64)])
    correct = torch.cat([correct, torch.tensor([True, False, True])])
    expected = smooth_ece_reference(confidence, correct, sigma)
    value, used = smooth_ece(confidence, correct, bandwidth=sigma)
    assert used == sigma and value.dtype == torch.float64
    assert float(value) == pytest.approx(expected, rel=1e-6)


def test_smooth_calibration_error_from_logits_equals_direct_integration():
    g = torch.Generator().manual_seed(5)
    logits = 2 * torch.randn(80, 3, generator=g, dtype=torch.float64)
    labels = torch.randint(3, (80,), generator=g)
    conf, correct = top_label_reference(torch.softmax(logits, 1), labels)
    got = smooth_calibration_error(logits, labels, bandwidth=0.05)
    assert float(got) == pytest.approx(smooth_ece_reference(conf, correct, 0.05), rel=1e-6)


@pytest.mark.parametrize(("num_samples", "seed"), [(50, 0), (1000, 1), (20_000, 2)])
def test_automatic_bandwidth_is_the_fixed_point(num_samples, seed):
    confidence, correct = miscalibrated_sample(num_samples, seed)
    value, sigma = smooth_ece(confidence, correct)
    assert sigma > MIN_BANDWIDTH
    assert abs(float(value) - sigma) <= TOLERANCE
    assert float(smooth_ece(confidence, correct, bandwidth=sigma)[0]) == float(value)


def test_smooth_ece_does_not_increase_with_bandwidth():
    for seed, slope in [(0, 1.5), (1, 0.6), (2, 1.0)]:
        confidence, correct = miscalibrated_sample(300, seed, slope)
        values = [
            float(smooth_ece(confidence, correct, float(s))[0]) for s in np.geomspace(1e-3, 2, 30)
        ]
        assert all(b <= a + 1e-12 for a, b in itertools.pairwise(values))
        assert values[0] > values[-1] + 0.01  # the examples do depend on σ


def test_smooth_ece_of_a_calibrated_large_sample_is_small():
    g = torch.Generator().manual_seed(0)
    confidence = torch.rand(200_000, generator=g, dtype=torch.float64)
    correct = torch.rand(200_000, generator=g, dtype=torch.float64) < confidence
    value, sigma = smooth_ece(confidence, correct)
    assert float(value) < 0.01
    assert abs(float(value) - sigma) <= TOLERANCE


def test_constant_over_confidence_of_0_1():
    probs = torch.tensor([[0.9, 0.05, 0.05]] * 1000, dtype=torch.float64)
    labels = (torch.arange(1000) % 5 == 4).long()  # 80 % are class 0, the prediction
    assert float(smooth_calibration_error(probs, labels, from_probs=True)) == pytest.approx(0.1)
    value, sigma = smooth_ece(probs[:, 0], labels == 0)
    assert float(value) == pytest.approx(0.1) and sigma == pytest.approx(0.1, abs=TOLERANCE)


def test_noisy_over_confidence_of_0_1():
    g = torch.Generator().manual_seed(4)
    confidence = 0.8 + 0.15 * torch.rand(100_000, generator=g, dtype=torch.float64)
    correct = torch.rand(100_000, generator=g, dtype=torch.float64) < confidence - 0.1
    assert float(smooth_ece(confidence, correct)[0]) == pytest.approx(0.1, abs=0.005)


def test_zero_residuals_give_zero_at_the_smallest_bandwidth():
    confidence = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    value, sigma = smooth_ece(confidence, confidence > 0.5)
    assert float(value) == 0.0 and sigma == MIN_BANDWIDTH


@pytest.mark.parametrize(("confidence", "correct"), [(1.0, False), (0.0, True), (0.5, True)])
def test_smooth_ece_never_exceeds_its_bound(confidence, correct):
    """Residuals all of one sign: the exact value is mean |y − f| at every σ; the FFT rounds it
    up by a few ulps at some σ on every CPU tried (1 + 4e-15 on an AMD EPYC)."""
    f = torch.full((3,), confidence, dtype=torch.float64)
    y = torch.full((3,), correct)
    exact = abs(float(correct) - confidence)
    for sigma in np.linspace(MIN_BANDWIDTH, 1.0, 200):
        value = float(smooth_ece(f, y, bandwidth=float(sigma))[0])
        assert value <= 1.0 and value == pytest.approx(exact, rel=1e-12)
    assert float(smooth_ece(f, y)[0]) <= 1.0


@pytest.mark.parametrize("num_samples", [500, 20_000])
def test_smooth_ece_matches_relplot(num_samples):
    confidence, correct = miscalibrated_sample(num_samples, seed=2, slope=1.4)
    f, y = confidence.numpy(), correct.double().numpy()
    for sigma in (0.02, 0.05, 0.1):
        # relplot spreads residuals on 1 001 points and cuts the kernel at ±0.5: ~0.2 % apart
        expected = relplot.metrics.smECE_sigma(f, y, sigma)
        assert float(smooth_ece(confidence, correct, sigma)[0]) == pytest.approx(expected, rel=5e-3)
    # relplot bisects 10 times on [0, 1] and keeps the upper end: σ to within 2^-10.
    expected_value, expected_sigma = relplot.smECE(f, y, return_width=True)
    value, sigma = smooth_ece(confidence, correct)
    assert sigma == pytest.approx(expected_sigma, abs=2e-3)
    assert float(value) == pytest.approx(expected_value, abs=1e-3)


GOOD_PROBS = torch.tensor([[0.7, 0.3], [0.4, 0.6]], dtype=torch.float64)
GOOD_LABELS = torch.tensor([0, 0])


@pytest.mark.parametrize(
    ("scores", "labels", "kwargs", "match"),
    [
        (GOOD_PROBS, GOOD_LABELS, {"num_bins": 0}, "num_bins"),
        (GOOD_PROBS, GOOD_LABELS, {"num_bins": 2.5}, "num_bins"),
        (GOOD_PROBS, GOOD_LABELS, {"num_bins": True}, "num_bins"),
        (GOOD_PROBS[:, 0], GOOD_LABELS, {}, "scores must have shape"),
        (GOOD_PROBS, GOOD_LABELS.double(), {"from_probs": True}, "labels must hold class"),
        (GOOD_PROBS, torch.tensor([0, 2]), {"from_probs": True}, "labels must lie in"),
        (GOOD_PROBS * 2, GOOD_LABELS, {"from_probs": True}, "probabilities must"),
        (torch.tensor([[0.0, math.nan]]), torch.tensor([0]), {}, "NaN"),
        (torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), {}, "empty"),
    ],
)
def test_debiased_bad_input(scores, labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        debiased_calibration_error(scores, labels, **kwargs)


def test_debiased_from_empty_bins():
    edges = equal_width_edges(3)
    empty = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="no samples"):
        debiased_from_bins(Bins(edges, empty, empty, empty))


@pytest.mark.parametrize("bandwidth", [0.0, -0.1, math.nan, math.inf, True, 1e-4, "0.1"])
def test_smooth_bad_bandwidth(bandwidth):
    with pytest.raises(ValueError, match="bandwidth"):
        smooth_calibration_error(GOOD_PROBS, GOOD_LABELS, from_probs=True, bandwidth=bandwidth)
    with pytest.raises(ValueError, match="bandwidth"):
        smooth_ece(GOOD_PROBS[:, 0], GOOD_LABELS == 0, bandwidth=bandwidth)


CONFIDENCE = torch.tensor([0.2, 0.9], dtype=torch.float64)


@pytest.mark.parametrize(
    ("confidence", "correct", "match"),
    [
        (GOOD_PROBS, torch.ones(2, 2), "confidence must have shape"),
        (torch.tensor([0, 1]), torch.ones(2), "confidence must be a floating-point"),
        (torch.tensor([0.2, 1.5]), torch.ones(2), "confidence must lie in"),
        (torch.tensor([0.2, math.nan]), torch.ones(2), "confidence must lie in"),
        (CONFIDENCE, torch.ones(3), "correct must be a tensor of shape"),
        (CONFIDENCE, [1, 0, 1], "correct must be a tensor of shape"),
        (CONFIDENCE, torch.tensor([2, 0]), "correct must be 0/1"),
        (torch.zeros(0), torch.zeros(0), "empty"),
    ],
)
def test_smooth_bad_pairs(confidence, correct, match):
    with pytest.raises(ValueError, match=match):
        smooth_ece(confidence, correct)


def test_smooth_calibration_error_checks_scores_and_labels():
    with pytest.raises(ValueError, match="labels must lie in"):
        smooth_calibration_error(GOOD_PROBS, torch.tensor([0, 5]), from_probs=True)
