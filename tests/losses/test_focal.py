import math
import warnings
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from focalcal.losses import (
    FLSD_53,
    FLSD_532,
    FocalLoss,
    SampleDependentFocalLoss,
    ScheduledFocalLoss,
    _focal_paths,
    focal_loss,
    gamma_for_threshold,
    sample_dependent_focal_loss,
    sample_dependent_schedule,
    scheduled_gamma,
)
from focalcal.losses._focal_paths import _focal_parts
from tests.losses import reference

SHAPES = [(13, 7), (4, 5, 3, 2)]  # (N, C) and (N, C, d1, d2)
pytestmark = pytest.mark.usefixtures("focal_path")  # conftest.py: both paths
REDUCTIONS = ["mean", "sum", "none"]


def make_inputs(shape, seed=0, scale=3.0, ignore_fraction=0.25, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)
    n, c, *rest = shape
    target = torch.randint(c, (n, *rest), generator=g)
    target[torch.rand(target.shape, generator=g) < ignore_fraction] = -100
    weight = torch.rand(c, generator=g, dtype=torch.float64).to(dtype) + 0.1
    return logits, target, weight


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_gamma_zero_is_cross_entropy_values_and_gradients(shape, reduction, weighted):
    logits, target, weight = make_inputs(shape)
    weight = weight if weighted else None
    ours_in, torch_in = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = focal_loss(ours_in, target, 0.0, weight, reduction=reduction)
    theirs = F.cross_entropy(torch_in, target, weight, reduction=reduction)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    ours.sum().backward()
    theirs.sum().backward()
    torch.testing.assert_close(ours_in.grad, torch_in.grad, rtol=1e-12, atol=1e-12)


def test_gamma_zero_matches_cross_entropy_with_other_ignore_index():
    logits, target, _ = make_inputs((20, 4), ignore_fraction=0.0)
    target[::3] = 2  # class 2 is ignored
    expected = F.cross_entropy(logits, target, ignore_index=2)
    torch.testing.assert_close(focal_loss(logits, target, 0.0, ignore_index=2), expected)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 3.0, 5.0])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_focal_equals_per_sample_reference(gamma, shape, reduction):
    logits, target, weight = make_inputs(shape, seed=int(gamma * 10))
    expected = reference.loss_reference(
        lambda z, y: reference.focal(z, y, gamma), logits, target, weight, reduction=reduction
    )
    got = focal_loss(logits, target, gamma, weight, reduction=reduction)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_focal_float32_equals_reference():
    logits, target, _ = make_inputs((64, 10), dtype=torch.float32)
    expected = reference.loss_reference(lambda z, y: reference.focal(z, y, 2.0), logits, target)
    torch.testing.assert_close(
        focal_loss(logits, target, 2.0).double(), expected, rtol=1e-5, atol=0
    )


def near_threshold_logits():
    """Two-class rows whose p_t lies just below, exactly at and just above 0.2 and 0.5."""
    ps = [0.2 - 1e-9, 0.2, 0.2 + 1e-9, 0.2 - 1e-4, 0.2 + 1e-4, 0.5 - 1e-9, 0.5, 0.5 + 1e-9]
    ps = torch.tensor(ps, dtype=torch.float64)
    logits = torch.stack([torch.log(ps), torch.log1p(-ps)], dim=1)
    return logits, torch.zeros(len(ps), dtype=torch.long)


@pytest.mark.parametrize("shape", SHAPES)
def test_flsd53_uses_gamma_5_exactly_where_pt_below_0_2(shape):
    logits, target, weight = make_inputs(shape, seed=3, scale=1.5)
    got = sample_dependent_focal_loss(logits, target, weight=weight, reduction="none")

    def per_sample(z, y):
        return reference.focal(z, y, reference.flsd53_gamma(z, y))

    expected = reference.loss_reference(per_sample, logits, target, weight, reduction="none")
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    gammas = {reference.flsd53_gamma(z, y) for z, y in reference.rows(logits, target) if y >= 0}
    assert gammas == {3.0, 5.0}  # both branches were exercised


def test_flsd_switches_gamma_at_the_thresholds():
    logits, target = near_threshold_logits()
    pt = torch.softmax(logits, 1)[:, 0]
    assert pt[1].item() == 0.2 and pt[6].item() == 0.5  # exactly on the thresholds
    for thresholds, gammas in (FLSD_53, FLSD_532):
        got = sample_dependent_focal_loss(logits, target, thresholds, gammas, reduction="none")
        for i, p in enumerate(pt.tolist()):
            k = sum(p >= t for t in thresholds)
            expected = -((1 - p) ** gammas[k]) * math.log(p)
            assert got[i].item() == pytest.approx(expected, rel=1e-9), (p, thresholds)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_flsd_compares_with_the_real_threshold_not_its_rounding(dtype):
    """The values of log p_t around log 0.2 in the dtype take γ = 5 exactly where they lie
    below (float64's) log 0.2, compared in exact rational arithmetic here: the loss never
    compares against the threshold rounded to the dtype (float32's nearest lies below it)."""
    bound = Fraction(math.log(0.2))
    nearest = torch.tensor(math.log(0.2), dtype=dtype)
    neighbours = [
        torch.nextafter(nearest, torch.tensor(s * math.inf, dtype=dtype)) for s in (-1, 1)
    ]
    for log_pt in (neighbours[0], nearest, neighbours[1]):
        nll = -log_pt.reshape(1)
        gamma = 5.0 if Fraction(float(log_pt)) < bound else 3.0
        same = _focal_parts(nll, FLSD_53[0], (gamma, gamma), False)[0] * nll  # one γ
        assert (_focal_parts(nll, *FLSD_53, False)[0] * nll).item() == same.item()
    if dtype == torch.float32:  # the reported case: FL-5's value, as the rule and paper's code
        assert Fraction(float(nearest)) < bound
        x, y = torch.tensor([[math.log(0.2), math.log(0.8)]]), torch.tensor([0])
        assert sample_dependent_focal_loss(x, y).item() == focal_loss(x, y, gamma=5.0).item()


def test_flsd532_reference():
    logits, target, _ = make_inputs((200, 3), seed=5, scale=1.0, ignore_fraction=0)

    def per_sample(z, y):
        p = reference.softmax(z)[y]
        return reference.focal(z, y, 5.0 if p < 0.2 else 3.0 if p < 0.5 else 2.0)

    expected = reference.loss_reference(per_sample, logits, target, reduction="sum")
    got = sample_dependent_focal_loss(logits, target, *FLSD_532, reduction="sum")
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=0)


def test_sample_dependent_with_one_gamma_is_fixed_focal():
    logits, target, weight = make_inputs((30, 6), seed=9)
    got = sample_dependent_focal_loss(logits, target, (), (2.5,), weight)
    torch.testing.assert_close(got, focal_loss(logits, target, 2.5, weight), rtol=0, atol=0)


def g(p, gamma):
    return (1 - p) ** gamma - gamma * p * (1 - p) ** (gamma - 1) * math.log(p)


@pytest.mark.parametrize("p0", [1e-4, 0.01, *[i / 100 for i in range(5, 50, 3)], 0.499, 0.4999])
def test_gamma_for_threshold_solves_g_equals_one(p0):
    gamma = gamma_for_threshold(p0)
    assert gamma > 0
    assert abs(g(p0, gamma) - 1.0) < 1e-6
    # the focal gradient is larger than cross-entropy's below p0 and smaller above it
    assert g(p0 * 0.9, gamma) > 1 > g(min(p0 * 1.1, 0.99), gamma)


def test_gamma_for_threshold_reference_values():
    assert gamma_for_threshold(0.2) == pytest.approx(4.85, abs=0.005)
    assert gamma_for_threshold(0.25) == pytest.approx(3.07, abs=0.005)
    assert gamma_for_threshold(0.3) == pytest.approx(1.96, abs=0.005)


@pytest.mark.parametrize("p0", [0.0, 0.5, 0.7, 1.0, -0.1, float("nan")])
def test_gamma_for_threshold_refuses_outside_domain(p0):
    with pytest.raises(ValueError, match=r"p0 must lie in \(0, 0.5\)"):
        gamma_for_threshold(p0)


def test_sample_dependent_schedule_reproduces_flsd53():
    assert sample_dependent_schedule([0.2, 0.25]) == FLSD_53
    thresholds, gammas = sample_dependent_schedule([0.2, 0.25, 0.3], round_gammas=False)
    assert thresholds == (0.2, 0.25)
    assert gammas == pytest.approx((4.8506, 3.0702, 1.9572), abs=1e-4)
    with pytest.raises(ValueError, match="p0s"):
        sample_dependent_schedule([])


def test_scheduled_gamma_flsc531_milestones():
    gammas = [scheduled_gamma(e, 350) for e in range(350)]
    assert gammas.index(3.0) == 100 and gammas.index(1.0) == 250
    assert gammas.count(5.0) == 100 and gammas.count(3.0) == 150
    short = [scheduled_gamma(e, 35) for e in range(35)]
    assert short.index(3.0) == 10 and short.index(1.0) == 25  # milestones scale with the run
    with pytest.raises(ValueError, match="epoch"):
        scheduled_gamma(350, 350)


def test_scheduled_focal_loss_follows_set_epoch():
    logits, target, _ = make_inputs((10, 4), seed=2)
    criterion = ScheduledFocalLoss()
    for epoch, gamma in ((0, 5.0), (120, 3.0), (300, 1.0)):
        criterion.set_epoch(epoch, 350)
        assert criterion.gamma == gamma
        torch.testing.assert_close(criterion(logits, target), focal_loss(logits, target, gamma))


def test_modules_match_functional_and_move_weight():
    logits, target, weight = make_inputs((12, 5), seed=4)
    fl = FocalLoss(2.0, weight.float(), reduction="sum").double()
    assert fl.weight.dtype == torch.float64 and "weight" in fl.state_dict()
    expected = focal_loss(logits, target, 2.0, weight, reduction="sum")
    torch.testing.assert_close(fl(logits, target), expected)
    target = target.clamp_min(0)
    flsd = SampleDependentFocalLoss(ignore_index=1)
    expected = sample_dependent_focal_loss(logits, target, ignore_index=1)
    torch.testing.assert_close(flsd(logits, target), expected)
    assert "gamma=2.0" in repr(fl) and "thresholds=(0.2,)" in repr(flsd)


def test_half_precision_logits_are_computed_in_float32():
    logits, target, _ = make_inputs((16, 10), dtype=torch.float32)
    for dtype in (torch.float16, torch.bfloat16):
        low = logits.to(dtype)
        got = focal_loss(low, target, 2.0)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, focal_loss(low.float(), target, 2.0))


# The focal losses compute their derivative by hand (_focal_paths: both paths): against autograd
# on the plain formula, in float64, for every schedule, reduction, weighting and shape.


def plain_focal(logits, target, thresholds, gammas, weight=None, ignore_index=-100,
                reduction="mean"):  # fmt: skip
    """The focal loss as autograd differentiates it, op by op."""
    nll = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
    one_minus_pt = -torch.expm1(-nll)
    if thresholds:
        log_pt = -nll.detach()
        gamma = torch.full_like(nll, gammas[-1])
        for threshold, g in zip(reversed(thresholds), reversed(gammas[:-1]), strict=True):
            gamma = torch.where(log_pt < math.log(threshold), g, gamma)
        one_minus_pt = one_minus_pt.clamp_min(torch.finfo(nll.dtype).tiny)
    else:
        gamma = gammas[0]
        if gamma < 1:
            one_minus_pt = one_minus_pt.clamp_min(torch.finfo(nll.dtype).tiny)
    values = one_minus_pt**gamma * nll
    valid = target != ignore_index
    weights = valid.to(nll.dtype)
    if weight is not None:
        weights = torch.where(valid, weight[torch.where(valid, target, 0)], 0.0)
    values = values * weights
    if reduction == "none":
        return values
    return values.sum() if reduction == "sum" else values.sum() / weights.sum()


SCHEDULES = [((), (0.0,)), ((), (0.5,)), ((), (1.0,)), ((), (3.0,)), FLSD_53, FLSD_532]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=str)
@pytest.mark.parametrize("shape", [*SHAPES, (3, 4, 5)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_written_out_derivative_equals_autograd_on_the_formula(schedule, shape, reduction,
                                                               weighted):  # fmt: skip
    logits, target, weight = make_inputs(shape, seed=31, scale=2.0)
    weight = weight if weighted else None
    ours_in, plain_in = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = sample_dependent_focal_loss(ours_in, target, *schedule, weight, reduction=reduction)
    plain = plain_focal(plain_in, target, *schedule, weight, reduction=reduction)
    torch.testing.assert_close(ours, plain, rtol=1e-12, atol=1e-14)
    grad_out = torch.rand_like(ours) + 0.5
    # the written-out derivative, then the one recomputed for create_graph
    for create_graph in (False, True):
        (ours_grad,) = torch.autograd.grad(ours, ours_in, grad_out, True, create_graph)
        (plain_grad,) = torch.autograd.grad(plain, plain_in, grad_out, True, create_graph)
        torch.testing.assert_close(ours_grad, plain_grad, rtol=1e-10, atol=1e-14)
    # second derivatives, along one direction
    direction = torch.randn_like(logits)
    (ours_hvp,) = torch.autograd.grad((ours_grad * direction).sum(), ours_in)
    (plain_hvp,) = torch.autograd.grad((plain_grad * direction).sum(), plain_in)
    torch.testing.assert_close(ours_hvp, plain_hvp, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("schedule", [((), (3.0,)), FLSD_532], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_and_gradgradcheck_every_reduction(schedule, reduction):
    logits, target, weight = make_inputs((4, 3, 2), seed=32, scale=1.5, ignore_fraction=0.3)
    logits.requires_grad_()
    for w in (None, weight):

        def loss(x, w=w):
            return sample_dependent_focal_loss(x, target, *schedule, w, reduction=reduction)

        assert torch.autograd.gradcheck(loss, (logits,))
        assert torch.autograd.gradgradcheck(loss, (logits,))


def test_ignore_index_inside_the_class_range_has_no_gradient():
    logits, target, _ = make_inputs((10, 4), seed=33, ignore_fraction=0.0)
    target[::2] = 1
    logits.requires_grad_()
    focal_loss(logits, target, 2.0, ignore_index=1).backward()
    assert (logits.grad[::2] == 0).all() and (logits.grad[1::2] != 0).any()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits_get_their_gradient_in_their_dtype(dtype):
    logits, target, _ = make_inputs((16, 10), dtype=torch.float32)
    low = logits.to(dtype).requires_grad_()
    full = low.detach().float().requires_grad_()
    sample_dependent_focal_loss(low, target).backward()
    sample_dependent_focal_loss(full, target).backward()
    assert low.grad.dtype == dtype
    torch.testing.assert_close(low.grad, full.grad.to(dtype))


def test_no_graph_without_grad():
    logits, target, _ = make_inputs((8, 5))
    with torch.no_grad():
        loss = sample_dependent_focal_loss(logits.requires_grad_(), target)
    assert loss.grad_fn is None and not loss.requires_grad
    torch.testing.assert_close(loss, plain_focal(logits.detach(), target, *FLSD_53))


def test_a_class_weight_that_requires_grad_is_refused_not_silently_constant():
    logits, target = torch.randn(4, 3, requires_grad=True), torch.tensor([0, 1, 2, 1])
    weight = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for loss in (focal_loss, sample_dependent_focal_loss):
        with pytest.raises(ValueError, match=r"weight requires grad.*weight\.detach\(\)"):
            loss(logits, target, weight=weight)
        loss(logits, target, weight=weight.detach()).backward()
    with torch.no_grad():  # nothing is differentiated: the weight may require grad
        focal_loss(logits, target, weight=weight)


# Two paths (losses/_focal_paths.py): every test here runs on both (conftest.py's focal_path).


@pytest.mark.parametrize("shape", [(128, 10), (3, 4, 5), (2000, 10)])
def test_small_2d_cpu_logits_take_the_numpy_path_the_rest_torchs(shape, focal_path):
    logits = torch.randn(shape, requires_grad=True)
    loss = sample_dependent_focal_loss(logits, torch.randint(shape[1], shape[:1] + shape[2:]))
    numpy = focal_path == "numpy path" and len(shape) == 2 and logits.numel() <= 2**13
    assert type(loss.grad_fn).__name__ == (
        "_SmallFocalLossBackward" if numpy else "_FocalLossBackward"
    )


@pytest.mark.parametrize("schedule", SCHEDULES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_float32_paths_agree(schedule, reduction, weighted, monkeypatch):
    logits, target, weight = make_inputs((128, 10), seed=35, dtype=torch.float32)
    weight = weight if weighted else None
    results = []
    for small in (2**13, 0):  # the NumPy path, then torch's
        monkeypatch.setattr(_focal_paths, "SMALL", small)
        x = logits.clone().requires_grad_()
        loss = sample_dependent_focal_loss(x, target, *schedule, weight, reduction=reduction)
        (loss * (torch.arange(loss.numel()).view_as(loss) % 3 + 1)).sum().backward()
        results.append((loss, x.grad))
    (numpy_loss, numpy_grad), (torch_loss, torch_grad) = results
    torch.testing.assert_close(numpy_loss, torch_loss, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(numpy_grad, torch_grad, rtol=1e-4, atol=1e-7)


def test_non_finite_logits_raise_the_loss_error_not_numpy_warnings():
    logits, target, _ = make_inputs((8, 5), ignore_fraction=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a NumPy RuntimeWarning would fail here
        for value, name in ((math.nan, "NaN: 1"), (math.inf, r"\+inf: 1")):
            bad = logits.clone()
            bad[3, 2] = value
            with pytest.raises(ValueError, match=name):
                sample_dependent_focal_loss(bad, target)
        low = logits.clone()
        low[:, 0] = -math.inf  # p = 0 for one class: finite wherever the target is another
        kept = target != 0
        loss = focal_loss(low.requires_grad_(), torch.where(kept, target, -100))
        loss.backward()
        assert loss.isfinite() and low.grad.isfinite().all() and (low.grad[:, 0] == 0).all()


def test_strided_logits_and_inference_mode():
    logits, target, weight = make_inputs((6, 9))
    transposed = logits.T.contiguous().T  # same values, column-major strides
    expected = sample_dependent_focal_loss(logits, target, weight=weight)
    torch.testing.assert_close(
        sample_dependent_focal_loss(transposed, target, weight=weight), expected
    )
    with torch.inference_mode():
        torch.testing.assert_close(
            sample_dependent_focal_loss(logits, target, weight=weight), expected
        )
