"""Histogram binning (one-vs-rest and top-label), isotonic regression and beta calibration
against references written here as plain loops (bins by their (lo, hi] definition, a stack
pool-adjacent-violators, np.interp), against scikit-learn's IsotonicRegression and scipy's
L-BFGS-B on the beta NLL with a, b >= 0; and the ECE on held-out halves, round trips, extreme
logits and bad options."""

import math

import numpy as np
import pytest
import torch
from scipy import optimize, special
from sklearn.isotonic import IsotonicRegression

from focalcal.metrics import expected_calibration_error
from focalcal.scaling import calibrator_names, fit_calibrator, load_calibrator, save_calibrator
from focalcal.scaling.nonparametric import (
    BETA_CLIP,
    PROBABILITY_FLOOR,
    Beta,
    Histogram,
    Isotonic,
    TopLabelHistogram,
)
from tests.test_scaling import BAD_INPUTS, sample

NAMES = ["histogram", "top-label-histogram", "isotonic", "beta"]

CASES = {  # n, C, logits from the true ones, seed
    "over-confident": (1000, 5, lambda t: 3 * t, 0),
    "under-confident": (1000, 5, lambda t: 0.3 * t, 1),
    "two classes": (600, 2, lambda t: 4 * t, 2),
    "ten classes, ties": (1500, 10, lambda t: (2 * t * 2).round() / 2, 3),  # many equal rows
    "seven samples": (7, 3, lambda t: 2 * t, 4),
}


def case_data(case):
    n, c, transform, seed = case
    true, labels = sample(n, c, seed)
    return transform(true), labels


def halves(z, y):
    half = len(y) // 2
    return (z[:half], y[:half]), (z[half:], y[half:])


def probabilities(z):
    """softmax in float64, the calibrators' p (the input the references share)."""
    return torch.softmax(z.double(), dim=1).numpy()


def renormalised(q):
    """Clamped one-vs-rest values q (M, C) renormalised, as log-probabilities."""
    q = np.clip(q, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return np.log(q / q.sum(axis=1, keepdims=True))


def bin_of(value, num_bins):
    """The b with b/B < value <= (b+1)/B; 0 for value 0."""
    b = 0
    while b < num_bins - 1 and value > (b + 1) / num_bins:
        b += 1
    return b


def bin_values(values, hits, num_bins):
    """Per bin: the frequency of hits, or the bin's centre if empty."""
    count, positive = [0] * num_bins, [0] * num_bins
    for v, h in zip(values, hits, strict=True):
        b = bin_of(v, num_bins)
        count[b] += 1
        positive[b] += h
    return [positive[b] / count[b] if count[b] else (b + 0.5) / num_bins for b in range(num_bins)]


def histogram_reference(z_fit, y_fit, z_new, num_bins):
    p, p_new, y = probabilities(z_fit), probabilities(z_new), y_fit.numpy()
    q = np.empty_like(p_new)
    for k in range(p.shape[1]):
        table = bin_values(p[:, k], y == k, num_bins)
        q[:, k] = [table[bin_of(v, num_bins)] for v in p_new[:, k]]
    return renormalised(q)


def top_label_reference(z_fit, y_fit, z_new, num_bins):
    p, p_new, y = probabilities(z_fit), probabilities(z_new), y_fit.numpy()
    prediction, prediction_new = z_fit.numpy().argmax(1), z_new.numpy().argmax(1)
    tables = {}
    for j in range(p.shape[1]):
        mine = prediction == j
        tables[j] = bin_values(p[mine].max(1), y[mine] == j, num_bins)
    out = np.empty_like(p_new)
    for i, (row, j) in enumerate(zip(p_new, prediction_new, strict=True)):
        a = np.clip(
            tables[j][bin_of(row.max(), num_bins)], PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR
        )
        rest = np.delete(row, j).sum()  # 1 − p_j, without cancellation
        out[i] = (1 - a) * row / rest
        out[i, j] = a
    return np.log(out)


def pav(values, weights):
    """Pool adjacent violators with a stack of [mean, weight, points]; one value per point."""
    blocks = []
    for v, w in zip(values, weights, strict=True):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] >= blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks[-1]
            blocks[-1] = [(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2]
    return np.array([v for v, _, n in blocks for _ in range(n)])


def isotonic_reference(z_fit, y_fit, z_new):
    """Per class: mean label per distinct p, PAV, np.interp of the clipped new p."""
    p, p_new, y = probabilities(z_fit), probabilities(z_new), y_fit.numpy()
    q = np.empty_like(p_new)
    for k in range(p.shape[1]):
        xs, inverse, counts = np.unique(p[:, k], return_inverse=True, return_counts=True)
        means = np.bincount(inverse, weights=(y == k).astype(float)) / counts
        fitted = pav(means, counts.astype(float))
        q[:, k] = np.interp(np.clip(p_new[:, k], xs[0], xs[-1]), xs, fitted)
    return renormalised(q)


def sklearn_isotonic(z_fit, y_fit, z_new):
    p, p_new, y = probabilities(z_fit), probabilities(z_new), y_fit.numpy()
    q = np.empty_like(p_new)
    for k in range(p.shape[1]):
        model = IsotonicRegression(out_of_bounds="clip").fit(p[:, k], (y == k).astype(float))
        q[:, k] = model.predict(p_new[:, k])
    return renormalised(q)


def beta_features(z):
    """(ln p_k, −ln(1 − p_k), 1) per class, p clipped as betacal does, 1 − p_k summed from the
    other classes in log space: a list of (M, 3) arrays."""
    log_p = special.log_softmax(z.double().numpy(), axis=1)
    low, high = math.log(BETA_CLIP), math.log1p(-BETA_CLIP)
    out = []
    for k in range(log_p.shape[1]):
        log_rest = special.logsumexp(np.delete(log_p, k, axis=1), axis=1)
        f1, f2 = np.clip(log_p[:, k], low, high), -np.clip(log_rest, low, high)
        out.append(np.stack([f1, f2, np.ones_like(f1)], axis=1))
    return out


def beta_nll(theta, x, t):
    eta = x @ theta
    return float(np.mean(np.logaddexp(0, eta) - t * eta))


def beta_lbfgs(x, t, bounds=((0, None), (0, None), (None, None))):
    def fun(theta):
        eta = x @ theta
        grad = x.T @ (special.expit(eta) - t) / len(t)
        return float(np.mean(np.logaddexp(0, eta) - t * eta)), grad

    result = optimize.minimize(
        fun,
        np.zeros(x.shape[1]),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds[: x.shape[1]],
        options={"maxiter": 20_000, "ftol": 1e-15, "gtol": 1e-11},
    )
    return result.x


# --- against the references -----------------------------------------------------------------


@pytest.mark.parametrize("num_bins", [1, 4, 15])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_histogram_matches_the_loop_reference(case, num_bins):
    (z_fit, y_fit), (z_new, _) = halves(*case_data(case))
    fitted = fit_calibrator("histogram", z_fit, y_fit, num_bins=num_bins)
    expected = histogram_reference(z_fit, y_fit, z_new, num_bins)
    np.testing.assert_allclose(fitted.transform(z_new).numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("num_bins", [1, 4, 15])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_top_label_histogram_matches_the_loop_reference(case, num_bins):
    (z_fit, y_fit), (z_new, _) = halves(*case_data(case))
    fitted = fit_calibrator("top-label-histogram", z_fit, y_fit, num_bins=num_bins)
    expected = top_label_reference(z_fit, y_fit, z_new, num_bins)
    np.testing.assert_allclose(fitted.transform(z_new).numpy(), expected, rtol=0, atol=1e-12)


def test_bins_hold_their_upper_edge():
    """Rows of equal logits have p = 1/3 = 5/15 and 1/2 = 2/4 exactly: an upper edge, so in the
    lower bin; the fitted counts say so."""
    z = torch.zeros(4, 3)
    fitted = fit_calibrator("histogram", z, torch.tensor([0, 1, 2, 0]))
    assert fitted.counts[:, 4].tolist() == [4.0, 4.0, 4.0]
    z = torch.zeros(4, 2)
    fitted = fit_calibrator("top-label-histogram", z, torch.tensor([0, 1, 0, 0]), num_bins=4)
    assert fitted.counts.tolist() == [[0.0, 4.0, 0.0, 0.0], [0.0] * 4]
    assert fitted.positives[0, 1] == 3.0


def test_empty_bins_keep_their_centre_and_frequencies_are_clamped():
    z = torch.tensor([[3.0, 0.0]] * 4)  # p_0 = 0.953 (bin 14 of 15), p_1 = 0.047 (bin 0)
    fitted = fit_calibrator("histogram", z, torch.zeros(4, dtype=torch.long))
    frequencies = fitted.frequencies()
    assert frequencies[0, 14] == 1.0 and frequencies[1, 0] == 0.0
    centres = (torch.arange(15, dtype=torch.float64) + 0.5) / 15
    assert torch.equal(frequencies[0, :14], centres[:14])
    # q = (1 − 1e-6, 1e-6), renormalised: they sum to 1 already
    expected = torch.tensor([1 - PROBABILITY_FLOOR, PROBABILITY_FLOOR], dtype=torch.float64)
    assert torch.allclose(fitted.transform(z).exp()[0], expected, rtol=1e-12, atol=0)
    assert fitted.summary() == {"empty_bins": 28}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_isotonic_matches_the_loop_reference(case):
    (z_fit, y_fit), (z_new, _) = halves(*case_data(case))
    fitted = fit_calibrator("isotonic", z_fit, y_fit)
    expected = isotonic_reference(z_fit, y_fit, z_new)
    np.testing.assert_allclose(fitted.transform(z_new).numpy(), expected, rtol=0, atol=1e-12)


SKLEARN_CASES = {  # none with distinct probabilities closer than 1e-15 (checked)
    "under-confident": CASES["under-confident"],
    "two classes": CASES["two classes"],
    # rows of half-integers, sorted: equal rows tie exactly (where only the order of the
    # classes differs, p_k would differ by rounding, which scikit-learn merges and we do not)
    "three classes, ties": (1500, 3, lambda t: ((2 * t).round() / 2).sort(dim=1).values, 5),
}


@pytest.mark.parametrize("case", SKLEARN_CASES.values(), ids=SKLEARN_CASES.keys())
def test_isotonic_matches_scikit_learn(case):
    """Its points are scikit-learn's X_thresholds_ / y_thresholds_ and its predictions
    IsotonicRegression(out_of_bounds="clip")'s, renormalised. scikit-learn also merges values
    closer than 1e-15: the cases chosen have none."""
    (z_fit, y_fit), (z_new, _) = halves(*case_data(case))
    p = probabilities(z_fit)
    gaps = np.diff(np.sort(p, axis=0), axis=0)
    assert not ((gaps > 0) & (gaps < 1e-15)).any()
    fitted = fit_calibrator("isotonic", z_fit, y_fit)
    for k in range(p.shape[1]):
        model = IsotonicRegression(out_of_bounds="clip").fit(p[:, k], (y_fit.numpy() == k) * 1.0)
        points = len(model.X_thresholds_)
        assert (fitted.x_thresholds[k, points - 1 :] == model.X_thresholds_[-1]).all()  # padding
        np.testing.assert_array_equal(fitted.x_thresholds[k, :points].numpy(), model.X_thresholds_)
        np.testing.assert_allclose(
            fitted.y_thresholds[k, :points].numpy(), model.y_thresholds_, rtol=0, atol=1e-14
        )
    expected = sklearn_isotonic(z_fit, y_fit, z_new)
    np.testing.assert_allclose(fitted.transform(z_new).numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["falling", "contrived"])
def test_isotonic_pools_like_the_loop_reference_where_pooling_takes_many_rounds(kind):
    """Falling: the label frequency falls as p grows, so nearly everything pools into one
    block. Contrived: 100 groups of 99 tied samples whose means are 1, 0, 1/99, 2/99, …, a
    sequence that pools one step further each round."""
    g = torch.Generator().manual_seed(14)
    if kind == "falling":
        p = torch.linspace(0.01, 0.99, 5000, dtype=torch.float64)
        y = (torch.rand(5000, generator=g, dtype=torch.float64) < 1 - p).long()
    else:
        p = torch.linspace(0.05, 0.95, 100, dtype=torch.float64).repeat_interleave(99)
        ones = [99, *range(99)]  # the number of label-1 samples in each group
        y = torch.tensor([int(i < n) for n in ones for i in range(99)])
    z = torch.stack([torch.logit(p), torch.zeros_like(p)], dim=1)
    y = 1 - y  # class 1 has p_1 = 1 − p: both classes pool
    z_new = torch.stack([torch.linspace(-6, 6, 999, dtype=torch.float64), torch.zeros(999)], 1)
    fitted = fit_calibrator("isotonic", z, y)
    expected = isotonic_reference(z, y, z_new)
    np.testing.assert_allclose(fitted.transform(z_new).numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_beta_minimises_the_nll_over_a_b_nonnegative(case):
    """Per class, the NLL at the fit is at most scipy's L-BFGS-B minimum with a, b >= 0 (to
    1e-10: both stop within ~1e-12 of the minimum), and the calibrated values agree to 1e-5
    (L-BFGS-B's coefficients are good to about 1e-6)."""
    (z_fit, y_fit), (z_new, _) = halves(*case_data(case))
    fitted = fit_calibrator("beta", z_fit, y_fit)
    coefficients = fitted.coefficients.numpy()
    assert (coefficients[:, :2] >= 0).all()
    features, new_features = beta_features(z_fit), beta_features(z_new)
    q_ours, q_scipy = [], []
    for k, x in enumerate(features):
        t = (y_fit.numpy() == k) * 1.0
        reference = beta_lbfgs(x, t)
        assert beta_nll(coefficients[k], x, t) <= beta_nll(reference, x, t) + 1e-10
        q_ours.append(-np.logaddexp(0, -new_features[k] @ coefficients[k]))  # log σ
        q_scipy.append(-np.logaddexp(0, -new_features[k] @ reference))
    ours, scipy_q = np.stack(q_ours, 1), np.stack(q_scipy, 1)
    if case[0] > 100:  # seven samples: separable classes, the minimum lies at infinity
        np.testing.assert_allclose(np.exp(ours), np.exp(scipy_q), rtol=0, atol=1e-5)
    expected = ours - special.logsumexp(ours, axis=1, keepdims=True)
    np.testing.assert_allclose(fitted.transform(z_new).numpy(), expected, rtol=0, atol=1e-12)


def test_beta_fixes_a_negative_coefficient_at_zero():
    """Labels from q = σ(−0.5 ln p + 2 (−ln(1 − p))): the unconstrained fit has a < 0 for
    class 0 (and, by symmetry, b < 0 for class 1). Kull et al.'s fix, refitting without that
    feature, is what the fit gives."""
    g = torch.Generator().manual_seed(7)
    p = 0.01 + 0.98 * torch.rand(4000, generator=g, dtype=torch.float64)
    z = torch.stack([torch.logit(p), torch.zeros_like(p)], dim=1)
    truth = torch.sigmoid(-0.5 * p.log() - 2 * torch.log1p(-p))
    y = (torch.rand(4000, generator=g, dtype=torch.float64) >= truth).long()  # y = 0 w.p. truth
    features = beta_features(z)
    unconstrained = beta_lbfgs(features[0], (y.numpy() == 0) * 1.0, bounds=((None, None),) * 3)
    assert unconstrained[0] < 0
    fitted = fit_calibrator("beta", z, y).coefficients
    assert fitted[0, 0] == 0 and fitted[1, 1] == 0
    for k, dropped in ((0, 0), (1, 1)):
        kept = [j for j in range(3) if j != dropped]
        t = (y.numpy() == k) * 1.0
        refit = beta_lbfgs(features[k][:, kept], t, bounds=((None, None),) * 2)
        assert refit[0] > 0
        np.testing.assert_allclose(fitted[k, kept].numpy(), refit, rtol=1e-4, atol=1e-5)


def test_beta_identity_is_the_softmax():
    z = sample(50, 4, 8)[0]
    out = Beta(4).transform(z)
    assert torch.allclose(out, torch.log_softmax(z, 1), rtol=0, atol=1e-12)


def test_beta_reaches_frequencies_of_two_distinct_values():
    """Two distinct p per class pin only two of three coefficients: the pseudo-inverse step
    still reaches the frequencies, 0.8 and 0.2."""
    z = torch.tensor([[2.0, 0.0], [0.0, 2.0]]).repeat(50, 1)
    y = torch.tensor([0, 1] * 40 + [1, 0] * 10)
    p = fit_calibrator("beta", z, y).transform(z).exp()
    assert torch.allclose(
        p[:2], torch.tensor([[0.8, 0.2], [0.2, 0.8]], dtype=torch.float64), atol=1e-6
    )


# --- every method ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_lowers_the_ece_of_over_confident_logits_on_held_out_data(name):
    true, labels = sample(6000, 5, 9)
    (z_fit, y_fit), (z_test, y_test) = halves(3 * true, labels)
    before = float(expected_calibration_error(z_test, y_test))
    after = float(
        expected_calibration_error(fit_calibrator(name, z_fit, y_fit).transform(z_test), y_test)
    )
    assert before > 0.1
    assert after < before / 2  # 0.26 → 0.02 to 0.08


@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_give_the_same_transform_bits(name, tmp_path):
    z, y = case_data(CASES["ten classes, ties"])
    fitted = fit_calibrator(name, z, y)
    loaded = load_calibrator(save_calibrator(fitted, tmp_path / "map.json"))
    assert type(loaded) is type(fitted) and loaded.options() == fitted.options()
    assert loaded.summary() == fitted.summary()
    z_new = 5 * sample(300, 10, 10)[0]
    assert torch.equal(loaded.transform(z_new), fitted.transform(z_new))
    again = fit_calibrator(name, z, y)  # deterministic
    assert torch.equal(again.transform(z_new), fitted.transform(z_new))


@pytest.mark.parametrize("scale", [1e4, 1e30])
@pytest.mark.parametrize("name", NAMES)
def test_extreme_logits_give_finite_distributions(name, scale):
    """Fitted on ordinary and on extreme logits (p exactly 0 and 1), applied to extreme ones,
    including a class that never occurs: finite log-probabilities whose exp sums to 1."""
    z, y = sample(400, 4, 11)
    y = y.clamp(max=2)  # class 3 never occurs
    extreme = (scale * z).float()
    for fit_logits in (z, extreme):
        out = fit_calibrator(name, fit_logits, y).transform(extreme)
        assert out.dtype == torch.float64 and bool(out.isfinite().all())
        assert torch.allclose(out.exp().sum(1), torch.ones(400, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_a_single_class_gives_log_one(name):
    z, y = torch.randn(5, 1), torch.zeros(5, dtype=torch.long)
    assert torch.equal(
        fit_calibrator(name, z, y).transform(z), torch.zeros(5, 1, dtype=torch.float64)
    )


@pytest.mark.parametrize("name", NAMES)
def test_spatial_logits_are_samples(name):
    z, y = (
        torch.randn(6, 3, 2, 2, generator=torch.Generator().manual_seed(12)),
        torch.randint(0, 3, (6, 2, 2), generator=torch.Generator().manual_seed(13)),
    )
    fitted = fit_calibrator(name, z, y)
    flat = z.movedim(1, -1).reshape(-1, 3)
    expected = fitted.transform(flat).reshape(6, 2, 2, 3).movedim(-1, 1)
    assert torch.equal(fitted.transform(z), expected)


@pytest.mark.parametrize("name", calibrator_names())  # every method, one test
@pytest.mark.parametrize("case", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_inputs_raise_naming_the_problem(name, case):
    make, message = case
    logits, labels = make(torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]))
    with pytest.raises(ValueError, match=message):
        fit_calibrator(name, logits, labels)


@pytest.mark.parametrize("num_bins", [0, -3, 2.5, True, "15", None])
@pytest.mark.parametrize("name", ["histogram", "top-label-histogram"])
def test_bad_num_bins_raise(name, num_bins):
    with pytest.raises(ValueError, match=f"num_bins must be an integer >= 1, got {num_bins!r}"):
        fit_calibrator(name, torch.randn(6, 3), torch.zeros(6, dtype=torch.long), num_bins=num_bins)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_options_raise(name):
    with pytest.raises(ValueError, match=f"the {name} calibrator has no option 'bins'"):
        fit_calibrator(name, torch.randn(6, 3), torch.zeros(6, dtype=torch.long), bins=10)


BAD_TENSORS = {
    "histogram shape": (
        lambda: Histogram(3, 4, torch.zeros(3, 5), torch.zeros(3, 5)),
        r"counts must have shape \(3, 4\)",
    ),
    "positives above counts": (
        lambda: TopLabelHistogram(2, 2, torch.ones(2, 2), 2 * torch.ones(2, 2)),
        "0 <= positives <= counts",
    ),
    "fractional counts": (
        lambda: Histogram(2, 2, torch.full((2, 2), 0.5), torch.zeros(2, 2)),
        "whole numbers",
    ),
    "NaN count": (
        lambda: Histogram(2, 2, torch.full((2, 2), math.nan), torch.zeros(2, 2)),
        "counts must be finite",
    ),
    "boolean table": (
        lambda: Histogram(2, 2, torch.ones(2, 2, dtype=torch.bool), torch.zeros(2, 2)),
        "counts must be a tensor of real numbers",
    ),
    "decreasing thresholds": (
        lambda: Isotonic(1, torch.tensor([[0.5, 0.2]]), torch.tensor([[0.1, 0.2]])),
        "non-decreasing",
    ),
    "values above 1": (
        lambda: Isotonic(1, torch.tensor([[0.2, 0.5]]), torch.tensor([[0.1, 1.5]])),
        r"within \[0, 1\]",
    ),
    "one threshold row missing": (lambda: Isotonic(1, torch.tensor([[0.2, 0.5]])), "both"),
    "negative a": (lambda: Beta(2, torch.tensor([[1.0, 1.0, 0.0], [-0.1, 1.0, 0.0]])), "a >= 0"),
    "beta shape": (lambda: Beta(2, torch.ones(3, 3)), r"coefficients must have shape \(2, 3\)"),
    "bad num_bins": (lambda: Histogram(2, 0), "num_bins must be an integer >= 1, got 0"),
}


@pytest.mark.parametrize("make, message", BAD_TENSORS.values(), ids=BAD_TENSORS.keys())
def test_bad_tensors_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()
