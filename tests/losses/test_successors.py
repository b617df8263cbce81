import math
import re

import pytest
import torch
import torch.nn.functional as F

from focalcal.losses import (
    DualFocalLoss,
    MarginLabelSmoothingLoss,
    build_loss,
    dual_focal_loss,
    focal_loss,
    margin_label_smoothing_loss,
)
from tests.losses import reference
from tests.losses.test_focal import REDUCTIONS, SHAPES, make_inputs
from tests.losses.test_robustness import GOOD_LOGITS, GOOD_TARGET, assert_finite_everywhere
from tests.losses.test_robustness import extreme_logits as make_extreme_logits

# p_j recovered from a float64 loss passes through a softmax, a division, a root and two sums
# of terms <= 1: a few ulps of 1 each, 16 ulps in all at most (1.1e-16 seen)
P_J_ROUNDING = 16 * torch.finfo(torch.float64).eps


def written_out_p_j(z, y):
    p = reference.softmax(z)
    return max((q for q in p if q < p[y]), default=0.0)


# Dual focal loss


@pytest.mark.parametrize("gamma", [0.5, 2.0, 5.0])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_dual_focal_equals_per_sample_reference(gamma, shape, reduction, weighted):
    logits, target, weight = make_inputs(shape, seed=int(gamma * 10) + 100)
    weight = weight if weighted else None
    expected = reference.loss_reference(
        lambda z, y: reference.dual_focal(z, y, gamma), logits, target, weight, reduction=reduction
    )
    got = dual_focal_loss(logits, target, gamma, weight, reduction=reduction)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    module = DualFocalLoss(gamma, weight, reduction=reduction)
    torch.testing.assert_close(module(logits, target), got, rtol=0, atol=0)


def test_dual_focal_float32_equals_reference():
    logits, target, _ = make_inputs((64, 10), dtype=torch.float32)
    expected = reference.loss_reference(
        lambda z, y: reference.dual_focal(z, y, 5.0), logits, target
    )
    got = dual_focal_loss(logits, target, 5.0)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_dual_focal_with_gamma_zero_is_cross_entropy(reduction):
    logits, target, weight = make_inputs((4, 5, 3), seed=3)
    ours_in, torch_in = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = dual_focal_loss(ours_in, target, 0.0, weight, reduction=reduction)
    theirs = F.cross_entropy(torch_in, target, weight, reduction=reduction)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    ours.sum().backward()
    theirs.sum().backward()
    torch.testing.assert_close(ours_in.grad, torch_in.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 3.0, 5.0])
def test_dual_focal_lies_between_focal_and_cross_entropy(gamma):
    logits, target, _ = make_inputs((200, 6), seed=4, ignore_fraction=0.0)
    dual = dual_focal_loss(logits, target, gamma, reduction="none")
    # equal where p_j = 0, up to rounding: the focal loss may take NumPy's path, dual's torch's
    assert (focal_loss(logits, target, gamma, reduction="none") <= dual * (1 + 1e-12)).all()
    assert (dual <= focal_loss(logits, target, 0.0, reduction="none") * (1 + 1e-12)).all()


def p_j_from_loss(logits, target, gamma=1.0):
    """Recover p_j from the loss: value = (1 - p_y + p_j)^γ · (-log p_y)."""
    p_y = torch.softmax(logits, 1).gather(1, target.unsqueeze(1)).squeeze(1)
    values = dual_focal_loss(logits, target, gamma, reduction="none")
    return (values / -p_y.log()) ** (1 / gamma) - 1 + p_y


def test_dual_focal_p_j_is_the_second_largest_when_the_target_is_the_largest():
    logits = torch.tensor([[3.0, 1.0, 2.0, -1.0]], dtype=torch.float64)
    p = torch.softmax(logits, 1)[0]
    torch.testing.assert_close(p_j_from_loss(logits, torch.tensor([0]))[0], p[2])


def test_dual_focal_p_j_is_zero_when_the_target_is_the_smallest():
    logits = torch.tensor([[3.0, 1.0, 2.0, -1.0]], dtype=torch.float64)
    target = torch.tensor([3])
    assert p_j_from_loss(logits, target).abs().item() <= P_J_ROUNDING
    torch.testing.assert_close(
        dual_focal_loss(logits, target, 5.0), focal_loss(logits, target, 5.0), rtol=0, atol=0
    )


@pytest.mark.parametrize(
    ("row", "y", "j"),
    [
        ([2.0, 2.0, 1.0, 0.0], 0, 2),  # the class tied with the target is not strictly below
        ([2.0, 1.0, 2.0, 1.0], 2, 1),  # a tie among the classes below: its probability
        ([2.0, 2.0, 2.0, 2.0], 1, None),  # every class tied: none below, p_j = 0
        ([0.0, 5.0, 0.0, 5.0], 0, None),  # the smallest, tied with another: p_j = 0
    ],
)
def test_dual_focal_ties_count_only_strictly_smaller_probabilities(row, y, j):
    logits, target = torch.tensor([row], dtype=torch.float64), torch.tensor([y])
    p = torch.softmax(logits, 1)[0]
    expected = 0.0 if j is None else p[j].item()
    assert written_out_p_j(row, y) == pytest.approx(expected, abs=P_J_ROUNDING)
    assert p_j_from_loss(logits, target).item() == pytest.approx(expected, abs=P_J_ROUNDING)


def test_dual_focal_gradient_flows_through_p_j():
    logits, target, _ = make_inputs((30, 5), seed=5, ignore_fraction=0.0)
    leaf = logits.clone().requires_grad_()
    dual_focal_loss(leaf, target, 5.0, reduction="sum").backward()

    def written_out(x, detach_p_j):
        p = torch.softmax(x, 1)
        p_y = p.gather(1, target.unsqueeze(1)).squeeze(1)
        below = x < x.gather(1, target.unsqueeze(1))
        p_j = torch.where(below, p, 0.0).max(1).values
        p_j = p_j.detach() if detach_p_j else p_j
        return (-((1 - p_y + p_j) ** 5) * p_y.log()).sum()

    for detach, should_match in ((False, True), (True, False)):
        other = logits.clone().requires_grad_()
        written_out(other, detach).backward()
        assert torch.allclose(leaf.grad, other.grad, rtol=1e-10, atol=1e-12) is should_match


def test_dual_focal_ignore_index_inside_the_class_range():
    logits, target, weight = make_inputs((40, 4), seed=6, ignore_fraction=0.0)
    got = dual_focal_loss(logits, target, 5.0, weight, ignore_index=1, reduction="none")
    assert (got[target == 1] == 0).all()
    expected = reference.loss_reference(
        lambda z, y: reference.dual_focal(z, y, 5.0), logits, target, weight, ignore=1
    )
    torch.testing.assert_close(
        dual_focal_loss(logits, target, 5.0, weight, ignore_index=1), expected
    )


@pytest.mark.parametrize("gamma", [0.0, 0.01, 0.5, 0.999, 1.0, 2.5, 5.0, 10.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dual_focal_finite_at_extremes(gamma, dtype):
    logits, target = make_extreme_logits(dtype)
    criterion = DualFocalLoss(gamma, reduction="none")
    assert_finite_everywhere(criterion, logits, target)
    # p_y == 1 exactly: p_j = 0, the loss is 0 and so is its gradient
    p_one = torch.tensor([[30.0, -30.0, -30.0]], dtype=dtype).mul(1e3).requires_grad_()
    loss = dual_focal_loss(p_one, torch.tensor([0]), gamma)
    loss.backward()
    assert loss.item() == 0.0 and (p_one.grad == 0).all()


def test_nan_logits_at_ignored_positions_are_ignored_like_torch():
    logits = torch.tensor([[0.0, 1.0, 2.0], [float("nan"), 0.0, 1.0]])
    target = torch.tensor([1, -100])
    for loss in (dual_focal_loss, margin_label_smoothing_loss):
        assert torch.isfinite(loss(logits, target))


# Margin-based label smoothing


@pytest.mark.parametrize(("margin", "alpha"), [(10.0, 0.1), (1.0, 0.5), (0.0, 0.1)])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_mbls_equals_per_sample_reference(margin, alpha, shape, reduction, weighted):
    logits, target, weight = make_inputs(shape, seed=7, scale=6.0)
    weight = weight if weighted else None
    expected = reference.loss_reference(
        lambda z, y: reference.mbls(z, y, margin, alpha), logits, target, weight,
        reduction=reduction,
    )  # fmt: skip
    got = margin_label_smoothing_loss(logits, target, margin, alpha, weight, reduction=reduction)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    module = MarginLabelSmoothingLoss(margin, alpha, weight, reduction=reduction)
    torch.testing.assert_close(module(logits, target), got, rtol=0, atol=0)


def test_mbls_penalty_is_active_in_the_reference_test():
    logits, target, _ = make_inputs((13, 7), seed=7, scale=6.0)
    rows = reference.rows(logits, target)
    assert any(max(z) - min(z) > 10.0 for z, _ in rows)


def test_mbls_mean_is_the_authors_mean_over_samples_and_classes():
    logits, target, _ = make_inputs((6, 5, 4), seed=8, scale=6.0)
    kept = logits.movedim(1, -1)[target != -100]  # (M, C)
    diff = kept.max(dim=1, keepdim=True).values - kept
    expected = F.cross_entropy(logits, target) + 0.1 * (diff - 10.0).relu().mean()
    assert (diff > 10.0).any()
    torch.testing.assert_close(margin_label_smoothing_loss(logits, target), expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mbls_is_cross_entropy_when_every_gap_is_below_the_margin(reduction):
    logits, target, weight = make_inputs((5, 4, 3, 2), seed=9, scale=1.0)
    assert (logits.amax(1) - logits.amin(1)).max() < 10.0
    ours_in, torch_in = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = margin_label_smoothing_loss(ours_in, target, weight=weight, reduction=reduction)
    theirs = F.cross_entropy(torch_in, target, weight, reduction=reduction)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    ours.sum().backward()
    theirs.sum().backward()
    torch.testing.assert_close(ours_in.grad, torch_in.grad, rtol=1e-12, atol=1e-12)


def test_mbls_with_alpha_zero_is_cross_entropy():
    logits, target, weight = make_inputs((20, 5), seed=10, scale=8.0)
    got = margin_label_smoothing_loss(logits, target, alpha=0.0, weight=weight)
    torch.testing.assert_close(got, F.cross_entropy(logits, target, weight))


def test_mbls_ignore_index_inside_the_class_range():
    logits, target, weight = make_inputs((40, 4), seed=11, scale=6.0, ignore_fraction=0.0)
    got = margin_label_smoothing_loss(logits, target, 2.0, weight=weight, ignore_index=1)
    expected = reference.loss_reference(
        lambda z, y: reference.mbls(z, y, 2.0, 0.1), logits, target, weight, ignore=1
    )
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mbls_finite_at_extremes(dtype):
    logits, target = make_extreme_logits(dtype)
    for margin in (0.0, 10.0):
        assert_finite_everywhere(MarginLabelSmoothingLoss(margin, reduction="none"), logits, target)


# Both


FUNCTIONS = {
    "dual-focal-5": lambda x, t, **kw: dual_focal_loss(x, t, 5.0, **kw),
    "dual-focal-0.5": lambda x, t, **kw: dual_focal_loss(x, t, 0.5, **kw),
    "mbls-margin-1": lambda x, t, **kw: margin_label_smoothing_loss(x, t, 1.0, 0.5, **kw),
}


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 2, 2)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_float64(name, shape, reduction):
    logits, target, weight = make_inputs(shape, seed=21, scale=1.5)
    logits.requires_grad_()
    function = FUNCTIONS[name]
    assert torch.autograd.gradcheck(
        lambda x: function(x, target, weight=weight, reduction=reduction), (logits,)
    )


@pytest.mark.parametrize("name", FUNCTIONS)
def test_second_derivatives_are_exact(name):
    logits, target, weight = make_inputs((5, 4), seed=23, scale=1.5)
    logits.requires_grad_()
    function = FUNCTIONS[name]
    assert torch.autograd.gradgradcheck(lambda x: function(x, target, weight=weight), (logits,))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_half_precision_logits_are_computed_in_float32(name):
    logits, target, _ = make_inputs((16, 10), scale=6.0, dtype=torch.float32)
    function = FUNCTIONS[name]
    for dtype in (torch.float16, torch.bfloat16):
        low = logits.to(dtype)
        got = function(low, target)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, function(low.float(), target))


def test_modules_move_weight_and_show_their_hyperparameters():
    logits, target, weight = make_inputs((12, 5), seed=4, scale=6.0)
    dual = DualFocalLoss(2.0, weight.float(), reduction="sum").double()
    assert dual.weight.dtype == torch.float64 and "weight" in dual.state_dict()
    expected = dual_focal_loss(logits, target, 2.0, weight, reduction="sum")
    torch.testing.assert_close(dual(logits, target), expected)
    target = target.clamp_min(0)
    mbls = MarginLabelSmoothingLoss(5.0, 0.2, weight.float(), ignore_index=3).double()
    expected = margin_label_smoothing_loss(logits, target, 5.0, 0.2, weight, ignore_index=3)
    torch.testing.assert_close(mbls(logits, target), expected)
    assert repr(dual) == "DualFocalLoss(gamma=2.0, ignore_index=-100, reduction='sum')"
    assert "margin=5.0, alpha=0.2, ignore_index=3, reduction='mean'" in repr(mbls)


def test_defaults_are_the_authors():
    assert DualFocalLoss().gamma == 5.0
    mbls = MarginLabelSmoothingLoss()
    assert (mbls.margin, mbls.alpha) == (10.0, 0.1)


@pytest.mark.parametrize("gamma", [-0.5, float("nan"), float("inf")])
def test_bad_gamma(gamma):
    with pytest.raises(ValueError, match="gamma must be a finite float >= 0"):
        dual_focal_loss(GOOD_LOGITS, GOOD_TARGET, gamma)
    with pytest.raises(ValueError, match="gamma must be a finite float >= 0"):
        DualFocalLoss(gamma)


@pytest.mark.parametrize("argument", ["margin", "alpha"])
@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_bad_margin_or_alpha(argument, value):
    message = f"{argument} must be a finite float >= 0, got {value!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        margin_label_smoothing_loss(GOOD_LOGITS, GOOD_TARGET, **{argument: value})
    with pytest.raises(ValueError, match=re.escape(message)):
        MarginLabelSmoothingLoss(**{argument: value})
    with pytest.raises(ValueError, match=re.escape(message)):
        build_loss("mbls", **{argument: value})


@pytest.mark.parametrize(
    ("logits", "target", "kwargs", "message"),
    [
        (GOOD_LOGITS, torch.tensor([0, 1, 3, 0]), {}, r"outside \[0, 3\).*max 3"),
        (GOOD_LOGITS, torch.tensor([0.0, 1.0, 2.0, 0.0]), {}, "class indices.*float32"),
        (GOOD_LOGITS, torch.tensor([0, 1, 2]), {}, r"target shape \(3,\) does not match"),
        (GOOD_LOGITS, GOOD_TARGET, {"reduction": "avg"}, "reduction must be one of"),
        (GOOD_LOGITS, GOOD_TARGET, {"weight": torch.ones(4)}, r"weight must be .*\(3,\)"),
        (
            torch.tensor([[0.0, float("nan"), 1.0]] * 4),
            GOOD_TARGET,
            {},
            r"non-finite values at non-ignored targets \(NaN: 3, \+inf: 0",
        ),
        (
            GOOD_LOGITS,
            GOOD_TARGET,
            {"weight": torch.tensor([1.0, float("nan"), 1.0])},
            "weight holds NaN or infinite",
        ),
    ],
)
def test_mbls_bad_input_raises_value_error_naming_the_problem(logits, target, kwargs, message):
    # The other losses run these cases and more in test_robustness.py; MbLS is left out there
    # because its margin penalty keeps the loss non-zero where p_t = 1, so an infinite weight
    # there gives inf, not the NaN that case relies on.
    with pytest.raises(ValueError, match=message):
        margin_label_smoothing_loss(logits, target, 1.0, **kwargs)


@pytest.mark.parametrize("function", [dual_focal_loss, margin_label_smoothing_loss])
def test_all_ignored_mean_is_nan_like_torch(function):
    target = torch.full((4,), -100)
    assert torch.isnan(function(GOOD_LOGITS, target))
    assert function(GOOD_LOGITS, target, reduction="sum").item() == 0.0


def test_dual_focal_reference_example_by_hand():
    # p = softmax(2, 0, -1); target 1: p_y = 0.1142, p_j = p_2 = 0.0420
    p = [math.exp(v) for v in (2.0, 0.0, -1.0)]
    p = [v / sum(p) for v in p]
    expected = -((1 - p[1] + p[2]) ** 5) * math.log(p[1])
    got = dual_focal_loss(torch.tensor([[2.0, 0.0, -1.0]], dtype=torch.float64), torch.tensor([1]))
    assert got.item() == pytest.approx(expected, rel=1e-12)
