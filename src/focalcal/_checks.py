"""Input checks shared by the losses and the metrics."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import torch
from torch import Tensor

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    TensorLike: TypeAlias = Tensor | ArrayLike
else:
    TensorLike: TypeAlias = Any
"""What the metrics and calibrators take: a tensor, a numpy array, or anything else
:func:`torch.as_tensor` takes (nested lists, a pandas DataFrame's values)."""


def as_tensor(value: TensorLike, name: str) -> Tensor:
    """``value`` as a tensor: a tensor as it is; a numpy array (or anything with
    ``__array__``, as a pandas DataFrame) with its dtype, sharing its memory where it is
    writable; nested lists and numbers through :func:`torch.as_tensor` (floats become torch's
    default dtype). Anything else is a ``ValueError`` naming ``name``."""
    if isinstance(value, Tensor):
        return value
    try:
        if hasattr(value, "__array__"):
            import numpy as np  # present wherever an object has __array__

            array = np.asarray(value)
            if not array.flags.writeable:  # torch may not share a read-only array
                array = array.copy()
            return torch.from_numpy(array) if array.dtype != object else torch.as_tensor(array)
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"{name} must be a tensor or an array of numbers, got {type(value).__name__}: {error}"
        ) from None


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


class ProbabilitiesAsLogitsWarning(UserWarning):
    """Scores passed where logits are expected look like probabilities (softmax output)."""


PROBABILITIES_AS_LOGITS = (
    "{name} look like probabilities, not logits (every row along dim 1 lies in [0, 1] and "
    "sums to 1)"
)


def probability_tolerance(num_classes: int, dtype: torch.dtype) -> float:
    """How far from 1 a row of ``num_classes`` probabilities stored in ``dtype`` may sum.

    Rounding each probability to ``dtype`` moves their sum by at most eps/2 (relative errors
    weighted by probabilities that sum to 1), a softmax computed in ``dtype`` by a few eps; the
    sum itself is taken in float32 or wider, which adds up to ``num_classes`` eps of that. So a
    float16 or bfloat16 softmax passes, where a fixed 1e-4 refused it.

    Example:
        >>> probability_tolerance(10, torch.float32), probability_tolerance(10, torch.bfloat16)
        (0.0001, 0.03125)
    """
    wide = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    return max(1e-4, 4 * torch.finfo(dtype).eps, num_classes * torch.finfo(wide).eps)


def distribution_gap(rows: Tensor, tolerance: float) -> Tensor:
    """A 0-d tensor that is <= 0 exactly when every row of ``rows`` ``(M, C)`` lies in [0, 1]
    and sums to 1 within ``tolerance``; NaN where ``rows`` hold NaN. Sums in float32 or wider."""
    wide = torch.float32 if rows.dtype in (torch.float16, torch.bfloat16) else rows.dtype
    low, high = torch.aminmax(rows.to(wide))
    off = (rows.sum(dim=1, dtype=wide) - 1.0).abs().amax() - tolerance
    return torch.stack([-low, high - 1.0, off]).amax()


def first_row(scores: Tensor) -> Tensor:
    """The scores of the first sample of ``(N, C, d1, ...)``, as ``(C,)``."""
    row = scores[0]
    while row.dim() > 1:
        row = row[..., 0]
    return row


def looks_like_probabilities(scores: Tensor) -> bool:
    """Whether logits ``(N, C, d1, ...)`` look like softmax output: ``C >= 2`` and every row
    (every sample along dim 1) lies in [0, 1] and sums to 1 within
    :func:`probability_tolerance`.

    A model's logits pass only by coincidence: all ``N·d1·…`` rows at once would have to be
    non-negative and sum to 1 to 1e-4. The first sample's row is checked first, and for logits
    its minimum, one reduction over C values, almost always ends the check (a host
    synchronisation on CUDA); the whole tensor is read only when that row is a distribution.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.3, -2.0]])
        >>> looks_like_probabilities(logits), looks_like_probabilities(logits.softmax(1))
        (False, True)
    """
    if not scores.is_floating_point() or scores.dim() < 2 or scores.shape[1] < 2:
        return False
    if scores.numel() == 0:
        return False
    scores = scores.detach()
    row = first_row(scores)
    # logits almost always hold a negative value: one reduction over C values ends it there
    if not float(row.min()) >= 0.0 or not float(row.max()) <= 1.0:  # NaN ends it too
        return False
    tolerance = probability_tolerance(scores.shape[1], scores.dtype)
    if not abs(float(row.sum(dtype=torch.float64)) - 1.0) <= tolerance:
        return False
    rows = scores.movedim(1, -1).reshape(-1, scores.shape[1])
    return float(distribution_gap(rows, tolerance)) <= 0


def warn_if_probabilities(logits: Tensor, stacklevel: int = 3) -> None:
    """Warn (:class:`ProbabilitiesAsLogitsWarning`) when CPU logits look like probabilities.

    For the losses, which run every step and must never synchronise with an accelerator: on
    other devices this does nothing. A warning, not an error, because a training step may not
    stop on a coincidence; Python shows it once per call site.
    """
    if logits.device.type == "cpu" and looks_like_probabilities(logits):
        message = PROBABILITIES_AS_LOGITS.format(name="logits")
        warnings.warn(
            f"{message}; a loss takes logits (drop the softmax)",
            ProbabilitiesAsLogitsWarning,
            stacklevel=stacklevel,
        )


def unknown_name(kind: str, name: object, known: Sequence[str]) -> ValueError:
    """The error for a ``kind`` name that is not one of ``known``, suggesting the closest.

    Example:
        >>> unknown_name("loss", "flsd_53", ["ce", "flsd-53", "fl-<γ>"])
        ValueError("unknown loss 'flsd_53' (did you mean 'flsd-53'?); known: ce, flsd-53, fl-<γ>")
    """
    close = difflib.get_close_matches(str(name).strip().lower(), list(known), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"unknown {kind} {name!r}{hint}; known: {', '.join(known)}")
