import pytest
import torch
import torch.nn.functional as F

from focalcal.losses import (
    BrierLoss,
    CrossEntropyLoss,
    LabelSmoothingLoss,
    MMCELoss,
    brier_loss,
    cross_entropy,
    mmce,
    mmce_loss,
)
from tests.losses import reference
from tests.losses.test_focal import REDUCTIONS, SHAPES, make_inputs


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.05, 0.3])
def test_cross_entropy_and_label_smoothing_equal_torch(shape, reduction, smoothing):
    logits, target, weight = make_inputs(shape, seed=1)
    for w in (None, weight):
        ours_in, torch_in = logits.clone().requires_grad_(), logits.clone().requires_grad_()
        ours = cross_entropy(ours_in, target, w, reduction=reduction, label_smoothing=smoothing)
        theirs = F.cross_entropy(
            torch_in, target, w, reduction=reduction, label_smoothing=smoothing
        )
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
        ours.sum().backward()
        theirs.sum().backward()
        torch.testing.assert_close(ours_in.grad, torch_in.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_label_smoothing_equals_written_out_formula(reduction):
    logits, target, weight = make_inputs((9, 4, 3), seed=7)
    w = weight.tolist()
    expected_values = [
        0.0 if y < 0 else reference.smoothed_ce(z, y, 0.1, w)
        for z, y in reference.rows(logits, target)
    ]
    denominator = sum(w[y] for y in target.flatten().tolist() if y >= 0)
    got = LabelSmoothingLoss(0.1, weight, reduction=reduction)(logits, target)
    expected = torch.tensor(expected_values, dtype=torch.float64)
    if reduction == "none":
        expected = expected.reshape(target.shape)
    elif reduction == "sum":
        expected = expected.sum()
    else:
        expected = expected.sum() / denominator
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_brier_equals_reference(shape, reduction):
    logits, target, weight = make_inputs(shape, seed=2)
    expected = reference.loss_reference(
        reference.brier, logits, target, weight, reduction=reduction
    )
    torch.testing.assert_close(brier_loss(logits, target, weight, reduction=reduction), expected)
    torch.testing.assert_close(BrierLoss(weight, reduction=reduction)(logits, target), expected)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(300, 10), (6, 4, 5, 3), (7, 3)])
def test_mmce_equals_double_loop_reference(weighted, shape):
    logits, target, _ = make_inputs(shape, seed=11, scale=2.0)
    expected = reference.mmce(logits, target, weighted)
    got = mmce(logits, target, weighted=weighted)
    assert got.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_mmce_float32_large_batch_equals_float64(weighted):
    logits, target, _ = make_inputs((4096, 10), seed=12, ignore_fraction=0.0)
    expected = mmce(logits, target, weighted=weighted)
    got = mmce(logits.float(), target, weighted=weighted)
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)


def test_mmce_with_one_group_empty():
    logits = torch.tensor([[3.0, 0.0], [2.0, 0.0], [0.5, 0.0]], dtype=torch.float64)
    all_right = torch.zeros(3, dtype=torch.long)
    for weighted in (False, True):
        expected = reference.mmce(logits, all_right, weighted)
        assert expected > 0
        assert mmce(logits, all_right, weighted).item() == pytest.approx(expected, rel=1e-12)


def test_mmce_bandwidth_and_ignore_index():
    logits, target, _ = make_inputs((40, 5), seed=13)
    for h in (0.05, 1.0):
        expected = reference.mmce(logits, target, True, h=h)
        assert mmce(logits, target, True, bandwidth=h).item() == pytest.approx(expected, rel=1e-9)
    kept = target >= 0
    assert mmce(logits, target).item() == pytest.approx(mmce(logits[kept], target[kept]).item())


@pytest.mark.parametrize("weighted", [False, True])
def test_mmce_ignore_index_inside_the_class_range(weighted):
    logits, target, _ = make_inputs((60, 3), seed=15, ignore_fraction=0.0)
    target[logits.argmax(1) == 1] = 1  # ignored samples that are "predicted right"
    kept = target != 1
    expected = mmce(logits[kept], target[kept], weighted).item()
    assert mmce(logits, target, weighted, ignore_index=1).item() == pytest.approx(expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_mmce_loss_is_cross_entropy_plus_lambda_mmce(reduction, weighted):
    logits, target, weight = make_inputs((50, 6), seed=14)
    penalty = reference.mmce(logits, target, weighted)
    got = mmce_loss(logits, target, 2.0, weighted, weight=weight, reduction=reduction)
    ce = F.cross_entropy(logits, target, weight, reduction=reduction)
    target_weight = torch.where(target >= 0, weight[target.clamp_min(0)], 0.0)
    if reduction == "mean":
        expected = ce + 2.0 * penalty
    else:
        per_sample = F.cross_entropy(logits, target, weight, reduction="none")
        per_sample = per_sample + 2.0 * penalty * target_weight
        expected = per_sample if reduction == "none" else per_sample.sum()
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    module = MMCELoss(2.0, weighted, weight=weight, reduction=reduction)
    torch.testing.assert_close(module(logits, target), got)


def test_mmce_is_zero_for_a_calibrated_batch():
    # two samples at confidence 0.5, one right and one wrong: accuracy equals confidence
    logits = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    value = mmce(logits, torch.tensor([0, 1]))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_cross_entropy_module_defaults_and_validation():
    assert CrossEntropyLoss().label_smoothing == 0.0
    assert LabelSmoothingLoss().label_smoothing == 0.05
    with pytest.raises(ValueError, match="label_smoothing"):
        LabelSmoothingLoss(1.5)
    with pytest.raises(ValueError, match="bandwidth"):
        MMCELoss(bandwidth=0.0)
    with pytest.raises(ValueError, match="lam"):
        mmce_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), lam=-1.0)
    with pytest.raises(ValueError, match="lam"):
        MMCELoss(lam=float("nan"))
