"""Core metrics against torchmetrics and against independent per-bin loops written here."""

import math

import numpy as np
import pytest
import torch
import torchmetrics.functional.classification as tmf
from hypothesis import given, settings
from hypothesis import strategies as st

from focalcal.metrics import (
    adaptive_calibration_error,
    brier_score,
    calibration_report,
    classwise_calibration_error,
    error_rate,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    signed_calibration_error,
)

# Per-bin sums are exact in fixed point: each confidence is rounded to a multiple of 2^-24.
ROUNDING = 2**-25


def loop_bins(confidences, hits, edges):
    """Per-bin (count, Σconf, Σhit) with bins (lo, hi]; the first also takes values <= edges[0]
    and the last values above edges[-1]. A plain Python loop over samples and bins."""
    sums = [[0, 0.0, 0.0] for _ in range(len(edges) - 1)]
    for c, h in zip(confidences, hits, strict=True):
        b = 0
        while b < len(edges) - 2 and c > edges[b + 1]:
            b += 1
        sums[b][0] += 1
        sums[b][1] += c
        sums[b][2] += h
    return sums


def loop_ece(confidences, hits, edges):
    n = len(confidences)
    return sum(abs(h - c) / n for k, c, h in loop_bins(confidences, hits, edges) if k)


def loop_mce(confidences, hits, edges):
    return max(abs(h - c) / k for k, c, h in loop_bins(confidences, hits, edges) if k)


def width_edges(num_bins):
    """b / B as Python floats (float64): the real edges to a float32 confidence, which the
    comparisons of the loop make in float64, and to within half an ulp for a float64 one."""
    return [b / num_bins for b in range(num_bins + 1)]


def top_label(probs, labels):
    conf, pred = probs.max(1)
    return conf.tolist(), (pred == labels).double().tolist()


def random_probs(n, c, seed, scale=3.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(scale * torch.randn(n, c, generator=g, dtype=torch.float64), 1)
    return probs.to(dtype), torch.randint(c, (n,), generator=g)


@pytest.mark.parametrize("shape", [(1000, 10), (37, 3), (5, 100), (2000, 2), (30, 4, 5, 3)])
@pytest.mark.parametrize("num_bins", [1, 10, 15, 20])
def test_ece_and_mce_equal_torchmetrics(shape, num_bins):
    g = torch.Generator().manual_seed(sum(shape) + num_bins)
    logits = 3 * torch.randn(shape, generator=g)
    labels = torch.randint(shape[1], (shape[0], *shape[2:]), generator=g)
    for norm, metric in (("l1", expected_calibration_error), ("max", maximum_calibration_error)):
        expected = tmf.multiclass_calibration_error(
            logits, labels, num_classes=shape[1], n_bins=num_bins, norm=norm
        )
        assert metric(logits, labels, num_bins).item() == pytest.approx(expected.item(), abs=1e-6)


EDGE_CONFIDENCES = [
    [1.0, 1.0, 1.0, 0.5],  # exactly 1 goes to the last bin
    [i / 15 for i in range(1, 16)],  # every one exactly on an edge
    [2 / 15, 2 / 15, 2 / 15, 0.9],  # ties on an edge
    [0.5, 0.75],  # N < bins
    [1 / 3] * 7 + [1.0],  # the smallest possible top-label confidence for C = 3, tied
]


def probs_with_top(confidences, num_classes=3, dtype=torch.float64):
    """Rows whose top probability is each given confidence (rest spread evenly)."""
    top = torch.tensor(confidences, dtype=torch.float64)
    rest = ((1 - top) / (num_classes - 1)).unsqueeze(1).expand(-1, num_classes - 1)
    return torch.cat([top.unsqueeze(1), rest], 1).to(dtype)


@pytest.mark.parametrize("confidences", EDGE_CONFIDENCES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ece_and_mce_on_edge_cases_equal_loop(confidences, dtype):
    probs = probs_with_top(confidences, dtype=dtype)
    labels = torch.tensor([i % 2 for i in range(len(confidences))])  # class 0 is the prediction
    conf, hits = top_label(probs, labels)
    edges = width_edges(15)
    ece = expected_calibration_error(probs, labels, from_probs=True).item()
    mce = maximum_calibration_error(probs, labels, from_probs=True).item()
    assert ece == pytest.approx(loop_ece(conf, hits, edges), abs=ROUNDING)
    assert mce == pytest.approx(loop_mce(conf, hits, edges), abs=ROUNDING)


def test_confidence_on_an_edge_goes_to_the_lower_bin():
    # right at exactly 2/15 (the upper edge of bin 1), wrong at 0.14 (inside bin 2). With
    # (lo, hi] bins they sit in different bins: ECE = (|1 - 2/15| + |0 - 0.14|) / 2. With
    # [lo, hi) bins (torchmetrics) they would share bin 2: ECE = |0.5 - (2/15 + 0.14) / 2|.
    probs = probs_with_top([2 / 15, 0.14], num_classes=10)
    ece = expected_calibration_error(probs, torch.tensor([0, 1]), from_probs=True).item()
    assert ece == pytest.approx((13 / 15 + 0.14) / 2, abs=ROUNDING)
    assert ece != pytest.approx(abs(0.5 - (2 / 15 + 0.14) / 2), abs=1e-3)


def loop_adaptive_ece(confidences, hits, num_bins):
    """AdaECE from the published recipe: np.interp quantile edges at positions k·N/B."""
    n = len(confidences)
    positions = [k * n / num_bins for k in range(num_bins + 1)]
    edges = np.interp(positions, np.arange(n), np.sort(confidences)).tolist()
    return loop_ece(confidences, hits, edges)


@pytest.mark.parametrize("n", [1, 2, 7, 15, 16, 100, 1001])
@pytest.mark.parametrize("num_bins", [1, 5, 15])
def test_adaptive_ece_equals_reference(n, num_bins):
    probs, labels = random_probs(n, 5, seed=n + num_bins)
    conf, hits = top_label(probs, labels)
    got = adaptive_calibration_error(probs, labels, num_bins, from_probs=True).item()
    assert got == pytest.approx(loop_adaptive_ece(conf, hits, num_bins), abs=ROUNDING)


@pytest.mark.parametrize("confidences", [*EDGE_CONFIDENCES, [0.6] * 20 + [0.9] * 3])
def test_adaptive_ece_with_ties_equals_reference(confidences):
    probs = probs_with_top(confidences)
    labels = torch.tensor([(i * 7) % 3 % 2 for i in range(len(confidences))])
    conf, hits = top_label(probs, labels)
    got = adaptive_calibration_error(probs, labels, from_probs=True).item()
    assert got == pytest.approx(loop_adaptive_ece(conf, hits, 15), abs=ROUNDING)


def test_adaptive_ece_counts_every_sample():
    # all samples tied: one merged bin, AdaECE = |accuracy - confidence|
    probs = probs_with_top([0.8] * 10)
    labels = torch.tensor([0] * 6 + [1] * 4)
    got = adaptive_calibration_error(probs, labels, from_probs=True).item()
    assert got == pytest.approx(abs(0.6 - 0.8), abs=ROUNDING)


def loop_classwise_ece(probs, labels, num_bins):
    c = probs.shape[1]
    edges = width_edges(num_bins)
    total = 0.0
    for k in range(c):
        hits = (labels == k).double().tolist()
        total += loop_ece(probs[:, k].tolist(), hits, edges)
    return total / c


@pytest.mark.parametrize(("n", "c", "num_bins"), [(200, 4, 15), (50, 10, 7), (3, 6, 15)])
def test_classwise_ece_equals_reference(n, c, num_bins):
    probs, labels = random_probs(n, c, seed=n * c)
    got = classwise_calibration_error(probs, labels, num_bins, from_probs=True).item()
    assert got == pytest.approx(loop_classwise_ece(probs, labels, num_bins), abs=ROUNDING)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_fewer_samples_than_bins_equal_the_loops(n):
    probs, labels = random_probs(n, 4, seed=n)
    conf, hits = top_label(probs, labels)
    edges = width_edges(15)
    ece = expected_calibration_error(probs, labels, from_probs=True).item()
    assert ece == pytest.approx(loop_ece(conf, hits, edges), abs=ROUNDING)
    mce = maximum_calibration_error(probs, labels, from_probs=True).item()
    assert mce == pytest.approx(loop_mce(conf, hits, edges), abs=ROUNDING)
    ada = adaptive_calibration_error(probs, labels, from_probs=True).item()
    assert ada == pytest.approx(loop_adaptive_ece(conf, hits, 15), abs=ROUNDING)
    classwise = classwise_calibration_error(probs, labels, from_probs=True).item()
    assert classwise == pytest.approx(loop_classwise_ece(probs, labels, 15), abs=ROUNDING)
    if n == 1:  # one sample: every binning gives |correct − confidence|
        assert ece == mce == pytest.approx(abs(hits[0] - conf[0]), abs=ROUNDING)
        assert ada == pytest.approx(ece, abs=ROUNDING)


def test_classwise_ece_counts_a_class_that_never_occurs():
    probs, labels = random_probs(100, 5, seed=3)
    labels[labels == 4] = 0  # the last class never appears in the labels
    got = classwise_calibration_error(probs, labels, from_probs=True).item()
    assert got == pytest.approx(loop_classwise_ece(probs, labels, 15), abs=ROUNDING)
    # inferring C from the labels (4 classes) would give a different number
    assert got != pytest.approx(loop_classwise_ece(probs[:, :4], labels, 15), abs=1e-6)


def test_classwise_ece_with_exact_zeros_and_ones():
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.2, 0.6]])
    labels = torch.tensor([0, 2, 1, 2])
    got = classwise_calibration_error(probs, labels, from_probs=True).item()
    assert got == pytest.approx(loop_classwise_ece(probs, labels, 15), abs=ROUNDING)


def test_nll_brier_error_equal_written_out_formulas():
    probs, labels = random_probs(300, 7, seed=9)
    rows = list(zip(probs.tolist(), labels.tolist(), strict=True))
    nll = sum(-math.log(p[y]) for p, y in rows) / len(rows)
    brier = sum(sum((pk - (k == y)) ** 2 for k, pk in enumerate(p)) for p, y in rows) / len(rows)
    error = sum(max(range(7), key=p.__getitem__) != y for p, y in rows) / len(rows)
    assert negative_log_likelihood(probs, labels, from_probs=True).item() == pytest.approx(nll)
    assert negative_log_likelihood(probs.log(), labels).item() == pytest.approx(nll)
    assert brier_score(probs, labels, from_probs=True).item() == pytest.approx(brier)
    assert error_rate(probs, labels, from_probs=True).item() == pytest.approx(error)


def test_nll_and_brier_stay_in_their_range_where_rounding_would_leave_it():
    # a row of probabilities that sums to 1 + 5e-5 (within the float32 tolerance): the exact
    # Brier score of label 0 is 2 + 2.5e-9; a probability of exactly 1 gives NLL -0.0
    probs = torch.tensor([[0.0, 1.0, 5e-5], [1.0, 0.0, 0.0]])
    labels = torch.tensor([0, 0])
    assert brier_score(probs[:1], labels[:1], from_probs=True).item() == 2.0
    assert brier_score(probs, labels, from_probs=True).item() == 1.0
    nll = negative_log_likelihood(probs[1:], labels[1:], from_probs=True).item()
    assert nll == 0.0 and math.copysign(1.0, nll) == 1.0
    report = calibration_report(probs, labels, from_probs=True)
    assert report.brier <= 1.0 and report.nll == math.inf


def test_signed_error_is_mean_confidence_minus_accuracy():
    probs, labels = random_probs(500, 4, seed=11)
    conf, hits = top_label(probs, labels)
    expected = sum(conf) / len(conf) - sum(hits) / len(hits)
    assert signed_calibration_error(probs, labels, from_probs=True).item() == pytest.approx(
        expected, abs=ROUNDING
    )


def test_logits_and_probabilities_agree():
    g = torch.Generator().manual_seed(5)
    logits = 2 * torch.randn(400, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(6, (400,), generator=g)
    for metric in (expected_calibration_error, adaptive_calibration_error):
        from_logits = metric(logits, labels).item()
        from_probs = metric(logits.softmax(1), labels, from_probs=True).item()
        assert from_logits == pytest.approx(from_probs, abs=1e-12)


def test_results_are_0d_tensors_on_the_input_device():
    probs, labels = random_probs(10, 3, seed=1)
    for value in (
        expected_calibration_error(probs, labels, from_probs=True),
        classwise_calibration_error(probs, labels, from_probs=True),
        negative_log_likelihood(probs, labels, from_probs=True),
    ):
        assert value.dim() == 0 and value.device == probs.device


def test_perfectly_calibrated_sample_has_small_ece():
    g = torch.Generator().manual_seed(0)
    logits = 2 * torch.randn(200_000, 10, generator=g)
    labels = torch.multinomial(logits.softmax(1), 1, generator=g).squeeze(1)
    assert expected_calibration_error(logits, labels).item() < 0.01
    assert adaptive_calibration_error(logits, labels).item() < 0.01


@st.composite
def predictions(draw):
    n = draw(st.integers(1, 60))
    c = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.floats(0.0, 50.0))
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, c, generator=g), torch.randint(c, (n,), generator=g)


@settings(max_examples=80, deadline=None)
@given(predictions(), st.integers(1, 30))
def test_bounds(batch, num_bins):
    logits, labels = batch
    ece = expected_calibration_error(logits, labels, num_bins).item()
    mce = maximum_calibration_error(logits, labels, num_bins).item()
    assert 0.0 <= ece <= mce <= 1.0  # exact: integer sums, one correctly rounded division
    for metric in (adaptive_calibration_error, classwise_calibration_error):
        assert 0.0 <= metric(logits, labels, num_bins).item() <= 1.0


GOOD = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])


@pytest.mark.parametrize(
    ("scores", "labels", "kwargs", "message"),
    [
        (GOOD, torch.tensor([0, 3]), {"from_probs": True}, r"labels must lie in \[0, 3\)"),
        (GOOD, torch.tensor([0, -1]), {"from_probs": True}, r"min -1"),
        (GOOD, torch.tensor([0, 1, 1]), {"from_probs": True}, r"labels shape \(3,\)"),
        (GOOD, torch.tensor([0.0, 1.0]), {"from_probs": True}, "class indices"),
        (GOOD[:0], torch.tensor([], dtype=torch.long), {"from_probs": True}, "empty"),
        (GOOD * 0.5, torch.tensor([0, 1]), {"from_probs": True}, "sum to 1"),
        (GOOD - 0.2, torch.tensor([0, 1]), {"from_probs": True}, r"\[0, 1\].*logits"),
        (torch.tensor([[0.0, float("nan")]]), torch.tensor([0]), {}, "1 NaN"),
        (torch.tensor([[0.0, float("inf")]]), torch.tensor([0]), {}, "1 infinite"),
        (torch.tensor([0.2, 0.8]), torch.tensor(0), {}, r"shape \(N, C\)"),
        (GOOD, torch.tensor([0, 1]), {"from_probs": True, "num_bins": 0}, "num_bins"),
    ],
)
def test_bad_input_raises_value_error(scores, labels, kwargs, message):
    with pytest.raises(ValueError, match=message):
        expected_calibration_error(scores, labels, **kwargs)


SCORE_METRICS = [
    expected_calibration_error,
    maximum_calibration_error,
    adaptive_calibration_error,
    classwise_calibration_error,
    signed_calibration_error,
    negative_log_likelihood,
    brier_score,
    error_rate,
]
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@pytest.mark.parametrize("metric", SCORE_METRICS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(64, 10), (2, 2), (4, 3, 5)])
def test_probabilities_passed_as_logits_are_refused(metric, dtype, shape):
    g = torch.Generator().manual_seed(8)
    probs = torch.softmax(3 * torch.randn(shape, generator=g).to(dtype), dim=1)
    labels = torch.randint(shape[1], (shape[0], *shape[2:]), generator=g)
    with pytest.raises(ValueError, match=r"scores look like probabilities.*from_probs=True"):
        metric(probs, labels)
    assert math.isfinite(metric(probs, labels, from_probs=True))  # softmax in any dtype passes


def test_logits_that_only_partly_look_like_probabilities_are_logits():
    # rows of logits may look like probabilities; all of them together do not
    logits = torch.tensor([[0.25, 0.75], [0.5, 0.5], [2.0, -1.0]])
    labels = torch.tensor([1, 0, 0])
    expected = expected_calibration_error(logits.softmax(1), labels, from_probs=True)
    torch.testing.assert_close(expected_calibration_error(logits, labels), expected)
    # one class: every logit row "sums to 1"; C = 1 is never mistaken for probabilities
    assert expected_calibration_error(torch.ones(3, 1), torch.zeros(3, dtype=torch.long)) == 0


def test_classwise_ece_of_strided_probabilities():
    # (1, C, d) probabilities flatten to a strided (d, C) view; so does a transposed tensor
    g = torch.Generator().manual_seed(6)
    probs = torch.softmax(torch.randn(1, 4, 6, generator=g), dim=1)
    labels = torch.randint(4, (1, 6), generator=g)
    flat = probs.movedim(1, -1).reshape(-1, 4).contiguous()
    expected = classwise_calibration_error(flat, labels.reshape(-1), from_probs=True)
    for strided in (probs, probs.half(), flat.t().contiguous().t()):
        shape_labels = labels if strided.dim() == 3 else labels.reshape(-1)
        got = classwise_calibration_error(strided, shape_labels, from_probs=True)
        torch.testing.assert_close(got, expected, atol=1e-3, rtol=0)


def test_huge_finite_logits_are_not_mistaken_for_infinite():
    # the NaN/inf check sums the logits first; this sum overflows although every logit is finite
    logits = torch.tensor([[3e38, 3e38, 0.0], [0.0, 1.0, 2.0]])
    assert not torch.isfinite(logits.sum())
    got = expected_calibration_error(logits, torch.tensor([0, 2])).item()
    probs = torch.softmax(logits.double(), 1)
    assert got == pytest.approx(loop_ece(*top_label(probs, torch.tensor([0, 2])), width_edges(15)))
