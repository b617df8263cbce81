"""Input checks shared by the losses and the metrics."""

from __future__ import annotations

import torch
from torch import Tensor


def check_scores(scores: Tensor, name: str = "logits") -> None:
    """``scores`` are a floating-point tensor of shape ``(N, C)`` or ``(N, C, d1, ...)``."""
    if not isinstance(scores, Tensor) or not scores.is_floating_point():
        got = scores.dtype if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"{name} must be a floating-point tensor, got {got}")
    if scores.dim() < 2:
        raise ValueError(
            f"{name} must have shape (N, C) or (N, C, d1, ...), got {tuple(scores.shape)}"
        )


def check_class_indices(
    scores: Tensor, indices: Tensor, names: tuple[str, str] = ("logits", "target")
) -> None:
    """``indices`` hold class indices of shape ``(N, d1, ...)`` for ``scores`` of shape
    ``(N, C, d1, ...)``, on the same device; ``names`` name the two in the messages."""
    scores_name, name = names
    integer = isinstance(indices, Tensor) and not indices.is_floating_point()
    if not integer or indices.is_complex() or indices.dtype == torch.bool:
        got = indices.dtype if isinstance(indices, Tensor) else type(indices).__name__
        raise ValueError(
            f"{name} must hold class indices (an integer dtype), got {got}; "
            "probabilities are not supported as targets"
        )
    expected = (scores.shape[0], *scores.shape[2:])
    if tuple(indices.shape) != expected:
        raise ValueError(
            f"{name} shape {tuple(indices.shape)} does not match {scores_name} shape "
            f"{tuple(scores.shape)}: expected {expected}"
        )
    if indices.device != scores.device:
        raise ValueError(f"{name} are on {indices.device} but {scores_name} on {scores.device}")
