"""Every public metric takes scores that require grad and gives the detached scores' values."""

import dataclasses
import warnings

import pytest
import torch

import focalcal.metrics as metrics
from focalcal.metrics import Bins, CalibrationAccumulator, CalibrationReport
from focalcal.metrics.binning import equal_width_edges

N, C = 60, 4
LABELS = torch.randint(C, (N,), generator=torch.Generator().manual_seed(1))
EDGES = equal_width_edges(15)


def accumulated(scores, labels, from_probs):
    accumulator = CalibrationAccumulator(C, from_probs=from_probs)
    accumulator.update(scores[: N // 2], labels[: N // 2])
    accumulator.update(scores[N // 2 :], labels[N // 2 :])
    return accumulator.compute(bootstrap_samples=5), accumulator.top_label_bins()


def torchmetric(scores, labels, from_probs):
    metric = metrics.CalibrationMetric(C, from_probs=from_probs, bootstrap_samples=5)
    metric.update(scores[: N // 2], labels[: N // 2])
    metric(scores[N // 2 :], labels[N // 2 :])  # forward() as well
    return metric.compute()


def top_label(scores, labels):
    return scores.amax(1), scores.argmax(1) == labels


# name in focalcal.metrics -> call(scores, labels, from_probs); scores (N, C) are logits or,
# with from_probs=True, probabilities. The functions of per-sample values get them from scores.
CALLS = {
    "adaece": lambda s, y, p: metrics.adaece(s, y, from_probs=p),
    "adaptive_calibration_error": lambda s, y, p: metrics.adaptive_calibration_error(s, y, 7, p),
    "brier_score": lambda s, y, p: metrics.brier_score(s, y, from_probs=p),
    "calibration_report": lambda s, y, p: metrics.calibration_report(
        s, y, from_probs=p, bootstrap_samples=5
    ),
    "classwise_calibration_error": lambda s, y, p: metrics.classwise_calibration_error(s, y, 7, p),
    "classwise_ece": lambda s, y, p: metrics.classwise_ece(s, y, from_probs=p),
    "debiased_calibration_error": lambda s, y, p: metrics.debiased_calibration_error(
        s, y, from_probs=p
    ),
    "ece": lambda s, y, p: metrics.ece(s, y, from_probs=p),
    "entropy": lambda s, y, p: metrics.entropy(s, from_probs=p),
    "error_rate": lambda s, y, p: metrics.error_rate(s, y, from_probs=p),
    "expected_calibration_error": lambda s, y, p: metrics.expected_calibration_error(s, y, 7, p),
    "max_confidence": lambda s, y, p: metrics.max_confidence(s, from_probs=p),
    "maximum_calibration_error": lambda s, y, p: metrics.maximum_calibration_error(s, y, 7, p),
    "mce": lambda s, y, p: metrics.mce(s, y, from_probs=p),
    "negative_log_likelihood": lambda s, y, p: metrics.negative_log_likelihood(s, y, p),
    "nll": lambda s, y, p: metrics.nll(s, y, from_probs=p),
    "ood_auroc": lambda s, y, p: (
        metrics.ood_auroc(s[:30], s[30:], from_probs=p),
        metrics.ood_auroc(s[:30], s[30:], "confidence", p),
    ),
    "ood_fpr_at_tpr": lambda s, y, p: (
        metrics.ood_fpr_at_tpr(s[:30], s[30:], from_probs=p),
        metrics.ood_fpr_at_tpr(s[:30], s[30:], "confidence", 0.9, p),
    ),
    "ood_scores": lambda s, y, p: (
        metrics.ood_scores(s[:30], s[30:], from_probs=p),
        metrics.ood_scores(s[:30], s[30:], "confidence", p),
    ),
    "reliability_bins": lambda s, y, p: metrics.reliability_bins(s, y, from_probs=p),
    "signed_calibration_error": lambda s, y, p: metrics.signed_calibration_error(
        s, y, from_probs=p
    ),
    "smooth_calibration_error": lambda s, y, p: metrics.smooth_calibration_error(
        s, y, from_probs=p
    ),
    "bootstrap_interval": lambda s, y, p: metrics.bootstrap_interval(
        metrics.ece, s, y, 5, from_probs=p
    ),
    "CalibrationAccumulator": accumulated,
    "CalibrationMetric": torchmetric,
    "auroc": lambda s, y, p: metrics.auroc(s[:30, 0], s[30:, 0]),
    "roc_curve": lambda s, y, p: metrics.roc_curve(s[:30, 0], s[30:, 0]),
    "fpr_at_tpr": lambda s, y, p: metrics.fpr_at_tpr(s[:30, 0], s[30:, 0]),
    "smooth_ece": lambda s, y, p: (
        metrics.smooth_ece(*top_label(s.softmax(1), y)),
        metrics.smooth_ece(s.softmax(1).amax(1), (s.argmax(1) == y).float(), 0.05),
    ),
    "Bins": lambda s, y, p: (
        Bins.top_label(*top_label(s.softmax(1), y), EDGES),
        Bins.classwise(s.softmax(1), y, 15),
    ),
    "debiased_from_bins": lambda s, y, p: metrics.debiased_from_bins(
        Bins.top_label(*top_label(s.softmax(1), y), EDGES)
    ),
}
NOT_METRICS = {"CalibrationReport"}  # a result, not a function of scores


def test_every_public_metric_is_covered():
    assert set(CALLS) | NOT_METRICS == set(metrics.__all__)


def flat(result):
    """The tensors and numbers in a result, in order."""
    if isinstance(result, (tuple, list)):
        return [value for part in result for value in flat(part)]
    if isinstance(result, (Bins, CalibrationReport)):
        return [getattr(result, f.name) for f in dataclasses.fields(result)]
    return [result]


def scores_of(kind):
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(N, C, generator=g)
    return logits.softmax(1) if kind == "probabilities" else logits


@pytest.mark.parametrize("kind", ["logits", "probabilities"])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_scores_that_require_grad_give_the_detached_values(name, kind):
    detached = scores_of(kind)
    leaf = scores_of("logits").requires_grad_()
    # a leaf for logits; for probabilities the softmax of one, as a model's output would be
    tracked = leaf.softmax(1) if kind == "probabilities" else leaf
    from_probs = kind == "probabilities"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when a tensor needing grad becomes a float
        got = flat(CALLS[name](tracked, LABELS, from_probs))
    expected = flat(CALLS[name](detached, LABELS, from_probs))
    assert len(got) == len(expected)
    for value, reference in zip(got, expected, strict=True):
        if isinstance(value, torch.Tensor):
            assert not value.requires_grad
            assert value.dtype == reference.dtype
            assert torch.equal(value, reference)
        else:
            assert value == reference
