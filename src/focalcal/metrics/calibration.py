"""Calibration metrics on ``(scores, labels)``: each returns a 0-d tensor on the scores' device.

``scores`` are logits ``(N, C)`` or ``(N, C, d1, ...)`` (softmax applied here) or, with
``from_probs=True``, probabilities; ``labels`` are class indices. Fractions, not percentages.
"""

from __future__ import annotations

from functools import reduce
from operator import add

import torch
from torch import Tensor

from focalcal._checks import TensorLike
from focalcal.metrics._inputs import (
    Scratch,
    check_num_bins,
    checked,
    per_row,
    probabilities_of,
    row_chunks,
    row_sums,
    top_label,
)
from focalcal.metrics.binning import (
    Bins,
    check_sample_count,
)


def reliability_bins(
    scores: TensorLike, labels: TensorLike, num_bins: int = 15, from_probs: bool = False
) -> Bins:
    """The equal-width top-label :class:`Bins` behind ECE, MCE and the reliability diagram.

    Example:
        >>> import torch
        >>> bins = reliability_bins(torch.tensor([[0.9, 0.1], [0.25, 0.75]]), torch.tensor([0, 0]),
        ...                         num_bins=5, from_probs=True)
        >>> bins.count.tolist(), bins.correct.tolist()
        ([0.0, 0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0, 1.0])

        The edges are the real b / B: float32's 0.8 lies above 4/5, so it is in the last bin.

        >>> reliability_bins(torch.tensor([[0.2, 0.8]]), torch.tensor([1]), num_bins=5,
        ...                  from_probs=True).count.tolist()
        [0.0, 0.0, 0.0, 0.0, 1.0]
    """
    check_num_bins(num_bins)
    confidence, correct = top_label(scores, labels, from_probs)
    check_sample_count(confidence.numel())
    return Bins.top_label(confidence, correct, num_bins)


def expected_calibration_error(
    scores: TensorLike, labels: TensorLike, num_bins: int = 15, from_probs: bool = False
) -> Tensor:
    r"""ECE: :math:`\sum_b \frac{n_b}{N} |\mathrm{acc}_b - \mathrm{conf}_b|` over ``num_bins``
    equal-width bins ``(b/B, (b+1)/B]`` of the top-label confidence (0 goes to the first bin).

    Example:
        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
        >>> expected_calibration_error(probs, torch.tensor([0, 1, 1]), from_probs=True)
        tensor(0.3333, dtype=torch.float64)
    """
    return reliability_bins(scores, labels, num_bins, from_probs).calibration_error()


def maximum_calibration_error(
    scores: TensorLike, labels: TensorLike, num_bins: int = 15, from_probs: bool = False
) -> Tensor:
    """MCE: the largest |accuracy − confidence| over the non-empty equal-width bins."""
    return reliability_bins(scores, labels, num_bins, from_probs).max_calibration_error()


def signed_calibration_error(
    scores: TensorLike, labels: TensorLike, num_bins: int = 15, from_probs: bool = False
) -> Tensor:
    """Σ_b (n_b/N)(confidence_b − accuracy_b): positive when over-confident, negative when
    under-confident. The bins cancel out: it equals mean confidence − accuracy; the report's
    ``ece_over`` and ``ece_under`` split ECE itself between over- and under-confident bins."""
    return reliability_bins(scores, labels, num_bins, from_probs).signed_calibration_error()


def adaptive_calibration_error(
    scores: TensorLike, labels: TensorLike, num_bins: int = 15, from_probs: bool = False
) -> Tensor:
    """AdaECE: ECE over equal-mass bins whose edges are the interpolated quantiles of the sorted
    confidences. Every sample counts; bins that coincide because of ties merge; works for
    N < ``num_bins``."""
    check_num_bins(num_bins)
    confidence, correct = top_label(scores, labels, from_probs)
    check_sample_count(confidence.numel())
    return adaptive_bins(confidence, correct, num_bins).calibration_error()


def adaptive_bins(confidence: Tensor, correct: Tensor, num_bins: int) -> Bins:
    """Equal-mass bins of top-label confidences ``(M,)``: :meth:`Bins.equal_mass`."""
    return Bins.equal_mass(confidence, correct, num_bins)


def classwise_calibration_error(
    scores: TensorLike, labels: TensorLike, num_bins: int = 15, from_probs: bool = False
) -> Tensor:
    """Classwise-ECE: for each class k, an ECE over equal-width bins of p_k with accuracy
    replaced by 1[y = k]; averaged over the C classes of the scores' shape (a class that never
    occurs in ``labels`` still counts)."""
    check_num_bins(num_bins)
    scores, labels = checked(scores, labels, from_probs)
    check_sample_count(labels.numel())
    chunks = row_chunks(scores, labels)  # exact sums: chunks add up to one pass bit for bit
    bins = (Bins.classwise(probabilities_of(s, from_probs), y, num_bins) for s, y in chunks)
    return reduce(add, bins).calibration_error().mean()


def negative_log_likelihood(
    scores: TensorLike, labels: TensorLike, from_probs: bool = False
) -> Tensor:
    """Mean −log p_y (infinite where a probability of the label is 0)."""
    scores, labels = checked(scores, labels, from_probs)
    return per_row(lambda s, y: sample_nll(s, y, from_probs), scores, labels).mean()


def brier_score(scores: TensorLike, labels: TensorLike, from_probs: bool = False) -> Tensor:
    """Mean over samples of Σ_k (p_k − 1[y = k])²."""
    scores, labels = checked(scores, labels, from_probs)
    return per_row(
        lambda s, y: sample_brier(probabilities_of(s, from_probs), y), scores, labels
    ).mean()


def sample_nll(scores: Tensor, labels: Tensor, from_probs: bool) -> Tensor:
    """−log p_y of every row of checked ``(M, C)`` scores, float64, in [0, inf].

    For logits, log Σ_k exp(z_k − max z) − (z_y − max z): the exponentials in the logits'
    dtype (each to its last bit), their sum and the rest in float64, so the error stays about
    one float32 ulp of the result whatever C (a float32 sum would add up to C of them)."""
    column = labels.unsqueeze(1)
    if from_probs:
        nll = -scores.gather(1, column).squeeze(1).double().log()
    else:
        top = scores.amax(dim=1, keepdim=True)
        own = scores.gather(1, column).double() - top.double()  # exact
        exponentials = torch.sub(scores, top, out=Scratch.local().get("work", scores)).exp_()
        normaliser = row_sums(exponentials)
        nll = normaliser.log_().sub_(own.squeeze(1))
    # −log p >= 0 exactly; the clamp makes it hold whatever a kernel's rounding of log p near 0
    # (none seen above 0 on the AVX2 and portable kernels), and turns −0.0 (p = 1) into 0
    return nll.clamp_(min=0.0)


def sample_brier(probs: Tensor, labels: Tensor) -> Tensor:
    """Σ_k (p_k − 1[y = k])² of every row of checked ``(M, C)`` probabilities, float64: the
    differences are exact in the probabilities' dtype (p_y − 1 for p_y >= 1/2 by Sterbenz's
    lemma), each square is rounded once, and the sum is float64."""
    column = labels.unsqueeze(1)
    residual = Scratch.local().get("work", probs).copy_(probs)
    residual.scatter_add_(1, column, probs.new_full(column.shape, -1.0))
    # at most 2 for a distribution; a row that sums to 1 only within probability_tolerance
    # (a user's rounded probabilities) can pass 2 by about twice that tolerance
    return row_sums(residual.square_()).clamp_(max=2.0)


def error_rate(scores: TensorLike, labels: TensorLike, from_probs: bool = False) -> Tensor:
    """1 − accuracy of the argmax prediction."""
    _, correct = top_label(scores, labels, from_probs)
    return 1.0 - correct.double().mean()


ece = expected_calibration_error
mce = maximum_calibration_error
adaece = adaptive_calibration_error
classwise_ece = classwise_calibration_error
nll = negative_log_likelihood
