"""Ensemble temperature scaling and Dirichlet calibration against references written here: a
grid over the simplex and scipy's SLSQP (Zhang et al.'s own optimiser) for the ensemble's
weights, scipy's L-BFGS-B on the Dirichlet-ODIR objective written out and differentiated by
autograd, cases solved by hand, and the ECE on held-out halves."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import optimize

from focalcal.metrics import expected_calibration_error
from focalcal.scaling import (
    fit_calibrator,
    fit_matrix_scaling,
    fit_temperature,
    load_calibrator,
    odir_penalties,
    save_calibrator,
)
from focalcal.scaling.ensemble import Dirichlet, EnsembleTemperature
from tests.test_scaling import sample

NAMES = ["ensemble-temperature", "dirichlet"]

CASES = {  # n, C, logits from the true ones, seed
    "over-confident": (600, 5, lambda t: 3 * t, 0),
    "under-confident": (600, 5, lambda t: 0.3 * t, 1),
    "calibrated": (600, 5, lambda t: t, 2),  # T ≈ 1: the two softmaxes nearly coincide
    "shifted, 10 classes": (800, 10, lambda t: 2 * t + torch.linspace(-2, 2, 10), 3),
    "two classes": (400, 2, lambda t: 4 * t, 4),
    "seven samples": (7, 3, lambda t: 2 * t, 5),
}


def case_data(case):
    n, c, transform, seed = case
    true, labels = sample(n, c, seed)
    return transform(true), labels


def mixture(weights, temperature, z):
    """w1 softmax(z / T) + w2 softmax(z) + w3 / C, in float64."""
    w = torch.as_tensor(weights, dtype=torch.float64)
    c = z.shape[1]
    return w[0] * torch.softmax(z / temperature, 1) + w[1] * torch.softmax(z, 1) + w[2] / c


def brier(p, labels):
    """mean_i Σ_k (p_ik − 1[y_i = k])², written out."""
    onehot = torch.nn.functional.one_hot(labels, p.shape[1]).double()
    return float((p - onehot).square().sum(dim=1).mean())


def simplex_grid(steps):
    """Every (a, b, 1 − a − b) with a, b multiples of 1 / steps."""
    return torch.tensor(
        [
            (a / steps, b / steps, (steps - a - b) / steps)
            for a, b in itertools.product(range(steps + 1), repeat=2)
            if a + b <= steps
        ],
        dtype=torch.float64,
    )


def slsqp_weights(temperature, z, labels):
    """Zhang et al.'s optimiser (SLSQP on the simplex, tol 1e-12) on their mse_w: the mean of
    (p − onehot)² over the M × C entries, p renormalised as in their code; from their start
    (1, 0, 0) and from the centre."""
    p0 = torch.softmax(z / temperature, 1).numpy()
    p1 = torch.softmax(z, 1).numpy()
    p2 = np.full_like(p0, 1 / z.shape[1])
    onehot = np.eye(z.shape[1])[labels.numpy()]

    def mse_w(w):
        p = w[0] * p0 + w[1] * p1 + w[2] * p2
        p = p / p.sum(1)[:, None]
        return np.mean((p - onehot) ** 2)

    results = [
        optimize.minimize(
            mse_w,
            start,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * 3,
            constraints={"type": "eq", "fun": lambda w: np.sum(w) - 1},
            tol=1e-12,
        ).x
        for start in ((1.0, 0.0, 0.0), (1 / 3, 1 / 3, 1 / 3))
    ]
    return [np.clip(w, 0, None) / np.clip(w, 0, None).sum() for w in results]


# --- ensemble temperature scaling -----------------------------------------------------------


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_ensemble_t_is_temperature_scaling_by_nll(case):
    z, y = case_data(case)
    fitted = fit_calibrator("ensemble-temperature", z, y)
    assert fitted.summary()["T"] == fit_temperature(z, y, "nll")


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_ensemble_weights_minimise_the_brier_score_over_the_simplex(case):
    """The fit's Brier score, computed here from its weights, is at most the best of a grid
    of step 1/200 over the simplex (which holds the vertices) and of SLSQP's answers, to
    1e-11: the fit promises its minimum to 1e-12 (its tie rule) plus rounding (~1e-15)."""
    z, y = case_data(case)
    fitted = fit_calibrator("ensemble-temperature", z, y)
    temperature, weights = fitted.summary()["T"], fitted.summary()["weights"]
    assert min(weights) >= 0 and abs(sum(weights) - 1) <= 1e-12
    ours = brier(mixture(weights, temperature, z), y)
    components = torch.stack([torch.softmax(z / temperature, 1), torch.softmax(z, 1),
                              torch.full_like(z, 1 / z.shape[1])])  # fmt: skip
    onehot = torch.nn.functional.one_hot(y, z.shape[1]).double()
    grid = min(  # the Brier score of every grid point, 500 points at a time
        float((torch.einsum("gj,jmc->gmc", w, components) - onehot).square().sum(2).mean(1).min())
        for w in simplex_grid(200).split(500)
    )
    slsqp = min(brier(mixture(w, temperature, z), y) for w in slsqp_weights(temperature, z, y))
    assert ours <= grid + 1e-11
    assert ours <= slsqp + 1e-11
    # and it is the mixture it says: exp of the transform
    assert torch.allclose(fitted.transform(z).exp(), mixture(weights, temperature, z), rtol=1e-12)


def test_ensemble_reaches_the_frequency_a_single_logit_row_allows():
    """Four copies of one row, three labelled 0: B is minimal, (1 - q)² + q² - ... in p_0,
    at p_0 = 3/4, which the mixture reaches (softmax(z / T) alone to T's 1e-4). B exceeds its
    minimum by 2 (p_0 − 3/4)², so B within 1e-12 (+ rounding) puts p_0 within 1e-6."""
    z, y = torch.tensor([[4.0, 0.0]] * 4), torch.tensor([0, 0, 0, 1])
    p = fit_calibrator("ensemble-temperature", z, y).transform(z).exp()
    assert torch.allclose(p, torch.tensor([[0.75, 0.25]] * 4, dtype=torch.float64), atol=1e-6)


def test_ensemble_of_logits_that_say_nothing_is_uniform_and_temperature_scaling():
    """Constant rows: every component is uniform, every w ties, the first vertex wins."""
    z, y = torch.zeros(6, 3), torch.tensor([0, 1, 2, 0, 0, 1])
    fitted = fit_calibrator("ensemble-temperature", z, y)
    assert fitted.summary()["weights"] == [1.0, 0.0, 0.0]
    expected = torch.full((6, 3), -math.log(3), dtype=torch.float64)
    assert torch.allclose(fitted.transform(z), expected, rtol=0, atol=1e-15)


def test_ensemble_vertices_are_their_components_exactly():
    """A zero weight drops its component: logsumexp of x and -inf's is x bit for bit."""
    z = 3 * torch.randn(20, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    t = 1.7
    vertices = {
        (1.0, 0.0, 0.0): torch.log_softmax(z / t, 1),
        (0.0, 1.0, 0.0): torch.log_softmax(z, 1),
        (0.0, 0.0, 1.0): torch.full_like(z, -math.log(4)),
    }
    for weights, expected in vertices.items():
        assert torch.equal(EnsembleTemperature(4, t, weights).transform(z), expected)


def test_ensemble_keeps_the_argmax():
    z, y = case_data(CASES["shifted, 10 classes"])
    fitted = fit_calibrator("ensemble-temperature", z, y)
    assert torch.equal(fitted.transform(z).argmax(1), z.argmax(1))


# --- Dirichlet calibration ------------------------------------------------------------------


def dirichlet_objective(weight, bias, z, labels, off_diagonal, mu):
    """Kull et al.'s Dir-ODIR objective, written out: the mean NLL of
    log_softmax(W log_softmax(z) + b) + λ/(C(C−1)) Σ_{i≠j} W_ij² + μ/C Σ_j b_j²."""
    c = z.shape[1]
    log_p = torch.log_softmax(torch.log_softmax(z, 1) @ weight.T + bias, 1)
    nll = -log_p[torch.arange(len(labels)), labels].mean()
    off = weight - torch.diag(torch.diagonal(weight))
    return nll + off_diagonal / (c * (c - 1)) * off.square().sum() + mu / c * bias.square().sum()


def lbfgs_reference(z, labels, off_diagonal, mu):
    """scipy's L-BFGS-B on dirichlet_objective with autograd's gradient, from (I, 0)."""
    c = z.shape[1]

    def fun(theta):
        theta = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
        loss = dirichlet_objective(
            theta[: c * c].reshape(c, c), theta[c * c :], z, labels, off_diagonal, mu
        )
        (grad,) = torch.autograd.grad(loss, theta)
        return float(loss.detach()), grad.numpy()

    start = np.concatenate([np.eye(c).ravel(), np.zeros(c)])
    result = optimize.minimize(
        fun,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 20_000, "ftol": 1e-15, "gtol": 1e-10},
    )
    return float(result.fun)


@pytest.mark.parametrize(
    "penalties", [None, (1.0, 0.5), (0.0, 0.0)], ids=["default", "1, 0.5", "plain"]
)
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_dirichlet_minimises_its_objective(case, penalties):
    """The objective at the fit equals scipy's L-BFGS-B minimum to 1e-8: the fit stops once
    every partial derivative is at most 1e-6, which leaves the objective up to ‖g‖² / 2μ above
    its minimum (μ the Hessian's least eigenvalue; measured up to 2e-9 with 10 classes at
    λ = 1, μ = 0.5, where the reference, stopped at 1e-10, lies within ~1e-14); the fit equals
    fit_matrix_scaling on log_softmax(z); and it is at least as good as temperature
    scaling (W = I / T, b = 0 costs no penalty)."""
    z, y = case_data(case)
    c = z.shape[1]
    options = (
        {}
        if penalties is None
        else dict(zip(("off_diagonal_penalty", "bias_penalty"), penalties, strict=True))
    )
    lam, mu = odir_penalties(c) if penalties is None else penalties
    fitted = fit_calibrator("dirichlet", z, y, **options)
    ours = float(dirichlet_objective(fitted.weight, fitted.bias, z, y, lam, mu))
    if case[0] >= 100 or penalties != (0.0, 0.0):  # seven samples, no penalty: no minimum
        assert abs(ours - lbfgs_reference(z, y, lam, mu)) <= 1e-8
    affine = fit_matrix_scaling(torch.log_softmax(z, 1), y, lam, mu)
    assert torch.equal(fitted.weight, affine.weight) and torch.equal(fitted.bias, affine.bias)
    temperature = fit_temperature(z, y, "nll")
    nll_t = float(-torch.log_softmax(z / temperature, 1)[torch.arange(len(y)), y].mean())
    assert ours <= nll_t + 1e-9
    assert fitted.options() == {"num_classes": c, "off_diagonal_penalty": lam, "bias_penalty": mu}


def test_dirichlet_solved_by_hand():
    """Rows (2, 0) and (0, 2), each right 80 % of the time. log_softmax keeps the difference
    2; the objective is strictly convex and symmetric under swapping the classes, so its
    minimum is symmetric, the NLL depends on W_00 − W_01 only, and the penalty sets W_01 = 0,
    b = 0: 2 W_00 = log 4, p = 0.8. The fit stops at gradients of ~1e-6, whose curvatures
    (~0.1 or more) move W by at most ~1e-5."""
    z = torch.tensor([[2.0, 0.0], [0.0, 2.0]]).repeat(50, 1)
    y = torch.tensor([0, 1] * 40 + [1, 0] * 10)
    fitted = fit_calibrator("dirichlet", z, y)
    expected = math.log(4) / 2 * torch.eye(2, dtype=torch.float64)
    assert torch.allclose(fitted.weight, expected, rtol=0, atol=1e-5)
    assert torch.allclose(fitted.bias, torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-5)
    p = fitted.transform(z[:2]).exp()
    assert torch.allclose(p, torch.tensor([[0.8, 0.2], [0.2, 0.8]], dtype=torch.float64), atol=1e-5)


# --- both -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_each_lowers_the_ece_of_an_over_confident_network_on_held_out_data(name):
    true, labels = sample(4000, 5, seed=7)
    logits = 3 * true + torch.linspace(-0.5, 0.5, 5, dtype=torch.float64)
    fitted = fit_calibrator(name, logits[:2000], labels[:2000])
    before = float(expected_calibration_error(logits[2000:], labels[2000:]))
    after = float(expected_calibration_error(fitted.transform(logits[2000:]), labels[2000:]))
    assert before > 0.2  # the set is over-confident
    assert after < before / 4


@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_give_the_same_bits(name, tmp_path):
    z, y = case_data(CASES["over-confident"])
    fitted = fit_calibrator(name, z.float(), y)
    loaded = load_calibrator(save_calibrator(fitted, tmp_path / "calibrator.json"))
    assert type(loaded) is type(fitted)
    assert loaded.options() == fitted.options() and loaded.summary() == fitted.summary()
    for key, value in fitted.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert torch.equal(loaded.transform(z), fitted.transform(z))


@pytest.mark.parametrize("name", NAMES)
def test_extreme_logits_give_finite_fits_and_outputs(name):
    true, labels = sample(300, 4, seed=8)
    huge = 1e4 * true
    fitted = fit_calibrator(name, huge, labels)
    assert all(bool(t.isfinite().all()) for t in fitted.state_dict().values())
    probe = torch.tensor([[1e4, -1e4, 0.0, 0.0], [-1e4, 1e4, 1e4, -1e4], [0.0] * 4])
    limits = torch.tensor([[3e38, -3e38, 0.0, 1.0]])  # float32's extremes
    for logits in (huge, probe, limits):
        out = fitted.transform(logits)
        assert bool(out.isfinite().all()) and bool((out <= 0).all())
        assert torch.allclose(out.exp().sum(1), torch.ones(len(out), dtype=torch.float64))


def test_ensemble_without_the_uniform_component_is_finite_on_extreme_logits():
    calibrator = EnsembleTemperature(3, 0.01, (0.4, 0.6, 0.0))  # the smallest T: z / T = 1e6
    out = calibrator.transform(torch.tensor([[1e4, -1e4, 0.0]], dtype=torch.float64))
    assert bool(out.isfinite().all())


BAD_OPTIONS = {
    "ets: an option it lacks": ("ensemble-temperature", {"objective": "nll"}, "no option"),
    "dirichlet: an option it lacks": ("dirichlet", {"spread_penalty": 1.0}, "no option"),
    "negative λ": ("dirichlet", {"off_diagonal_penalty": -1.0}, "off_diagonal_penalty"),
    "infinite λ": ("dirichlet", {"off_diagonal_penalty": math.inf}, "off_diagonal_penalty"),
    "λ a string": ("dirichlet", {"off_diagonal_penalty": "1"}, "off_diagonal_penalty"),
    "μ a bool": ("dirichlet", {"bias_penalty": True}, "bias_penalty"),
    "negative μ": ("dirichlet", {"bias_penalty": -0.1}, "bias_penalty"),
}


@pytest.mark.parametrize("case", BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_bad_options_raise_naming_them(case):
    name, options, message = case
    with pytest.raises(ValueError, match=message):
        fit_calibrator(name, torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]), **options)


BAD_STATES = {
    "T = 0": (lambda: EnsembleTemperature(3, 0.0), "T must"),
    "T < 0": (lambda: EnsembleTemperature(3, -1.0), "T must"),
    "T infinite": (lambda: EnsembleTemperature(3, math.inf), "T must"),
    "T NaN": (lambda: EnsembleTemperature(3, math.nan), "T must"),
    "weights off the simplex": (lambda: EnsembleTemperature(3, 1.0, (0.5, 0.6, 0.0)), "weights"),
    "a negative weight": (lambda: EnsembleTemperature(3, 1.0, (-0.1, 1.1, 0.0)), "weights"),
    "two weights": (lambda: EnsembleTemperature(3, 1.0, (0.5, 0.5)), "weights"),
    "a NaN weight": (lambda: EnsembleTemperature(3, 1.0, (math.nan, 1.0, 0.0)), "weights"),
    "no classes": (lambda: EnsembleTemperature(0), "num_classes"),
    "a vector weight": (
        lambda: Dirichlet(3, torch.ones(3, dtype=torch.float64), torch.zeros(3)),
        r"\(C, C\)",
    ),
    "classes differ": (
        lambda: Dirichlet(3, torch.eye(2, dtype=torch.float64), torch.zeros(2)),
        "classes",
    ),
    "bad stored penalty": (
        lambda: Dirichlet(2, torch.eye(2), torch.zeros(2), off_diagonal_penalty=-1.0),
        "off_diagonal_penalty",
    ),
}


@pytest.mark.parametrize("case", BAD_STATES.values(), ids=BAD_STATES.keys())
def test_bad_constructor_arguments_raise(case):
    make, message = case
    with pytest.raises(ValueError, match=message):
        make()
