"""The binning routine: exact bin edges and exact, order-independent sums."""

import math
from fractions import Fraction

import pytest
import torch

from focalcal.metrics.binning import (
    SCALE,
    Bins,
    bin_index,
    equal_width_edges,
    equal_width_index,
    to_fixed_point,
)


def edge_cases(num_bins, dtype):
    """Every edge's nearest value of the dtype, its neighbours one ulp away, 0, 1 and random
    values in [0, 1]."""
    nearest = equal_width_edges(num_bins).to(dtype)
    up = torch.nextafter(nearest, torch.tensor(2.0, dtype=dtype))
    down = torch.nextafter(nearest, torch.tensor(-1.0, dtype=dtype))
    g = torch.Generator().manual_seed(num_bins)
    values = torch.cat([nearest, up, down, torch.rand(5000, generator=g, dtype=dtype)])
    return values.clamp(0, 1)


def exact_bin(value, num_bins):
    """The bin of ``value`` by the real edges b / B, in rational arithmetic."""
    return min(max(math.ceil(Fraction(value) * num_bins) - 1, 0), num_bins - 1)


@pytest.mark.parametrize("num_bins", [1, 2, 3, 7, 10, 15, 20, 64, 100])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_values_are_binned_by_the_real_edges(num_bins, dtype):
    values = edge_cases(num_bins, dtype)
    index = bin_index(values, equal_width_edges(num_bins))
    assert torch.equal(equal_width_index(values, num_bins).long(), index)
    if dtype != torch.float64:  # float64 values: by float64's b / B, half an ulp from the real
        assert index.tolist() == [exact_bin(v, num_bins) for v in values.tolist()]


def test_a_float32_value_between_float32s_edge_and_the_real_one_takes_the_real_bin():
    real = Fraction(7, 15)
    rounded = torch.tensor(7 / 15, dtype=torch.float32)  # float32's 7/15 lies above the real one
    assert Fraction(rounded.item()) > real
    below = torch.nextafter(rounded, torch.tensor(0.0))  # so this one lies below 7/15 ...
    assert Fraction(below.item()) < real and Fraction(below.item()) > Fraction(6, 15)
    edges = equal_width_edges(15)
    # ... in bin 6, (6/15, 7/15], by both routines; rounding the edges put it in bin 6 too, but
    # float32's 7/15 itself, above the real edge, goes to bin 7 (it went to bin 6)
    assert bin_index(below, edges).item() == 6 and equal_width_index(below, 15).item() == 6
    assert bin_index(rounded, edges).item() == 7 and equal_width_index(rounded, 15).item() == 7


def test_fixed_point_rounds_by_at_most_half_a_unit():
    values = torch.rand(100_000, dtype=torch.float64)
    error = (to_fixed_point(values) / SCALE - values).abs().max().item()
    assert error <= 2**-25
    assert torch.equal(to_fixed_point(values), to_fixed_point(values).round())  # whole numbers


def test_sums_merge_exactly_in_any_order():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(3000, 6, generator=g), 1)
    labels = torch.randint(6, (3000,), generator=g)
    confidence, prediction = probs.max(1)
    correct = prediction == labels
    edges = equal_width_edges(15)
    whole_top = Bins.top_label(confidence, correct, edges)
    whole_classwise = Bins.classwise(probs, labels, 15)
    for parts in (2, 7, 300):
        order = torch.randperm(3000, generator=g).chunk(parts)
        top = [Bins.top_label(confidence[i], correct[i], edges) for i in order]
        classwise = [Bins.classwise(probs[i], labels[i], 15) for i in order]
        for merged, whole in ((sum(top[1:], top[0]), whole_top),
                              (sum(classwise[1:], classwise[0]), whole_classwise)):  # fmt: skip
            for field in ("count", "confidence", "correct"):
                assert torch.equal(getattr(merged, field), getattr(whole, field))


def test_adding_bins_with_other_edges_is_refused():
    one = Bins.top_label(
        torch.tensor([0.5]),
        torch.tensor([True]),
        equal_width_edges(10),
    )
    other = Bins.top_label(
        torch.tensor([0.5]),
        torch.tensor([True]),
        equal_width_edges(15),
    )
    with pytest.raises(ValueError, match="different edges"):
        one + other
