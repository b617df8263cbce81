"""The paper's released code's label smoothing and MMCE, against references written here."""

import math

import pytest
import torch

from focalcal.losses import LabelSmoothingLoss, MMCELoss, build_loss, mmce, mmce_loss
from tests.losses.test_focal import make_inputs


def implied_targets(loss, logits, target):
    """The target distribution q of a (summed) cross-entropy: its gradient is softmax - q."""
    logits = logits.clone().requires_grad_()
    loss(logits, target).backward()
    return logits.softmax(1).detach() - logits.grad


@pytest.mark.parametrize("classes", [2, 5, 10])
@pytest.mark.parametrize("eps", [0.05, 0.2])
def test_spread_others_puts_eps_over_k_minus_1_on_the_other_classes(classes, eps):
    logits, target, _ = make_inputs((7, classes), seed=1, ignore_fraction=0.0)
    q = implied_targets(LabelSmoothingLoss(eps, reduction="sum", spread="others"), logits, target)
    expected = torch.full_like(q, eps / (classes - 1))
    expected[torch.arange(7), target] = 1 - eps
    torch.testing.assert_close(q, expected)
    torch_q = implied_targets(LabelSmoothingLoss(eps, reduction="sum"), logits, target)
    expected = torch.full_like(q, eps / classes)
    expected[torch.arange(7), target] = 1 - eps + eps / classes
    torch.testing.assert_close(torch_q, expected)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_spread_others_equals_the_written_out_loss_with_weights_and_ignored_targets(reduction):
    logits, target, weight = make_inputs((9, 4), seed=2)
    eps, classes = 0.1, 4
    log_p = logits.log_softmax(1)
    values, weights = [], []
    for i in range(9):
        y = int(target[i])
        if y == -100:
            values.append(0.0)
            continue
        q = [1 - eps if k == y else eps / (classes - 1) for k in range(classes)]
        values.append(-sum(q[k] * float(weight[k]) * float(log_p[i, k]) for k in range(classes)))
        weights.append(float(weight[y]))
    expected = {"none": torch.tensor(values, dtype=torch.float64),
                "sum": torch.tensor(sum(values), dtype=torch.float64),
                "mean": torch.tensor(sum(values) / sum(weights), dtype=torch.float64)}  # fmt: skip
    got = LabelSmoothingLoss(eps, weight, reduction=reduction, spread="others")(logits, target)
    torch.testing.assert_close(got, expected[reduction])


def test_spread_is_checked_and_named():
    assert "spread='others'" in repr(build_loss("ls-0.05", spread="others"))
    assert build_loss("ls-0.05").spread == "all"
    with pytest.raises(ValueError, match="spread"):
        LabelSmoothingLoss(0.1, spread="other")
    logits, target = torch.zeros(2, 3), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="smoothing <= "):  # the label would get the least
        LabelSmoothingLoss(0.7, spread="others")(logits, target)
    LabelSmoothingLoss(2 / 3, spread="others")(logits, target)  # uniform: the limit


def official_weighted_mmce(logits, target, h=0.4):
    """The released code's weighted MMCE, written out: each kernel sum averaged over its pairs,
    then divided by (group size products) + 1e-5; the root of that + 1e-10; 0 with a group
    empty. Dense N x N float64 arithmetic."""
    r, prediction = logits.double().softmax(1).max(1)
    right = prediction == target
    good, bad = r[right], r[~right]
    m, n = len(good), len(bad)
    if m == 0 or n == 0:
        return 0.0

    def pair_mean(a, wa, b, wb):
        kernel = torch.exp(-(a[:, None] - b[None, :]).abs() / h)
        return float((wa[:, None] * wb[None, :] * kernel).mean())

    total = pair_mean(good, 1 - good, good, 1 - good) / (m * m + 1e-5)
    total += pair_mean(bad, bad, bad, bad) / (n * n + 1e-5)
    total -= 2 * pair_mean(good, 1 - good, bad, bad) / (m * n + 1e-5)
    return math.sqrt(total + 1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("size", [5, 40, 128])
def test_official_weighted_mmce_equals_the_written_out_formula(seed, size):
    logits, target, _ = make_inputs((size, 10), seed=seed, scale=2.0, ignore_fraction=0.0)
    hit = torch.rand(size, generator=torch.Generator().manual_seed(seed)) < 0.6
    target[hit] = logits.argmax(1)[hit]  # a mix of right and wrong predictions
    expected = official_weighted_mmce(logits, target)
    got = mmce(logits, target, weighted=True, form="official-code")
    assert got.item() == pytest.approx(expected, rel=1e-9)
    if size == 128:  # the paper's batch: the double division makes it ≈ 30× smaller here
        assert mmce(logits, target, weighted=True).item() / got.item() > 20


def test_official_weighted_mmce_is_zero_with_a_group_empty_and_float32_agrees():
    logits = torch.tensor([[3.0, 0.0], [2.0, 0.0], [0.5, 0.0]], dtype=torch.float64)
    all_right = torch.zeros(3, dtype=torch.long)
    assert mmce(logits, all_right, True, form="official-code").item() == 0.0
    assert mmce(logits, 1 - all_right, True, form="official-code").item() == 0.0
    logits, target, _ = make_inputs((2048, 10), seed=5, ignore_fraction=0.0)
    expected = official_weighted_mmce(logits, target)
    got = mmce(logits.float(), target, True, form="official-code").item()
    assert got == pytest.approx(expected, rel=1e-4)


def test_official_unweighted_mmce_is_the_square_and_the_loss_adds_it():
    logits, target, _ = make_inputs((30, 4), seed=6)
    kumar = mmce(logits, target).item()
    assert mmce(logits, target, form="official-code").item() == pytest.approx(kumar**2)
    for weighted in (False, True):
        loss = MMCELoss(2.0, weighted, form="official-code", reduction="sum")
        expected = mmce_loss(logits, target, 0.0, reduction="sum") + 2.0 * (
            (target != -100).sum() * mmce(logits, target, weighted, form="official-code")
        )
        torch.testing.assert_close(loss(logits, target), expected)
    assert "form='official-code'" in repr(build_loss("mmce-weighted", form="official-code"))
    with pytest.raises(ValueError, match="form"):
        MMCELoss(form="official")
