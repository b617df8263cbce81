"""The metrics' fast paths against plain references written here: the top label read from the
probabilities (exact argmax of the logits, ties included), AdaECE's bins from one sort of
keys, smooth ECE's order-free grid, and NLL and Brier without float64 copies."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from focalcal.metrics import (
    adaptive_calibration_error,
    brier_score,
    calibration_report,
    expected_calibration_error,
    extensions,
    negative_log_likelihood,
    smooth_ece,
)
from focalcal.metrics._inputs import (
    FEW_CLASSES,
    KEPT_ELEMENTS,
    SMALL_ELEMENTS,
    Scratch,
    checked,
    softmax,
    top_label,
    top_label_of,
)
from focalcal.metrics.binning import (
    SCALE,
    Bins,
    _quantile_positions,
    carry_for,
    counts_and_sums,
    equal_mass_edges,
    histogram,
    to_fixed_point,
)


def reference_top_label(scores, labels, from_probs):
    probs = scores if from_probs else softmax(scores)
    return probs.amax(dim=1), scores.argmax(dim=1) == labels


@pytest.mark.parametrize("num_classes", [1, 2, 10, 31, 32, 100])
def test_the_metrics_softmax_is_a_softmax(num_classes):
    g = torch.Generator().manual_seed(num_classes)
    logits = 10 * torch.randn(300, num_classes, generator=g)
    expected = torch.softmax(logits.double(), dim=1)  # of the same float32 logits, in float64
    got = softmax(logits)
    # float32 rounds z − max z by up to |z − max z|·2^-24, exp by an ulp, the sum by up to C ulps
    gap = (logits.amax(dim=1, keepdim=True) - logits).double()
    bound = (gap + num_classes + 4) * 2**-24 * expected
    assert ((got.double() - expected).abs() <= bound).all()
    buffer = torch.empty(300, num_classes)
    assert softmax(logits, out=buffer) is buffer and torch.equal(buffer, got)


def tied_logits(dtype, num_classes):
    """Rows whose largest logit is shared (the label first, second or elsewhere), rows whose
    top two differ by one ulp, and ordinary rows."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, num_classes, generator=g, dtype=torch.float64).to(dtype)
    x[:16, 2] = x[:16, 5] = x[:16].amax(dim=1) + 1  # a tie between classes 2 and 5
    top = x[16:32].amax(dim=1) + 1
    x[16:32, 3] = top
    x[16:32, 4] = torch.nextafter(top, top + 1)  # one ulp above
    labels = torch.randint(num_classes, (64,), generator=g)
    labels[:8], labels[8:16] = 2, 5  # the first of the tie (right) and the second (wrong)
    labels[16:24], labels[24:32] = 3, 4
    return x, labels


@pytest.mark.parametrize("num_classes", [7, 40])  # the argmax, and the probabilities' order
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_top_label_is_the_exact_argmax_of_the_logits(dtype, num_classes):
    assert 7 < FEW_CLASSES <= 40
    x, labels = tied_logits(dtype, num_classes)
    confidence, correct = top_label(x, labels, from_probs=False)
    expected_confidence, expected_correct = reference_top_label(x, labels, False)
    assert torch.equal(confidence, expected_confidence)
    assert torch.equal(correct, expected_correct)
    assert correct[:8].all() and not correct[8:16].any()  # ties: the first index predicts
    assert not correct[16:24].any() and correct[24:32].all()


@pytest.mark.parametrize("num_classes", [3, 40])
def test_top_label_of_probabilities_with_ties_leaves_them_unchanged(num_classes):
    probs = torch.tensor([[0.4, 0.4, 0.2], [0.2, 0.4, 0.4], [0.5, 0.25, 0.25], [1.0, 0.0, 0.0]])
    probs = torch.cat([probs, torch.zeros(4, num_classes - 3)], dim=1)
    labels = torch.tensor([1, 1, 0, 1])
    before = probs.clone()
    confidence, correct = top_label(probs, labels, from_probs=True)
    assert correct.tolist() == [False, True, True, False]
    assert torch.equal(confidence, torch.tensor([0.4, 0.4, 0.5, 1.0]))
    flat, flat_labels = checked(probs, labels, from_probs=True)
    assert torch.equal(top_label_of(flat, flat, flat_labels)[1], correct)
    assert torch.equal(probs, before)  # read, never written, even for a moment's use


def test_top_label_one_class_and_chunks(monkeypatch):
    import focalcal.metrics._inputs as inputs

    x = torch.randn(11, 1)
    assert top_label(x, torch.zeros(11, dtype=torch.long), False)[1].all()
    g = torch.Generator().manual_seed(1)
    x, labels = torch.randn(301, 33, generator=g), torch.randint(33, (301,), generator=g)
    whole = top_label(x, labels, False)
    monkeypatch.setattr(inputs, "CHUNK_ELEMENTS", 100)  # chunks of three rows
    chunked = top_label(x, labels, False)
    assert all(torch.equal(a, b) for a, b in zip(whole, chunked, strict=True))


def bucketized_equal_mass(confidence, correct, num_bins):
    """AdaECE's bins the way they were made before the sort of keys: sort, interpolate the
    edges, then search every value among them."""
    edges = equal_mass_edges(confidence.sort().values, num_bins)
    return Bins.top_label(confidence.double(), correct, edges)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_bins", [1, 3, 15, 40])
@pytest.mark.parametrize("n", [500, 20_000])  # one prefix sum with a carry, and two (> 2^14)
def test_equal_mass_bins_equal_a_search_among_the_edges(dtype, num_bins, n):
    assert (carry_for(n, SCALE) is None) == (n > 2**14)
    g = torch.Generator().manual_seed(num_bins)
    confidence = torch.rand(n, generator=g, dtype=torch.float64).to(dtype)
    confidence[:100] = 1.0  # ties, which merge bins
    confidence[100:150] = (confidence[100:150] * 8).round() / 8
    confidence[150:160] = 0.0
    confidence[160:165] = -0.0
    correct = torch.rand(n, generator=g) < confidence.float()
    got = Bins.equal_mass(confidence, correct, num_bins)
    expected = bucketized_equal_mass(confidence + 0.0, correct, num_bins)
    for field in ("edges", "count", "confidence", "correct"):
        assert torch.equal(getattr(got, field), getattr(expected, field)), field


def test_adaptive_ece_of_one_sample_and_of_fewer_samples_than_bins():
    probs = torch.tensor([[0.7, 0.3]])
    assert adaptive_calibration_error(probs, torch.tensor([0]), from_probs=True).item() == (
        pytest.approx(0.3)
    )
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    labels = torch.tensor([0, 1, 1])
    # three samples, 15 bins: each sample alone, |1 - 0.9| + |0 - 0.6| + |1 - 0.8| over 3
    assert adaptive_calibration_error(probs, labels, from_probs=True).item() == pytest.approx(0.3)


def test_smooth_ece_does_not_depend_on_the_order_of_the_samples():
    g = torch.Generator().manual_seed(2)
    confidence = torch.rand(5000, generator=g, dtype=torch.float64)
    correct = torch.rand(5000, generator=g, dtype=torch.float64) < confidence**2
    order = torch.randperm(5000, generator=g)
    value, sigma = smooth_ece(confidence, correct)
    shuffled, shuffled_sigma = smooth_ece(confidence[order], correct[order])
    assert torch.equal(value, shuffled) and sigma == shuffled_sigma
    assert abs(float(value) - sigma) <= 1e-6  # the fixed point, as before


def test_report_per_sample_metrics_do_not_depend_on_the_order():
    g = torch.Generator().manual_seed(3)
    logits, labels = 2 * torch.randn(3000, 10, generator=g), torch.randint(10, (3000,), generator=g)
    order = torch.randperm(3000, generator=g)
    a, b = calibration_report(logits, labels), calibration_report(logits[order], labels[order])
    assert (a.adaece, a.smooth_ece, a.debiased_ece) == (b.adaece, b.smooth_ece, b.debiased_ece)


def test_nll_of_many_classes_is_as_precise_as_float64():
    g = torch.Generator().manual_seed(4)
    logits = 8 * torch.randn(2000, 1000, generator=g)
    labels = torch.randint(1000, (2000,), generator=g)
    exact = torch.nn.functional.cross_entropy(logits.double(), labels).item()
    got = negative_log_likelihood(logits, labels).item()
    # the float32 exponentials round by 2^-24 each, their float64 sum adds nothing more
    assert got == pytest.approx(exact, rel=2**-22)


def test_brier_against_a_written_out_float64_sum():
    g = torch.Generator().manual_seed(5)
    probs = torch.softmax(3 * torch.randn(400, 6, generator=g), dim=1)
    labels = torch.randint(6, (400,), generator=g)
    p, y = probs.double().numpy(), labels.numpy()
    one_hot = np.eye(6)[y]
    exact = float(((p - one_hot) ** 2).sum(axis=1).mean())
    assert brier_score(probs, labels, from_probs=True).item() == pytest.approx(exact, rel=1e-6)


def test_ece_of_tied_logits_uses_the_first_index():
    logits = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    # both rows predict class 0 with confidence 0.5: right once, wrong once
    assert expected_calibration_error(logits, torch.tensor([0, 1])).item() == 0.0
    assert expected_calibration_error(logits, torch.tensor([1, 1])).item() == 0.5
    assert math.isclose(expected_calibration_error(logits, torch.tensor([0, 0])).item(), 0.5)


def test_smooth_ece_settles_its_coarse_bandwidth_on_the_full_grid():
    # g(σ) = smECE_σ − σ falls at least as fast as −σ, so any two σ with |g| <= 1e-6 lie
    # within 2e-6: the coarse-then-fine search agrees with the full grid's own search
    g = torch.Generator().manual_seed(6)
    for n, power in [(200, 1.0), (3000, 2.0), (20000, 0.5), (5000, 4.0)]:
        confidence = torch.rand(n, generator=g, dtype=torch.float64)
        correct = torch.rand(n, generator=g, dtype=torch.float64) < confidence**power
        at = extensions._smoother(confidence, correct)
        full = extensions._fixed_point(lambda s, at=at: float(at(s)) - s)
        value, sigma = smooth_ece(confidence, correct)
        assert abs(float(value) - sigma) <= extensions.TOLERANCE
        assert abs(sigma - full) <= 2 * extensions.TOLERANCE
    # every residual +1 or −1 with one sign: the fixed point is the bracket's end
    confidence = torch.full((50,), 0.25, dtype=torch.float64)
    value, sigma = smooth_ece(confidence, torch.ones(50, dtype=torch.bool))
    assert float(value) == pytest.approx(0.75) and sigma == pytest.approx(0.75, abs=1e-6)


def test_scratch_memory_is_per_thread_reused_and_bounded():
    g = torch.Generator().manual_seed(7)
    logits, labels = 3 * torch.randn(4000, 50, generator=g), torch.randint(50, (4000,), generator=g)
    expected = calibration_report(logits, labels)
    assert calibration_report(logits, labels) == expected  # nothing left over changes a call
    results = {}

    def report(name):
        results[name] = [calibration_report(logits, labels) for _ in range(3)]

    threads = [threading.Thread(target=report, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r == expected for rs in results.values() for r in rs)
    scratch = Scratch()
    kept, large = torch.empty(256, SMALL_ELEMENTS // 128), torch.empty(KEPT_ELEMENTS + 1)
    a = scratch.get("a", kept)
    assert scratch.get("a", kept).data_ptr() == a.data_ptr()  # kept, and reused
    assert scratch.get("a", kept[:200]).data_ptr() == a.data_ptr()  # a smaller view of it
    assert scratch.get("a", kept, torch.float64).dtype == torch.float64  # another dtype: new
    big = scratch.get("b", large)
    assert scratch.get("b", large).data_ptr() != big.data_ptr()  # too large to keep
    small = torch.empty(10, 10)
    assert scratch.get("c", small).data_ptr() != scratch.get("c", small).data_ptr()  # fresh
    assert Scratch.local() is Scratch.local()
    other = []
    thread = threading.Thread(target=lambda: other.append(Scratch.local()))
    thread.start()
    thread.join()
    assert other[0] is not Scratch.local()


@pytest.mark.parametrize("n", [1, 2, 7, 15, 1000, 10007])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_equal_mass_edges_are_numpys_interpolated_quantiles_bit_for_bit(n, dtype):
    g = torch.Generator().manual_seed(n)
    values = torch.rand(n, generator=g, dtype=torch.float64).to(dtype).sort().values
    for num_bins in (1, 3, 15, 40):
        positions = np.minimum(np.arange(num_bins + 1) * n / num_bins, n - 1)
        expected = np.interp(positions, np.arange(n), values.double().numpy())
        got = equal_mass_edges(values, num_bins)
        assert got.dtype == torch.float64
        assert np.array_equal(got.numpy(), expected), (num_bins, got.numpy() - expected)


def test_equal_mass_positions_made_in_inference_mode_serve_autograd_too():
    _quantile_positions.cache_clear()
    values = torch.rand(37, generator=torch.Generator().manual_seed(0)).sort().values
    with torch.inference_mode():  # the first call for (37, 7) makes the positions, once
        inside = equal_mass_edges(values, 7)
    outside = equal_mass_edges(values.clone().requires_grad_(), 7)
    outside.sum().backward()  # indexing saves them for backward: no inference tensors
    assert torch.equal(inside, outside.detach())


@pytest.mark.parametrize("rows", [1, 3, 1000, 10485, 2**14, 2**14 + 1, 2**17])
def test_counts_and_sums_in_one_pass_equal_two_histograms(rows):
    g = torch.Generator().manual_seed(rows)
    size = 30
    index = torch.randint(size, (rows * 2,), generator=g, dtype=torch.int32)
    index[: rows // 2] = 7  # one bin holds a quarter of the values at least
    probs = torch.rand(rows * 2, generator=g)
    probs[: rows // 3] = 1.0  # the largest weight, 2^24
    weights = to_fixed_point(probs)
    count, sums = counts_and_sums(index, size, weights.clone(), 2 * rows)
    assert torch.equal(count, histogram(index, size))
    assert torch.equal(sums, histogram(index, size, weights))
    right = (probs > 0.5).double()  # 0/1 weights: one pass up to 2^26 values a bin
    count, sums = counts_and_sums(index, size, right.clone(), 2 * rows, 1)
    assert torch.equal(count, histogram(index, size))
    assert torch.equal(sums, histogram(index, size, right))
