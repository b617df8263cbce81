"""The one binning routine behind ECE, MCE, AdaECE, Classwise-ECE and the reliability diagram.

Bin ``b`` holds the values in ``(edges[b], edges[b + 1]]``; the first bin also holds values at or
below ``edges[0]`` and the last bin values above ``edges[-1]``, so every sample counts: with
equal-width edges a confidence of exactly 0 lands in the first bin and exactly 1 in the last.

Per-bin sums are exact: counts are integers and confidences are summed in fixed point (integer
units of 2^-32, so each sample is rounded by at most 2^-33). Integer addition is associative,
so sums from batches, a streaming accumulator or several processes equal a single pass bit for
bit. Up to 2^30 samples fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

SCALE = 2**32
MAX_SAMPLES = 2**30


def to_fixed_point(values: Tensor) -> Tensor:
    """Values in units of 2^-32 as int64 (exact sums for values in [0, 2])."""
    return (values.double() * SCALE).round_().long()


def equal_width_edges(num_bins: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``b / num_bins`` for b = 0..num_bins, each correctly rounded in ``dtype``."""
    return torch.arange(num_bins + 1, dtype=dtype, device=device) / num_bins


def equal_mass_edges(sorted_values: Tensor, num_bins: int) -> Tensor:
    """Interpolated quantiles: ``np.interp(linspace(0, N, B + 1), arange(N), sorted_values)``,
    with the positions computed exactly as ``k * N / B`` (float64)."""
    n = sorted_values.numel()
    positions = torch.arange(num_bins + 1, dtype=torch.float64, device=sorted_values.device)
    positions = (positions * n / num_bins).clamp_(max=n - 1)
    below = positions.floor().long()
    above = (below + 1).clamp_(max=n - 1)
    values = sorted_values.double()
    return values[below] + (positions - below) * (values[above] - values[below])


def bin_index(values: Tensor, edges: Tensor) -> Tensor:
    """The bin of every value (any shape): ``b`` with ``edges[b] < value <= edges[b + 1]``."""
    return torch.bucketize(values, edges[1:-1].to(values.dtype), right=False)


@dataclass(frozen=True)
class Bins:
    """Per-bin sums, shape ``(B,)`` for top-label bins or ``(C, B)`` for one row per class.

    ``correct`` counts the right predictions (top-label) or the samples of that class
    (class-wise); ``confidence`` sums the binned probabilities in units of 2^-32.
    """

    edges: Tensor
    count: Tensor
    confidence: Tensor
    correct: Tensor

    @classmethod
    def top_label(cls, confidence: Tensor, correct: Tensor, edges: Tensor) -> Bins:
        """Bins of top-label confidences ``(M,)`` with their correctness ``(M,)``."""
        index = bin_index(confidence, edges)
        sums = torch.zeros(3, edges.numel() - 1, dtype=torch.long, device=confidence.device)
        values = torch.stack([torch.ones_like(index), to_fixed_point(confidence), correct.long()])
        sums.scatter_add_(1, index.expand(3, -1), values)
        return cls(edges, sums[0], sums[1], sums[2])

    @classmethod
    def classwise(cls, probs: Tensor, labels: Tensor, edges: Tensor) -> Bins:
        """One row of bins per class: class ``k`` bins ``probs[:, k]``, "correct" is ``y == k``."""
        num_classes, num_bins = probs.shape[1], edges.numel() - 1
        offsets = torch.arange(0, num_classes * num_bins, num_bins, device=probs.device)
        index = bin_index(probs, edges) + offsets  # (M, C): class k's bins start at k * B
        size = num_classes * num_bins
        count = torch.zeros(size, dtype=torch.long, device=probs.device)
        count.index_add_(0, index.view(-1), torch.ones_like(index).view(-1))
        confidence = torch.zeros_like(count).index_add_(
            0, index.view(-1), to_fixed_point(probs).view(-1)
        )
        own = index.gather(1, labels.unsqueeze(1)).view(-1)  # each sample's bin in its class
        correct = torch.zeros_like(count).index_add_(0, own, torch.ones_like(own))
        shape = (num_classes, num_bins)
        return cls(edges, count.view(shape), confidence.view(shape), correct.view(shape))

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
        """Per bin, Σ correct − Σ confidence, exactly, in units of 2^-32."""
        return self.correct * SCALE - self.confidence

    def _total(self) -> Tensor:
        return self.count.sum(-1).double() * SCALE

    def calibration_error(self) -> Tensor:
        """Σ_b (n_b / N) |accuracy_b − confidence_b| per row (float64)."""
        return self._gaps().abs().sum(-1).double() / self._total()

    def signed_calibration_error(self) -> Tensor:
        """Σ_b (n_b / N) (confidence_b − accuracy_b): > 0 over-confident, < 0 under-confident."""
        return -self._gaps().sum(-1).double() / self._total()

    def over_under(self) -> tuple[Tensor, Tensor]:
        """The parts of the calibration error from over- and from under-confident bins."""
        gaps = self._gaps()
        total = self._total()
        return (-gaps).clamp_min(0).sum(-1).double() / total, gaps.clamp_min(0).sum(
            -1
        ).double() / total

    def max_calibration_error(self) -> Tensor:
        """max over non-empty bins of |accuracy_b − confidence_b| per row (float64)."""
        per_bin = self._gaps().abs().double() / (self.count.double() * SCALE)
        return torch.where(self.count > 0, per_bin, 0.0).amax(-1)

    def mean_confidence(self) -> Tensor:
        """Per bin; NaN where the bin is empty."""
        return self.confidence.double() / (self.count.double() * SCALE)

    def accuracy(self) -> Tensor:
        """Per bin; NaN where the bin is empty."""
        return self.correct.double() / self.count.double()
