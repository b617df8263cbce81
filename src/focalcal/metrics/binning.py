"""The one binning routine behind ECE, MCE, AdaECE, Classwise-ECE and the reliability diagram.

Bin ``b`` holds the values in ``(edges[b], edges[b + 1]]``; the first bin also holds values at or
below ``edges[0]`` and the last bin values above ``edges[-1]``, so every sample counts: with
equal-width edges a confidence of exactly 0 lands in the first bin and exactly 1 in the last.

Values are binned by the real edges, whatever their dtype: the equal-width edges are ``b / B``
in float64 and values of a narrower dtype are compared in float64. No float32 (or half) value
equals float64's ``b / B`` unless ``b / B`` itself is exact, so each such value lands in the bin
the exact ``b / B`` would give it; rounding the edges to float32 moved the values between
float32's ``b / B`` and the real one into the neighbouring bin. Float64 values are binned by
float64's ``b / B``, the real edge to within half an ulp.

Per-bin sums are exact: counts are integers and confidences are summed in fixed point (integer
units of 2^-24, so each sample is rounded by at most 2^-25), held in float64, which represents
every such sum exactly below 2^53: up to 2^28 samples. Sums of integers do not depend on their
order, so batches, a streaming accumulator or several processes equal a single pass bit for bit.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from focalcal.metrics._inputs import Scratch

SCALE = 2**24
MAX_SAMPLES = 2**28


def check_sample_count(num_samples: int) -> None:
    if num_samples > MAX_SAMPLES:
        raise ValueError(f"at most {MAX_SAMPLES} samples fit the exact sums, got {num_samples}")


def to_fixed_point(values: Tensor) -> Tensor:
    """Values in [-2, 2] as whole numbers of 2^-24, in float64. Scaling by a power of two and
    rounding are exact in the values' own dtype (the cheap part: float32 for float32 input)."""
    return (values * SCALE).round_().double()


def histogram(index: Tensor, size: int, weights: Tensor | None = None) -> Tensor:
    """Per-bin count (or sum of ``weights``) of a flat ``index``, as float64.

    ``bincount`` is the fastest on the CPU but reads the largest index back to the host on
    CUDA, so other devices use ``index_add_``, which does not synchronise.
    """
    if index.device.type == "cpu":
        return torch.bincount(index, weights, minlength=size).double()
    values = torch.ones_like(index, dtype=torch.float64) if weights is None else weights.double()
    out = torch.zeros(size, dtype=torch.float64, device=index.device)
    return out.index_add_(0, index.long(), values)


def counts_and_sums(
    index: Tensor, size: int, weights: Tensor, rows: int, most: float = SCALE
) -> tuple[Tensor, Tensor]:
    """``histogram(index, size)`` and ``histogram(index, size, weights)`` for whole-number
    ``weights`` in [0, ``most``] (by default fixed-point probabilities), each bin holding at
    most ``rows`` values: in one pass where :func:`carry_for` allows."""
    carry = carry_for(rows, most)
    if carry is None:
        return histogram(index, size), histogram(index, size, weights)
    return split_carried(histogram(index, size, weights.add_(carry)), carry)


def carry_for(rows: int, most: float) -> float | None:
    """M = 2^⌈log2(rows·most + 1)⌉, more than any sum of ``rows`` whole numbers in [0,
    ``most``], so that a count and such a sum travel as one float64, count·M + sum, a whole
    number of at most rows·(M + most); ``None`` where that exceeds 2^53, float64's exact
    range. (For probabilities in units of 2^-24: up to about 2^14 rows; for 0/1: 2^26.)"""
    carry = 2.0 ** math.ceil(math.log2(rows * most + 1))
    return None if rows * (carry + most) > 2**53 else carry


def split_carried(total: Tensor, carry: float) -> tuple[Tensor, Tensor]:
    """``(count, sum)`` of float64 totals count·M + sum (:func:`carry_for`), exactly."""
    count = torch.div(total, carry, rounding_mode="floor")
    return count, total.sub_(count, alpha=carry)


def equal_width_edges(num_bins: int, device: torch.device | str = "cpu") -> Tensor:
    """``b / num_bins`` for b = 0..num_bins, each correctly rounded in float64 (for the values
    of every dtype: see the module)."""
    return torch.arange(num_bins + 1, dtype=torch.float64, device=device) / num_bins


def equal_mass_edges(sorted_values: Tensor, num_bins: int) -> Tensor:
    """Interpolated quantiles: ``np.interp(linspace(0, N, B + 1), arange(N), sorted_values)``,
    with the positions computed exactly as ``k * N / B`` (float64)."""
    index, fraction = _quantile_positions(sorted_values.numel(), num_bins, sorted_values.device)
    low, high = sorted_values[index].double().view(2, -1).unbind()
    return low + fraction * (high - low)


@functools.lru_cache(maxsize=64)
def _quantile_positions(n: int, num_bins: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """For :func:`equal_mass_edges`: the indices below and above each position ``k * N / B``
    (clamped to ``N - 1``), and the position's fraction past the one below. Made once per
    (N, B, device): building them costs more than the interpolation."""
    positions = [min(k * n / num_bins, n - 1) for k in range(num_bins + 1)]  # float64
    below = [math.floor(p) for p in positions]
    fraction = [p - b for p, b in zip(positions, below, strict=True)]
    with torch.inference_mode(False):  # usable outside inference mode too
        index = torch.tensor(below + [min(b + 1, n - 1) for b in below], device=device)
        return index, torch.tensor(fraction, dtype=torch.float64, device=device)


def bin_index(values: Tensor, edges: Tensor) -> Tensor:
    """The bin of every value (any shape): ``b`` with ``edges[b] < value <= edges[b + 1]``,
    compared in float64 (float64 edges; see the module)."""
    return torch.bucketize(values.double(), edges[1:-1].double(), right=False)


CHUNK = 2**18  # values converted to float64 at a time by equal_width_index: 2 MB


def equal_width_index(values: Tensor, num_bins: int) -> Tensor:
    """``bin_index(values, equal_width_edges(num_bins))`` for values in [0, 1], as int32,
    without a binary search (on the CPU comparisons and type conversions cost ten times more
    than in-place arithmetic). A value of a narrower dtype times ``B`` is exact in float64
    (for ``B`` < 2^29), so ``ceil(v·B) − 1`` there is its bin by the real edges; it is
    computed :data:`CHUNK` values at a time, so the float64 copy stays small. For float64
    values ``ceil(v·B) − 1`` is at most one bin off (rounding of ``v·B``), and one step
    against the edges ``k / B``, computed as :func:`equal_width_edges` computes them, makes it
    exact (both tested against ``bin_index``)."""
    if values.dtype != torch.float64 and values.numel() <= CHUNK:
        return values.double().mul_(num_bins).ceil_().clamp_(1, num_bins).sub_(1).int()
    if values.dtype != torch.float64:
        index = torch.empty(values.shape, dtype=torch.int32, device=values.device)
        flat, out = values.reshape(-1), index.view(-1)
        for start in range(0, flat.numel(), CHUNK):
            scaled = flat[start : start + CHUNK].double().mul_(num_bins)
            out[start : start + CHUNK] = scaled.ceil_().clamp_(1, num_bins).sub_(1)
        return index
    k = torch.mul(values, num_bins).ceil_().clamp_(1, num_bins).sub_(1)
    edge = torch.add(k, 1).div_(num_bins)  # the upper edge of bin k
    k.add_(edge.sub_(values).neg_().sign_().clamp_(min=0))  # + 1 where value > upper edge
    edge = torch.div(k, num_bins, out=edge)  # the lower edge of bin k
    k.sub_(edge.sub_(values).sign_().add_(1).clamp_(max=1))  # − 1 where value <= lower edge
    return k.clamp_(min=0).int()


def _at_or_below(edges: Tensor, dtype: torch.dtype) -> Tensor:
    """For float64 ``edges``, the largest value of ``dtype`` at or below each: a value of that
    dtype is <= the edge exactly when it is <= this one."""
    if dtype == edges.dtype:
        return edges
    near = edges.to(dtype)
    below = torch.nextafter(near, torch.full_like(near, -math.inf))
    return torch.where(near.double() > edges, below, near)


def _run_sums(values: Tensor, bounds: Tensor) -> Tensor:
    """The float64 sums of ``values`` over the runs between consecutive ``bounds``, from exact
    prefix sums (the values are whole numbers)."""
    prefix = torch.zeros(len(values) + 1, dtype=torch.float64, device=values.device)
    torch.cumsum(values, 0, dtype=torch.float64, out=prefix[1:])
    return prefix[bounds].diff()


def _sorted(values: Tensor) -> Tensor:
    if values.device.type == "cpu":
        return torch.from_numpy(np.sort(values.numpy()))
    return torch.sort(values).values


@dataclass(frozen=True)
class Bins:
    """Per-bin sums, shape ``(B,)`` for top-label bins or ``(C, B)`` for one row per class,
    all float64 holding whole numbers.

    ``correct`` counts the right predictions (top-label) or the samples of that class
    (class-wise); ``confidence`` sums the binned probabilities in units of 2^-24.
    """

    edges: Tensor
    count: Tensor
    confidence: Tensor
    correct: Tensor

    @classmethod
    def top_label(cls, confidence: Tensor, correct: Tensor, edges: Tensor | int) -> Bins:
        """Bins of top-label confidences ``(M,)`` with their correctness ``(M,)``; ``edges``
        an integer B means the equal-width edges b / B (binned by arithmetic, without a
        search: :func:`equal_width_index`)."""
        confidence, correct = confidence.detach(), correct.detach()
        if isinstance(edges, int):
            index = equal_width_index(confidence, edges)
            edges = equal_width_edges(edges, confidence.device)
        else:
            index = bin_index(confidence, edges)
        size = edges.numel() - 1
        count, right = counts_and_sums(index, size, correct.double(), len(index), 1)
        return cls(edges, count, histogram(index, size, to_fixed_point(confidence)), right)

    @classmethod
    def classwise(cls, probs: Tensor, labels: Tensor, num_bins: int) -> Bins:
        """One row of equal-width bins per class: class ``k`` bins ``probs[:, k]`` and its
        "correct" is ``y == k``. ``probs`` ``(M, C)``, ``labels`` ``(M,)``. Float32 and half
        probabilities are worked on in :class:`Scratch` memory."""
        probs, num_classes = probs.detach(), probs.shape[1]
        size, shape = num_classes * num_bins, (num_classes, num_bins)
        offsets = torch.arange(0, size, num_bins, dtype=torch.int32, device=probs.device)
        if probs.dtype == torch.float64:
            index = equal_width_index(probs, num_bins)
            weights = to_fixed_point(probs)
        else:  # as equal_width_index and to_fixed_point compute them, in place
            scratch = Scratch.local()
            wide, index = (
                scratch.get("wide", probs, torch.float64),
                scratch.get("index", probs, torch.int32),
            )
            index.copy_(wide.copy_(probs).mul_(num_bins).ceil_().clamp_(1, num_bins).sub_(1))
            weights = wide.copy_(probs).mul_(SCALE).round_()
        index.add_(offsets)  # class k's bins from k·B
        own = index.gather(1, labels.unsqueeze(1)).view(-1)  # each sample's bin in its class
        index = index.reshape(-1)  # probs, and so index, may be a strided view (N = 1 spatial)
        count, confidence = counts_and_sums(index, size, weights.reshape(-1), len(probs))
        return cls(
            equal_width_edges(num_bins, probs.device),
            count.view(shape),
            confidence.view(shape),
            histogram(own, size).view(shape),
        )

    @classmethod
    def equal_mass(cls, confidence: Tensor, correct: Tensor, num_bins: int) -> Bins:
        """Bins of top-label confidences ``(M,)`` in [0, 1] with their correctness ``(M,)``,
        between the :func:`equal_mass_edges` of the confidences (AdaECE's bins).

        One sort (numpy's on the CPU) of integer keys, each confidence's bits (which order
        non-negative floats as their values) shifted left by one and or-ed with its
        correctness, and no per-sample search: every bin is a run of the sorted confidences,
        found by searching its edges in them; the sums are differences of exact prefix sums,
        one carrying both where :func:`carry_for` allows."""
        values = confidence.detach()
        if values.dtype not in (torch.float32, torch.float64):
            values = values.double()
        bits = torch.int32 if values.dtype == torch.float32 else torch.int64
        # the shift drops the sign bit, so -0.0 sorts (and comes back) as +0.0; a confidence
        # <= 1 doubled stays below 2^31 (2^63)
        keys = values.view(bits).bitwise_left_shift(1).bitwise_or_(correct.detach().bool())
        keys = _sorted(keys)
        values = (keys >> 1).view(values.dtype)
        edges, n = equal_mass_edges(values, num_bins), len(values)
        # bin b holds (edges[b], edges[b + 1]]: it ends after the values <= its upper edge
        ends = torch.searchsorted(values, _at_or_below(edges[1:-1], values.dtype), right=True)
        bounds = torch.cat([ends.new_zeros(1), ends, ends.new_full((1,), n)])
        right = keys.bitwise_and_(1)
        carry = carry_for(n, SCALE)
        if carry is None:  # two prefix sums, one (N,) temporary at a time
            right = _run_sums(right, bounds)
            del keys
            confidence = _run_sums(to_fixed_point(values), bounds)
        else:  # one: right·M + fixed-point confidence
            carried = to_fixed_point(values).add_(right, alpha=carry)
            right, confidence = split_carried(_run_sums(carried, bounds), carry)
        return cls(edges, bounds.diff().double(), confidence, right)

    def __add__(self, other: Bins) -> Bins:
        if not torch.equal(self.edges, other.edges):
            raise ValueError("cannot add bins with different edges")
        return Bins(
            self.edges,
            self.count + other.count,
            self.confidence + other.confidence,
            self.correct + other.correct,
        )

    def _gaps(self) -> Tensor:
        """Per bin, Σ correct − Σ confidence, exactly, in units of 2^-24."""
        return self.correct * SCALE - self.confidence

    def _total(self) -> Tensor:
        return self.count.sum(-1) * SCALE

    def calibration_error(self) -> Tensor:
        """Σ_b (n_b / N) |accuracy_b − confidence_b| per row (float64)."""
        return self._gaps().abs().sum(-1) / self._total()

    def signed_calibration_error(self) -> Tensor:
        """Σ_b (n_b / N) (confidence_b − accuracy_b): > 0 over-confident, < 0 under-confident."""
        return -self._gaps().sum(-1) / self._total()

    def over_under(self) -> tuple[Tensor, Tensor]:
        """The parts of the calibration error from over- and from under-confident bins."""
        gaps, total = self._gaps(), self._total()
        return (-gaps).clamp_min(0).sum(-1) / total, gaps.clamp_min(0).sum(-1) / total

    def max_calibration_error(self) -> Tensor:
        """max over non-empty bins of |accuracy_b − confidence_b| per row (float64)."""
        # an empty bin's gap is 0: dividing it by 1 instead of 0 leaves it out of the max
        return (self._gaps().abs_() / self.count.clamp(min=1)).amax(-1) / SCALE

    def mean_confidence(self) -> Tensor:
        """Per bin; NaN where the bin is empty."""
        return self.confidence / (self.count * SCALE)

    def accuracy(self) -> Tensor:
        """Per bin; NaN where the bin is empty."""
        return self.correct / self.count
