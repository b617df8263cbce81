"""Every loss: float64 gradcheck, finite at extreme logits, clear errors on bad input."""

import warnings

import pytest
import torch

from focalcal._checks import ProbabilitiesAsLogitsWarning
from focalcal.losses import (
    brier_loss,
    build_loss,
    cross_entropy,
    dual_focal_loss,
    focal_loss,
    loss_names,
    mmce,
    mmce_loss,
    sample_dependent_focal_loss,
)
from tests.losses.test_focal import make_inputs

pytestmark = pytest.mark.usefixtures("focal_path")  # conftest.py: both paths
NAMES = [n for n in loss_names() if "<" not in n] + ["fl-0", "fl-0.5", "fl-3", "ls-0.05"]
NAMES += ["dual-focal-0.5", "dual-focal-5"]
FUNCTIONS = [
    lambda x, t, **kw: focal_loss(x, t, 2.0, **kw),
    lambda x, t, **kw: sample_dependent_focal_loss(x, t, **kw),
    lambda x, t, **kw: brier_loss(x, t, **kw),
    lambda x, t, **kw: cross_entropy(x, t, label_smoothing=0.1, **kw),
    lambda x, t, **kw: mmce_loss(x, t, weighted=False, **kw),
    lambda x, t, **kw: mmce_loss(x, t, weighted=True, **kw),
    lambda x, t, **kw: dual_focal_loss(x, t, 5.0, **kw),
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 2, 2)])
def test_gradcheck_float64(name, shape):
    logits, target, weight = make_inputs(shape, seed=21, scale=1.5)
    criterion = build_loss(name, weight=weight)
    logits.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: criterion(x, target), (logits,))
    criterion = build_loss(name, reduction="none")
    assert torch.autograd.gradcheck(lambda x: criterion(x, target), (logits,))


@pytest.mark.parametrize("name", ["fl-0.5", "fl-3", "flsd-53", "brier", "ls-0.05", "mmce-weighted"])
def test_second_derivatives_are_exact(name):
    logits, target, weight = make_inputs((5, 4), seed=23, scale=1.5)
    criterion = build_loss(name, weight=weight)
    logits.requires_grad_()
    assert torch.autograd.gradgradcheck(lambda x: criterion(x, target), (logits,))


def test_gradcheck_mmce_measure():
    logits, target, _ = make_inputs((10, 3), seed=22, scale=1.5)
    logits.requires_grad_()
    for weighted in (False, True):
        assert torch.autograd.gradcheck(lambda x, w=weighted: mmce(x, target, w), (logits,))


def extreme_logits(dtype):
    """Logits at ±1e4, including rows where p_t == 1 exactly and rows where p_t == 0."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 10, generator=g).sign() * 1e4
    logits[:, 0] = 2e4  # class 0 always wins outright: p_0 == 1 exactly
    target = torch.randint(10, (32,), generator=g)
    target[:16] = 0
    return logits.to(dtype), target


def assert_finite_everywhere(criterion, logits, target):
    logits = logits.clone().requires_grad_()
    loss = criterion(logits, target)
    loss.sum().backward()
    assert torch.isfinite(loss).all(), loss
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("gamma", [0.0, 0.01, 0.5, 0.999, 1.0, 2.5, 10.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_focal_finite_at_extremes_for_gamma_in_0_10(gamma, dtype):
    logits, target = extreme_logits(dtype)
    assert_finite_everywhere(lambda x, t: focal_loss(x, t, gamma, reduction="none"), logits, target)
    # p_t == 1 exactly: the loss is 0 and so is its gradient
    p_one = torch.tensor([[30.0, -30.0, -30.0]], dtype=dtype).mul(1e3).requires_grad_()
    loss = focal_loss(p_one, torch.tensor([0]), gamma)
    loss.backward()
    assert loss.item() == 0.0 and (p_one.grad == 0).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_loss_finite_at_extremes(name, dtype):
    logits, target = extreme_logits(dtype)
    assert_finite_everywhere(build_loss(name, reduction="none"), logits, target)
    assert_finite_everywhere(build_loss(name, reduction="sum"), logits, target)


@pytest.mark.parametrize("name", NAMES)
def test_every_loss_finite_under_bf16_autocast(name):
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 10)
    with torch.no_grad():
        layer.weight.mul_(1e3)  # drives the logits to about ±1e4
    criterion = build_loss(name)
    x, target = torch.randn(32, 8), torch.randint(10, (32,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(x)
        assert logits.dtype == torch.bfloat16
        loss = criterion(logits, target)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(layer.weight.grad).all()


GOOD_LOGITS, GOOD_TARGET = torch.randn(4, 3), torch.tensor([0, 1, 2, -100])


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize(
    ("logits", "target", "kwargs", "message"),
    [
        (GOOD_LOGITS, torch.tensor([0, 1, 3, 0]), {}, r"outside \[0, 3\).*max 3"),
        (GOOD_LOGITS, torch.tensor([0, -1, 2, 0]), {}, r"outside \[0, 3\).*min -1"),
        (GOOD_LOGITS, torch.tensor([0.0, 1.0, 2.0, 0.0]), {}, "class indices.*float32"),
        (GOOD_LOGITS, torch.tensor([0, 1, 2]), {}, r"target shape \(3,\) does not match"),
        (GOOD_LOGITS, torch.zeros(4, 2, dtype=torch.long), {}, "target shape"),
        (torch.randn(3), torch.tensor(0), {}, r"logits must have shape \(N, C\)"),
        (GOOD_LOGITS.long(), GOOD_TARGET, {}, "logits must be a floating-point tensor"),
        (GOOD_LOGITS, GOOD_TARGET, {"reduction": "avg"}, "reduction must be one of"),
        (GOOD_LOGITS, GOOD_TARGET, {"weight": torch.ones(4)}, r"weight must be .*\(3,\)"),
        (
            torch.tensor([[0.0, float("nan"), 1.0]] * 4),
            GOOD_TARGET,
            {},
            r"non-finite values at non-ignored targets \(NaN: 3, \+inf: 0",
        ),
        (
            torch.tensor([[0.0, float("inf"), 1.0]] * 4),
            GOOD_TARGET,
            {},
            r"\(NaN: 0, \+inf: 3, -inf: 0\)",
        ),
        (
            GOOD_LOGITS,
            GOOD_TARGET,
            {"weight": torch.tensor([1.0, float("nan"), 1.0])},
            "weight holds NaN or infinite",
        ),
        (
            torch.tensor([[9.0, -9.0, -9.0]] * 4, dtype=torch.float64).mul(1e3),  # p_t = 1
            GOOD_TARGET * 0,
            {"weight": torch.tensor([float("inf"), 1.0, 1.0], dtype=torch.float64)},
            "weight holds NaN or infinite",
        ),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(function, logits, target, kwargs, message):
    with pytest.raises(ValueError, match=message):
        function(logits, target, **kwargs)


def test_nan_logits_at_ignored_positions_are_ignored_like_torch():
    logits = torch.tensor([[0.0, 1.0], [float("nan"), 0.0]])
    target = torch.tensor([1, -100])
    assert torch.isfinite(focal_loss(logits, target, 2.0))


@pytest.mark.parametrize("gamma", [-0.5, float("nan"), float("inf")])
def test_bad_gamma(gamma):
    with pytest.raises(ValueError, match="gamma must be a finite float >= 0"):
        focal_loss(GOOD_LOGITS, GOOD_TARGET, gamma)
    with pytest.raises(ValueError, match="gamma must be a finite float >= 0"):
        build_loss("fl-3").__class__(gamma=gamma)


@pytest.mark.parametrize(
    ("thresholds", "gammas", "message"),
    [
        ((0.2,), (5.0,), "needs 2 gammas"),
        ((0.5, 0.2), (1.0, 2.0, 3.0), "increase strictly"),
        ((0.0,), (1.0, 2.0), "increase strictly"),
        ((0.2,), (5.0, -3.0), "every gamma must be"),
    ],
)
def test_bad_schedule(thresholds, gammas, message):
    with pytest.raises(ValueError, match=message):
        sample_dependent_focal_loss(GOOD_LOGITS, GOOD_TARGET, thresholds, gammas)


@pytest.mark.parametrize("function", [focal_loss, cross_entropy])
def test_all_ignored_mean_is_nan_like_torch(function):
    target = torch.full((4,), -100)
    assert torch.isnan(function(GOOD_LOGITS, target))
    assert function(GOOD_LOGITS, target, reduction="sum").item() == 0.0
    # kept targets that all weigh 0: torch's mean is 0 / 0 as well
    weight = torch.tensor([0.0, 0.0, 1.0])
    assert torch.isnan(function(GOOD_LOGITS, torch.tensor([0, 1, 1, -100]), weight=weight))
    assert torch.isnan(torch.nn.functional.cross_entropy(GOOD_LOGITS, target))


def test_int32_targets_are_accepted():
    expected = focal_loss(GOOD_LOGITS, GOOD_TARGET)
    torch.testing.assert_close(focal_loss(GOOD_LOGITS, GOOD_TARGET.int()), expected)


@pytest.mark.parametrize("shape", [(8, 5), (4000, 10), (2, 5, 64, 64)])
def test_probabilities_as_logits_warn_at_every_size(shape):
    """The losses read one minimum before the whole check: of every logit while there are at
    most 32768, else of the first row."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=g)
    target = torch.randint(shape[1], (shape[0], *shape[2:]), generator=g)
    with pytest.warns(ProbabilitiesAsLogitsWarning):
        focal_loss(logits.softmax(1), target)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        focal_loss(logits, target)
        sample_dependent_focal_loss(logits.softmax(1).log(), target)
