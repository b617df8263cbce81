"""Vector and matrix scaling (ODIR) against independent references: the maps the labels were
drawn with (to their sampling error), the NLL and the ODIR objective written out here and
differentiated by autograd, temperature scaling, and the regularisation path."""

import itertools
import math

import pytest
import torch
from torch import nn

from focalcal.scaling import (
    AffineCalibration,
    fit_matrix_scaling,
    fit_temperature,
    fit_vector_scaling,
    odir_penalties,
)
from tests.test_scaling import BAD_INPUTS, sample

FITS = {"vector": fit_vector_scaling, "matrix": fit_matrix_scaling}


def flat(logits, labels):
    """(M, C) float64 and (M,), each position of (N, C, d1, ...) a sample."""
    return logits.double().movedim(1, -1).reshape(-1, logits.shape[1]), labels.reshape(-1)


def apply(weight, bias, z):
    """The map on (M, C) rows, written out: w ⊙ z + b or W z + b."""
    return z * weight + bias if weight.dim() == 1 else z @ weight.T + bias


def mean_nll(z, labels):
    """mean_i log Σ_k exp(z_ik) - z_iy, for (M, C) rows."""
    return (torch.logsumexp(z, dim=1) - z[torch.arange(len(labels)), labels]).mean()


def objective(weight, bias, z, labels, off_diagonal=0.0, mu=0.0):
    """Kull et al.'s ODIR objective: mean NLL + λ/(C(C-1)) Σ_{i≠j} W_ij² + μ/C Σ_j b_j²; for a
    vector, mean NLL + λ/C Σ_j (w_j - mean w)² + μ/C Σ_j b_j²."""
    c = len(bias)
    loss = mean_nll(apply(weight, bias, z), labels)
    if weight.dim() == 1:
        return (
            loss
            + off_diagonal / c * (weight - weight.mean()).square().sum()
            + mu / c * (bias.square().sum())
        )
    if c > 1:
        off = weight - torch.diag(torch.diagonal(weight))
        loss = (
            loss + off_diagonal / (c * (c - 1)) * off.square().sum() + mu / c * bias.square().sum()
        )
    return loss


def draw(z, weight, bias, seed):
    """Labels drawn from softmax(map(z)): the map is then exactly the truth."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(apply(weight, bias, z), dim=1)
    return torch.multinomial(probs, 1, generator=g).squeeze(1)


def standard_errors(weight, bias, z, labels):
    """The MLE's standard errors at the truth: the pseudo-inverse of the Fisher information
    N·H, H the Hessian of the mean NLL in (weight, bias). Its null directions (the softmax's
    invariances) get variance 0, which matches comparing maps with those directions projected
    out (centred biases, column-centred W)."""
    sizes = (weight.numel(), bias.numel())

    def nll_of(theta):
        w, b = theta.split(sizes)
        return mean_nll(apply(w.reshape(weight.shape), b, z), labels)

    hessian = torch.autograd.functional.hessian(nll_of, torch.cat([weight.flatten(), bias]))
    # rtol: the null directions come out at rounding level, far below any real curvature
    variance = torch.linalg.pinv(len(labels) * hessian, hermitian=True, rtol=1e-9).diagonal()
    w, b = variance.clamp_min(0).sqrt().split(sizes)
    return w.reshape(weight.shape), b


def centred(weight, bias):
    """The representative with the softmax's invariances projected out."""
    if weight.dim() == 2:
        weight = weight - weight.mean(dim=0)
    return weight, bias - bias.mean()


# --- recovering known maps ------------------------------------------------------------------


def test_vector_scaling_recovers_the_map_the_labels_were_drawn_with():
    g = torch.Generator().manual_seed(0)
    z = 2 * torch.randn(40_000, 4, generator=g, dtype=torch.float64)
    weight = torch.tensor([0.5, 1.0, 1.5, 2.5], dtype=torch.float64)
    bias = torch.tensor([0.3, -0.2, 0.0, -0.4], dtype=torch.float64)
    labels = draw(z, weight, bias, seed=1)
    fitted = fit_vector_scaling(z.float(), labels, 0.0, 0.0)  # plain: the MLE
    sd_w, sd_b = standard_errors(weight, bias, z, labels)
    assert sd_w.max() < 0.03 and sd_b.max() < 0.03  # the test tells w = 1 from w = 1.1
    (w, b), (true_w, true_b) = centred(fitted.weight, fitted.bias), centred(weight, bias)
    # Five standard errors: a false alarm once in ~2 million per coordinate.
    assert ((w - true_w).abs() <= 5 * sd_w).all()
    assert ((b - true_b).abs() <= 5 * sd_b).all()
    assert abs(float(fitted.bias.sum())) < 1e-9  # b keeps the start's mean


def test_matrix_scaling_recovers_the_map_the_labels_were_drawn_with():
    g = torch.Generator().manual_seed(2)
    z = 2 * torch.randn(60_000, 3, generator=g, dtype=torch.float64)
    weight = torch.tensor([[1.5, 0.4, 0.0], [-0.3, 1.0, 0.5], [0.2, 0.0, 2.0]], dtype=torch.float64)
    bias = torch.tensor([0.2, -0.3, 0.1], dtype=torch.float64)
    labels = draw(z, weight, bias, seed=3)
    fitted = fit_matrix_scaling(z.float(), labels, 0.0, 0.0)
    sd_w, sd_b = standard_errors(weight, bias, z, labels)
    assert sd_w.max() < 0.03 and sd_b.max() < 0.03
    (w, b), (true_w, true_b) = centred(fitted.weight, fitted.bias), centred(weight, bias)
    assert ((w - true_w).abs() <= 5 * sd_w).all()
    assert ((b - true_b).abs() <= 5 * sd_b).all()
    # Without a penalty the fit moves only across the invariances: W's columns keep the
    # identity's sums, b its mean.
    assert torch.allclose(fitted.weight.sum(dim=0), torch.ones(3, dtype=torch.float64))
    assert abs(float(fitted.bias.sum())) < 1e-9


# --- optimality -----------------------------------------------------------------------------

CASES = {  # shape, logits from the true ones, dtype, seed
    "over-confident": ((3000, 10), lambda t: 3 * t, torch.float32, 20),
    "under-confident, shifted": ((3000, 10), lambda t: 0.4 * t + t[:, :1], torch.float64, 21),
    "segmentation-shaped": ((40, 5, 6, 5), lambda t: 2 * t, torch.float32, 22),
    "30 classes": ((2000, 30), lambda t: 4 * t, torch.float32, 23),
    "two classes": ((1000, 2), lambda t: 0.2 * t, torch.float64, 24),
}


def case_data(case):
    shape, transform, dtype, seed = case
    n, c, *rest = shape
    true, labels = sample(n * math.prod(rest), c, seed)
    # a per-class bias too, which temperature scaling cannot undo
    miscalibrated = transform(true) + torch.linspace(-1, 1, c, dtype=torch.float64)
    logits = miscalibrated.reshape(n, *rest, c).movedim(-1, 1).to(dtype)
    return logits, labels.reshape(n, *rest)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_map_is_at_least_as_good_as_the_maps_it_contains(case):
    """identity ⊂ temperature ⊂ vector ⊂ matrix scaling; ODIR costs nothing at W = I/T, b = 0."""
    logits, labels = case_data(case)
    z, y = flat(logits, labels)
    identity = float(mean_nll(z, y))
    temperature = float(mean_nll(z / fit_temperature(logits, labels, "nll"), y))
    vector = fit_vector_scaling(logits, labels)
    vector_nll = float(mean_nll(apply(vector.weight, vector.bias, z), y))
    plain = fit_matrix_scaling(logits, labels, 0.0, 0.0)
    plain_nll = float(mean_nll(apply(plain.weight, plain.bias, z), y))
    odir = fit_matrix_scaling(logits, labels)
    odir_objective = float(objective(odir.weight, odir.bias, z, y, *odir_penalties(z.shape[1])))
    odir_nll = float(mean_nll(apply(odir.weight, odir.bias, z), y))
    assert temperature <= identity + 1e-12
    assert vector_nll <= temperature + 1e-9
    assert plain_nll <= vector_nll + 1e-9
    assert odir_nll <= odir_objective <= temperature + 1e-9
    assert vector_nll < identity - 1e-3  # the maps do something here


@pytest.mark.parametrize("kind", ["vector", "matrix", "odir"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_gradient_vanishes_at_the_fit(case, kind):
    logits, labels = case_data(case)
    z, y = flat(logits, labels)
    c = z.shape[1]
    penalties = odir_penalties(c) if kind == "odir" else (0.0, 0.0)
    if kind == "vector":  # its default penalties: 0.1 C on the spread of w and on b
        penalties = (0.1 * c, 0.1 * c)
        fitted = fit_vector_scaling(logits, labels)
    else:
        fitted = fit_matrix_scaling(logits, labels, *penalties)
    weight, bias = (t.clone().requires_grad_() for t in (fitted.weight, fitted.bias))
    start = [torch.ones(c) if kind == "vector" else torch.eye(c), torch.zeros(c)]
    start = [t.double().requires_grad_() for t in start]
    at_fit = torch.autograd.grad(objective(weight, bias, z, y, *penalties), (weight, bias))
    at_start = torch.autograd.grad(objective(*start, z, y, *penalties), start)
    largest = max(float(g.abs().max()) for g in at_fit)
    assert largest <= 1e-5
    assert largest <= 1e-3 * max(float(g.abs().max()) for g in at_start)


def test_odir_shrinks_the_off_diagonal_weights_as_lambda_grows():
    g = torch.Generator().manual_seed(4)
    z = 2 * torch.randn(3000, 5, generator=g, dtype=torch.float64)
    weight = 1.5 * torch.eye(5, dtype=torch.float64) + 0.5 * torch.randn(5, 5, generator=g).double()
    labels = draw(z, weight, torch.zeros(5, dtype=torch.float64), seed=5)
    off = ~torch.eye(5, dtype=torch.bool)
    sizes = []
    for penalty in [0.0, 1.0, 10.0, 100.0, 1e3, 1e5]:
        fitted = fit_matrix_scaling(z, labels, penalty, 1.0)
        sizes.append(float(fitted.weight[off].square().mean().sqrt()))
    # For any minimisers, the penalty term is non-increasing in λ; here it falls strictly.
    assert all(later < earlier for earlier, later in itertools.pairwise(sizes))
    assert sizes[0] > 0.2 and sizes[-1] < 1e-2 * sizes[0]
    # The diagonal is free: with λ huge (and μ = 0) the fit is vector scaling.
    strong = fit_matrix_scaling(z, labels, 1e9, 0.0)
    vector = fit_vector_scaling(z, labels, 0.0, 0.0)
    assert torch.allclose(strong.weight.diagonal(), vector.weight, atol=1e-4)
    assert torch.allclose(strong.bias, vector.bias, atol=1e-4)


def test_the_default_penalties_grow_with_the_class_count():
    assert odir_penalties(10) == pytest.approx((9.0, 1.0))
    assert odir_penalties(100) == pytest.approx((990.0, 10.0))
    logits, labels = case_data(CASES["over-confident"])
    default, explicit = (
        fit_matrix_scaling(logits, labels),
        fit_matrix_scaling(logits, labels, *odir_penalties(10)),
    )
    assert torch.equal(default.weight, explicit.weight) and torch.equal(default.bias, explicit.bias)


@pytest.mark.parametrize("kind", FITS)
def test_a_likelihood_without_a_minimum_gives_a_finite_map(kind):
    """Every label on its row's largest logit: the NLL falls towards 0 as the map sharpens."""
    true, _ = sample(500, 6, seed=6)
    labels = true.argmax(dim=1)
    fitted = FITS[kind](true, labels)
    assert fitted.weight.isfinite().all() and fitted.bias.isfinite().all()
    z, y = flat(true, labels)
    assert float(mean_nll(fitted(z), y)) < 1e-3 * float(mean_nll(z, y))


@pytest.mark.parametrize("kind", FITS)
def test_one_class_gives_the_identity(kind):
    fitted = FITS[kind](torch.randn(5, 1), torch.zeros(5, dtype=torch.long))
    assert fitted.weight.flatten().tolist() == [1.0] and fitted.bias.tolist() == [0.0]


def test_fits_take_few_steps(monkeypatch):
    """Speed without a clock: the objective's evaluations on 10 000 × 10 logits."""
    evaluations = []
    step = torch.optim.LBFGS.step

    def counted(self, closure):
        def counting():
            evaluations[-1] += 1
            return closure()

        evaluations.append(0)
        return step(self, counting)

    monkeypatch.setattr(torch.optim.LBFGS, "step", counted)
    true, labels = sample(10_000, 10, seed=7)
    logits = (6 * true + torch.linspace(-2, 2, 10)).float()
    fit_vector_scaling(logits, labels)
    fit_matrix_scaling(logits, labels)
    fit_matrix_scaling(logits, labels, 0.0, 0.0)
    assert len(evaluations) == 3 and max(evaluations) <= 100


# --- shapes, dtypes, determinism ------------------------------------------------------------


@pytest.mark.parametrize("kind", FITS)
def test_spatial_positions_are_samples(kind):
    logits, labels = case_data(CASES["segmentation-shaped"])
    z, y = flat(logits, labels)
    fitted = FITS[kind](logits, labels)
    assert_same(fitted, FITS[kind](z, y))
    calibrated = fitted(logits)
    assert calibrated.shape == logits.shape
    expected = fitted(z.float()).reshape(40, 6, 5, 5).movedim(-1, 1)
    assert torch.allclose(calibrated, expected, atol=1e-6)


def assert_same(a, b):
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


@pytest.mark.parametrize("kind", FITS)
def test_deterministic_inputs_left_alone_half_read_as_float(kind):
    true, labels = sample(500, 4, seed=8, scale=3.0)
    logits = true.clone().requires_grad_()
    fitted = FITS[kind](logits, labels)
    assert torch.equal(logits.detach(), true) and logits.grad is None
    assert fitted.weight.dtype == fitted.bias.dtype == torch.float64
    assert_same(fitted, FITS[kind](true, labels))
    half = true.half()
    assert_same(FITS[kind](half, labels), FITS[kind](half.float(), labels))


def test_the_map_computes_in_the_logits_dtype():
    fitted = fit_vector_scaling(*sample(200, 3, seed=9))
    for dtype, expected in [
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
    ]:
        assert fitted(torch.randn(4, 3).to(dtype)).dtype == expected


BAD_PENALTIES = [-1.0, math.nan, math.inf, True, "1", torch.tensor(1.0)]


@pytest.mark.parametrize("kind", FITS)
@pytest.mark.parametrize("case", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_inputs_raise_naming_the_problem(kind, case):
    make, message = case
    logits, labels = make(torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]))
    with pytest.raises(ValueError, match=message):
        FITS[kind](logits, labels)


@pytest.mark.parametrize("value", BAD_PENALTIES, ids=repr)
@pytest.mark.parametrize("name", ["off_diagonal_penalty", "bias_penalty"])
def test_bad_penalties_raise(name, value):
    with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0 or None"):
        fit_matrix_scaling(torch.randn(6, 3), torch.zeros(6, dtype=torch.long), **{name: value})


def test_probabilities_are_not_logits():
    probs = torch.softmax(torch.randn(6, 3), dim=1)
    for fit in FITS.values():
        with pytest.raises(ValueError, match="look like probabilities"):
            fit(probs, torch.zeros(6, dtype=torch.long))


# --- AffineCalibration ----------------------------------------------------------------------


def test_the_module_applies_its_map():
    weight = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 3.0]])
    bias = torch.tensor([0.5, 0.0, -0.5])
    z = torch.randn(7, 3)
    matrix, vector = AffineCalibration(weight, bias), AffineCalibration(weight.diagonal(), bias)
    assert torch.allclose(matrix(z), z @ weight.T + bias)
    assert torch.allclose(vector(z), z * weight.diagonal() + bias)
    assert (matrix.kind, vector.kind, matrix.num_classes) == ("matrix", "vector", 3)
    assert repr(vector) == "AffineCalibration(kind='vector', num_classes=3)"
    model = nn.Linear(4, 3)
    x = torch.randn(5, 4)
    assert torch.equal(nn.Sequential(model, matrix)(x), matrix(model(x)))


def test_the_map_travels_in_the_state_dict_and_follows_to():
    fitted = fit_matrix_scaling(*sample(300, 4, seed=10, scale=3.0))
    fresh = AffineCalibration(torch.eye(4, dtype=torch.float64), torch.zeros(4).double())
    fresh.load_state_dict(fitted.state_dict())
    z = torch.randn(6, 4)
    assert torch.equal(fresh(z), fitted(z))
    single = fitted.to(torch.float32)
    assert single.weight.dtype == torch.float32 and single(z).dtype == torch.float32


@pytest.mark.parametrize(
    ("weight", "bias", "message"),
    [
        (torch.ones(3), torch.zeros(2), r"bias must have shape \(C,\) and weight"),
        (torch.ones(2, 3), torch.zeros(2), r"weight \(C,\) or \(C, C\)"),
        (torch.ones(2), torch.zeros(2, 1), "bias must have shape"),
        (torch.ones(0), torch.zeros(0), "bias must have shape"),
        (torch.ones(2, dtype=torch.long), torch.zeros(2), "weight must be a floating-point"),
        (torch.ones(2), [0.0, 0.0], "bias must be a floating-point tensor, got list"),
        (torch.tensor([1.0, math.nan]), torch.zeros(2), "weight must be finite"),
        (torch.ones(2), torch.tensor([math.inf, 0.0]), "bias must be finite"),
    ],
)
def test_bad_maps_raise(weight, bias, message):
    with pytest.raises(ValueError, match=message):
        AffineCalibration(weight, bias)


def test_logits_of_another_class_count_raise():
    calibration = AffineCalibration(torch.ones(3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"logits must have shape \(N, 3\)"):
        calibration(torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"shape \(N, C\)"):
        calibration(torch.randn(3))
    with pytest.raises(ValueError, match="floating-point"):
        calibration(torch.ones(4, 3, dtype=torch.long))


def test_vector_scaling_stays_bounded_where_a_class_is_separable():
    """Without its penalties the NLL has no minimum here: class 1 is told apart by its own
    logit, and w_1, b_1 grow into a threshold that test samples near it pay for dearly."""
    g = torch.Generator().manual_seed(12)
    z = torch.randn(600, 3, generator=g, dtype=torch.float64)
    labels = z.argmax(1)
    labels[z[:, 1] > 0.5] = 1  # class 1 exactly where its logit exceeds 0.5
    labels[(z[:, 1] <= 0.5) & (labels == 1)] = 0
    plain = fit_vector_scaling(z, labels, 0.0, 0.0)
    bounded = fit_vector_scaling(z, labels)
    assert float(plain.weight.abs().max()) > 50  # the threshold the plain fit builds
    assert float(bounded.weight.abs().max()) < 20 and float(bounded.bias.abs().max()) < 10
