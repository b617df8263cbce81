"""Checks shared by every metric: scores and labels in, probabilities ``(M, C)`` out."""

from __future__ import annotations

import torch
from torch import Tensor


def check_num_bins(num_bins: int) -> None:
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins must be an integer >= 1, got {num_bins!r}")


def checked(scores: Tensor, labels: Tensor, from_probs: bool) -> tuple[Tensor, Tensor]:
    """Check ``(scores, labels)`` and return them flattened to ``(M, C)`` and ``(M,)``.

    ``scores`` are logits or, with ``from_probs=True``, probabilities; shape ``(N, C)`` or
    ``(N, C, d1, ...)``, where every position counts as a sample. ``labels`` are class indices
    ``(N)`` or ``(N, d1, ...)``. The class count ``C`` comes from the scores' shape, never from
    the labels. Half-precision scores are computed in float32.
    """
    if not isinstance(scores, Tensor) or not scores.is_floating_point():
        got = scores.dtype if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"scores must be a floating-point tensor, got {got}")
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        got = labels.dtype if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a tensor of class indices (an integer dtype), got {got}")
    if scores.dim() < 2:
        raise ValueError(
            f"scores must have shape (N, C) or (N, C, d1, ...), got {tuple(scores.shape)}"
        )
    expected = (scores.shape[0], *scores.shape[2:])
    if tuple(labels.shape) != expected:
        raise ValueError(
            f"labels shape {tuple(labels.shape)} does not match scores shape "
            f"{tuple(scores.shape)}: expected {expected}"
        )
    if labels.device != scores.device:
        raise ValueError(f"labels are on {labels.device} but scores are on {scores.device}")
    if labels.numel() == 0:
        raise ValueError("the input is empty: a metric needs at least one sample")
    num_classes = scores.shape[1]
    if scores.dim() > 2:
        scores = scores.movedim(1, -1).reshape(-1, num_classes)
    labels = labels.reshape(-1).long()
    if scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()

    low, high = torch.aminmax(labels)
    if int(low) < 0 or int(high) >= num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes}) (the class count comes from the scores' "
            f"shape), got min {int(low)}, max {int(high)}"
        )
    if from_probs:
        _check_probabilities(scores)
    elif not scores.isfinite().all():
        nan, inf = int(scores.isnan().sum()), int(scores.isinf().sum())
        raise ValueError(
            f"logits hold {nan} NaN and {inf} infinite value(s); pass probabilities with "
            "from_probs=True to give a class probability 0"
        )
    return scores, labels


def probabilities(scores: Tensor, labels: Tensor, from_probs: bool) -> tuple[Tensor, Tensor]:
    """Checked ``(probs (M, C), labels (M,))``; see :func:`checked`."""
    scores, labels = checked(scores, labels, from_probs)
    return (scores if from_probs else torch.softmax(scores, dim=1)), labels


def top_label(scores: Tensor, labels: Tensor, from_probs: bool) -> tuple[Tensor, Tensor]:
    """Checked top-label ``(confidence (M,), correct (M,) bool)``; see :func:`checked`.

    From logits the confidence is ``exp(max - logsumexp)``, without materialising the softmax.
    """
    scores, labels = checked(scores, labels, from_probs)
    top, prediction = scores.max(dim=1)
    confidence = top if from_probs else torch.exp(top - torch.logsumexp(scores, dim=1))
    return confidence, prediction == labels


def _check_probabilities(probs: Tensor) -> None:
    if not probs.isfinite().all():
        raise ValueError("probabilities hold NaN or infinite values")
    low, high = torch.aminmax(probs)
    if float(low) < 0.0 or float(high) > 1.0:
        raise ValueError(
            f"probabilities must lie in [0, 1], got min {float(low):.6g}, max {float(high):.6g}: "
            "are these logits? (then leave from_probs=False)"
        )
    tolerance = max(1e-4, probs.shape[1] * torch.finfo(probs.dtype).eps)
    worst = float((probs.sum(dim=1) - 1.0).abs().max())
    if worst > tolerance:
        raise ValueError(
            f"probabilities must sum to 1 over the classes (dim 1): a row is off by {worst:.3g} "
            f"(tolerance {tolerance:.1g})"
        )
