"""The binning routine: exact bin edges and exact, order-independent sums."""

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
    """Every edge, its neighbours one ulp away, 0, 1 and random values in [0, 1]."""
    edges = equal_width_edges(num_bins, dtype, torch.device("cpu"))
    up = torch.nextafter(edges, torch.tensor(2.0, dtype=dtype))
    down = torch.nextafter(edges, torch.tensor(-1.0, dtype=dtype))
    g = torch.Generator().manual_seed(num_bins)
    values = torch.cat([edges, up, down, torch.rand(5000, generator=g, dtype=dtype)])
    return values.clamp(0, 1), edges


@pytest.mark.parametrize("num_bins", [1, 2, 3, 7, 10, 15, 20, 64, 100])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_arithmetic_index_equals_the_binary_search(num_bins, dtype):
    values, edges = edge_cases(num_bins, dtype)
    index = bin_index(values, edges)
    assert torch.equal(equal_width_index(values, num_bins).long(), index)
    # and the binary search itself puts each edge into the bin below it
    inner = edges[1:-1]
    assert torch.equal(bin_index(inner, edges), torch.arange(num_bins - 1))


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
    edges = equal_width_edges(15, probs.dtype, probs.device)
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
        equal_width_edges(10, torch.float32, torch.device("cpu")),
    )
    other = Bins.top_label(
        torch.tensor([0.5]),
        torch.tensor([True]),
        equal_width_edges(15, torch.float32, torch.device("cpu")),
    )
    with pytest.raises(ValueError, match="different edges"):
        one + other
