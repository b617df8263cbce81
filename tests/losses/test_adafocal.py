"""AdaFocal: the loss against a float64 reference, the per-epoch γ update against the authors'
rule written out per bin, and γ moving the right way on over- and under-confident splits."""

import itertools
import math

import pytest
import torch

from focalcal.losses import focal_loss
from focalcal.losses.adafocal import AdaFocalLoss, adafocal_loss
from focalcal.losses.hooks import EpochStart, start_epoch
from tests.losses.reference import rows, softmax


def reference(logits, target, gammas, edges, weight=None, ignore_index=-100):
    """Per element: the bin of p_t by its lower edges, then focal or inverse focal loss."""
    values, weights = [], []
    for z, y in rows(logits, target):
        if y == ignore_index:
            values.append(0.0)
            weights.append(0.0)
            continue
        p = softmax(z)[y]
        b = sum(p >= e for e in edges)
        g = gammas[b]
        factor = (1 - p) ** g if g >= 0 else (1 + p) ** -g
        w = 1.0 if weight is None else weight[y]
        values.append(-factor * math.log(p) * w)
        weights.append(w)
    return torch.tensor(values, dtype=torch.float64), sum(weights)


@pytest.mark.parametrize("shape", [(37, 6), (5, 4, 3, 2)])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_adafocal_loss_matches_the_reference(shape, reduction):
    generator = torch.Generator().manual_seed(sum(shape))
    logits = 3 * torch.randn(shape, dtype=torch.float64, generator=generator)
    target = torch.randint(shape[1], (shape[0], *shape[2:]), generator=generator)
    target.view(-1)[::7] = -100
    weight = torch.rand(shape[1], dtype=torch.float64, generator=generator) + 0.5
    gammas = [-1.5, -0.2, 0.0, 0.4, 2.0, 5.0]
    edges = [0.1, 0.3, 0.5, 0.7, 0.9]
    expected, total_weight = reference(logits, target, gammas, edges, weight.tolist())
    as64 = {"dtype": torch.float64}
    got = adafocal_loss(logits, target, torch.tensor(gammas, **as64),
                        torch.tensor(edges, **as64), weight, reduction=reduction)  # fmt: skip
    if reduction == "none":
        torch.testing.assert_close(got.reshape(-1), expected, rtol=1e-12, atol=1e-12)
    elif reduction == "sum":
        torch.testing.assert_close(got, expected.sum(), rtol=1e-12, atol=1e-12)
    else:
        torch.testing.assert_close(got, expected.sum() / total_weight, rtol=1e-12, atol=1e-12)


def test_one_gamma_everywhere_is_focal_loss():
    logits, target = torch.randn(64, 10), torch.randint(10, (64,))
    module = AdaFocalLoss(gamma_initial=3.0)
    torch.testing.assert_close(module(logits, target), focal_loss(logits, target, gamma=3.0))


def test_gradients_match_finite_differences():
    logits = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    gammas, edges = torch.tensor([-1.0, 0.5, 2.0]), torch.tensor([0.2, 0.6])
    assert torch.autograd.gradcheck(
        lambda z: adafocal_loss(z, target, gammas, edges, reduction="sum"), (logits,)
    )


@pytest.mark.parametrize("scale", [1e2, 1e4, 1e30])
def test_extreme_logits_give_finite_losses_and_gradients(scale):
    logits = (torch.randn(32, 5) * scale).requires_grad_()
    target = torch.randint(5, (32,))
    loss = adafocal_loss(logits, target, torch.tensor([-2.0, 0.2, 20.0]), torch.tensor([0.3, 0.6]))
    loss.backward()
    assert loss.isfinite() and logits.grad.isfinite().all()


def authors_rule(gamma, gap, lam=1.0, switch=0.2, low=-2.0, high=20.0):
    """The published update of one bin, as scalar Python."""
    new = gamma * math.exp(lam * gap) if gamma > 0 else gamma * math.exp(-lam * gap)
    if abs(new) < switch:
        new = -switch if new > 0 else switch
    return max(min(new, high), low)


def validation(confidence, accuracy, n=3000, classes=4, seed=0):
    """Logits whose top-label confidence is ``confidence`` for every sample, right for about
    ``accuracy`` of them."""
    generator = torch.Generator().manual_seed(seed)
    other = (1 - confidence) / (classes - 1)
    logits = torch.full((n, classes), math.log(other), dtype=torch.float64)
    logits[:, 0] = math.log(confidence)
    right = torch.rand(n, generator=generator) < accuracy
    labels = torch.where(right, 0, torch.randint(1, classes, (n,), generator=generator))
    return logits, labels


def test_the_update_is_the_authors_rule_per_bin():
    generator = torch.Generator().manual_seed(3)
    logits = 2 * torch.randn(500, 5, dtype=torch.float64, generator=generator)
    labels = torch.randint(5, (500,), generator=generator)
    criterion = AdaFocalLoss(num_bins=5)
    criterion.gammas = torch.tensor([-1.0, -0.21, 0.21, 1.0, 19.0])
    before = criterion.gammas.tolist()
    criterion.start_epoch(EpochStart(1, 10, logits, labels))
    confidence, prediction = logits.softmax(1).max(1)
    order = confidence.argsort()  # 500 distinct confidences: 100 per equal-mass bin
    expected = []
    for b, chunk in enumerate(order.chunk(5)):
        gap = float(confidence[chunk].mean() - (prediction[chunk] == labels[chunk]).double().mean())
        expected.append(authors_rule(before[b], gap))
    torch.testing.assert_close(criterion.gammas.double(), torch.tensor(expected,
                               dtype=torch.float64), rtol=1e-6, atol=1e-6)  # fmt: skip
    lower = [float(confidence[chunk].min()) for chunk in order.chunk(5)][1:]
    torch.testing.assert_close(criterion.edges.double(), torch.tensor(lower, dtype=torch.float64),
                               rtol=0, atol=1e-3)  # fmt: skip


def test_gamma_rises_on_an_over_confident_split_up_to_gamma_max():
    criterion = AdaFocalLoss()
    logits, labels = validation(confidence=0.95, accuracy=0.6)
    history = []
    for epoch in range(1, 40):
        start_epoch(criterion, EpochStart(epoch, 40, logits, labels))
        history.append(float(criterion.gammas.max()))
    assert all(b > a for a, b in itertools.pairwise(history) if b < 20)
    assert history[-1] == 20.0


def test_gamma_falls_on_an_under_confident_split_into_inverse_focal_down_to_gamma_min():
    criterion = AdaFocalLoss()
    logits, labels = validation(confidence=0.5, accuracy=0.9)
    history = []
    for epoch in range(1, 40):
        start_epoch(criterion, EpochStart(epoch, 40, logits, labels))
        history.append(float(criterion.gammas.min()))
    assert history[0] < 1.0
    assert all(b < a for a, b in itertools.pairwise(history) if b > -2)
    assert -0.2 in [round(g, 6) for g in history]  # switched from focal to inverse focal
    assert history[-1] == -2.0


def test_no_validation_logits_leave_gamma_alone_and_the_state_round_trips():
    criterion = AdaFocalLoss(num_bins=4)
    criterion.start_epoch(EpochStart(0, 10))
    assert criterion.gammas.tolist() == [1.0] * 4
    logits, labels = validation(confidence=0.9, accuracy=0.5)
    criterion.start_epoch(EpochStart(1, 10, logits, labels))
    restored = AdaFocalLoss(num_bins=4)
    restored.load_state_dict(criterion.state_dict())
    assert torch.equal(restored.gammas, criterion.gammas)
    assert torch.equal(restored.edges, criterion.edges)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"num_bins": 0}, "num_bins must be a positive integer, got 0"),
        ({"lam": float("nan")}, "lam must be a finite float, got nan"),
        ({"gamma_initial": 30.0}, "need gamma_min <= gamma_initial <= gamma_max"),
        ({"switch": -0.1}, "switch >= 0"),
    ],
)
def test_bad_options_are_named(options, match):
    with pytest.raises(ValueError, match=match):
        AdaFocalLoss(**options)


def test_bad_bins_and_empty_validation_are_named():
    logits, target = torch.randn(4, 3), torch.randint(3, (4,))
    with pytest.raises(ValueError, match=r"edges \(B - 1,\), got \(3,\) and \(3,\)"):
        adafocal_loss(logits, target, torch.ones(3), torch.tensor([0.2, 0.4, 0.6]))
    with pytest.raises(ValueError, match="non-empty validation split"):
        AdaFocalLoss().start_epoch(EpochStart(1, 2, torch.zeros(0, 3), torch.zeros(0)))
