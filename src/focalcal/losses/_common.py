"""What every loss shares: input checks and `torch.nn.CrossEntropyLoss`-style reduction.

A loss computes one value per element, shape ``(N, d1, ...)``, zero where the target is
``ignore_index``; :func:`reduce_loss` applies each target's class weight and reduces exactly as
``CrossEntropyLoss`` does (``mean`` divides by the summed weights of the non-ignored targets).

The checks cost almost nothing on the hot path and never synchronise with an accelerator:
- shapes, dtypes, devices: Python attributes only;
- target range: ``F.nll_loss`` checks it anyway (an ``IndexError`` on the CPU, turned into our
  ``ValueError`` here; a device-side assertion on CUDA); losses that do not call it use
  :func:`check_target`;
- NaN: the summed loss is read once (free on the CPU; an asynchronous assertion on CUDA), and
  only when it is NaN are the inputs inspected to say why;
- probabilities passed as logits (CPU only): one minimum is read (of all the logits while they
  are few, else of their first row), and only when it is >= 0 does
  :func:`~focalcal._checks.warn_if_probabilities` run its whole check.

At a small batch each of these reads and each tensor op costs a few µs whatever its size, as
much as the arithmetic of the loss itself: keep their number down.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from focalcal._checks import (
    check_class_indices,
    check_scores,
    first_row,
    warn_if_probabilities,
)

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")
_PROBE_ALL_UP_TO = 32768  # elements: up to this many, the probability probe reads every logit


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_gamma(gamma: float, name: str = "gamma") -> None:
    if not (gamma >= 0.0 and gamma != float("inf")):  # also refuses NaN
        raise ValueError(f"{name} must be a finite float >= 0, got {gamma!r}")


def check_inputs(
    logits: Tensor, target: Tensor, weight: Tensor | None, reduction: str
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Check shapes, dtypes and devices; return ``(logits, target, weight)`` ready to compute.

    Half-precision logits are computed in float32, as autocast does for losses; targets become
    int64; the weight takes the logits' dtype.
    """
    check_scores(logits, "logits")
    check_class_indices(logits, target, ("logits", "target"))
    check_reduction(reduction)
    # Softmax output passed as logits (CPU only: no sync). Probabilities are >= 0, so a negative
    # minimum rules a batch out before the whole check: the minimum of every logit while they
    # are few (cheaper than indexing the first row), else of the first row.
    if logits.is_cpu and logits.numel():
        probe = logits.detach()
        if float((probe if probe.numel() <= _PROBE_ALL_UP_TO else first_row(probe)).min()) >= 0:
            warn_if_probabilities(logits)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    if weight is not None:
        num_classes = logits.shape[1]
        if not isinstance(weight, Tensor) or weight.shape != (num_classes,):
            shape = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
            raise ValueError(f"weight must be a tensor of shape ({num_classes},), got {shape}")
        if weight.device != logits.device:
            raise ValueError(f"weight is on {weight.device} but logits are on {logits.device}")
        # An infinite weight makes a mean inf / inf = NaN without a NaN element: refuse it.
        if weight.device.type == "cuda":
            torch._assert_async(weight.isfinite().all(), "weight holds NaN or infinite values")
        elif not weight.isfinite().all():
            raise ValueError("weight holds NaN or infinite values")
        weight = weight.to(logits.dtype)
    return logits, target if target.dtype == torch.int64 else target.long(), weight


def nll(log_probs: Tensor, target: Tensor, ignore_index: int) -> Tensor:
    """``-log p_t`` per element, ``(N, d1, ...)``, exactly 0 where ``target == ignore_index``."""
    try:
        return F.nll_loss(log_probs, target, ignore_index=ignore_index, reduction="none")
    except IndexError as error:  # torch's range check on the CPU
        raise ValueError(bad_target_message(target, log_probs.shape[1], ignore_index)) from error


def cross_entropy_values(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    smoothing: float,
    reduction: str = "none",
) -> Tensor:
    """``F.cross_entropy``; with ``reduction="none"`` weighted values, 0 at ignored targets."""
    try:
        return F.cross_entropy(
            logits, target, weight, ignore_index=ignore_index, reduction=reduction,
            label_smoothing=smoothing,
        )  # fmt: skip
    except IndexError as error:
        raise ValueError(bad_target_message(target, logits.shape[1], ignore_index)) from error


def check_target(target: Tensor, num_classes: int, ignore_index: int) -> None:
    """Every target in ``[0, num_classes)`` or equal to ``ignore_index``."""
    if target.device.type == "cuda":
        in_range = (target >= 0) & (target < num_classes) | (target == ignore_index)
        torch._assert_async(in_range.all(), "target holds a class index out of range")
    elif target.numel():
        low, high = torch.aminmax(target)
        if int(low) < 0 or int(high) >= num_classes:
            bad = (target < 0) | (target >= num_classes)
            if (bad & (target != ignore_index)).any():
                raise ValueError(bad_target_message(target, num_classes, ignore_index))


def bad_target_message(target: Tensor, num_classes: int, ignore_index: int) -> str:
    values = target[((target < 0) | (target >= num_classes)) & (target != ignore_index)]
    return (
        f"target holds {values.numel()} class index(es) outside [0, {num_classes}) "
        f"(min {int(values.min())}, max {int(values.max())}); "
        f"only ignore_index={ignore_index} may lie outside"
    )


def target_weights(target: Tensor, weight: Tensor, ignore_index: int) -> Tensor:
    """The class weight of each target, 0 where the target is ignored."""
    valid = target != ignore_index
    return torch.where(valid, weight.take(torch.where(valid, target, 0)), 0.0)


def reduce_loss(
    values: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    logits: Tensor,
) -> Tensor:
    """Weight and reduce per-element values that are 0 at ignored targets, like
    ``CrossEntropyLoss``. A NaN at a non-ignored target is an error."""
    weights = None
    if weight is not None:
        weights = target_weights(target, weight, ignore_index)
        values = values * weights
    total = values.sum()
    if is_nan(total):
        raise nan_error(logits, target, ignore_index)
    if reduction == "none":
        return values
    if reduction == "sum":
        return total
    return total / kept_weight(target, ignore_index, weights)


def kept_weight(target: Tensor, ignore_index: int, weights: Tensor | None) -> Tensor:
    """What a mean divides by: the number of targets that are not ``ignore_index`` (an int64
    0-d tensor), or the sum of their ``weights`` (:func:`target_weights`, 0 where ignored)."""
    return torch.count_nonzero(target != ignore_index) if weights is None else weights.sum()


def is_nan(total: Tensor) -> bool:
    """Whether a summed loss is NaN (every loss is >= 0 per element, so the sum is NaN exactly
    when one element is). On CUDA an asynchronous assertion fails instead, and this is False."""
    if total.is_cuda:
        torch._assert_async(~total.isnan(), "the loss is NaN: logits hold NaN or +inf")
        return False
    return math.isnan(total.item())


def nan_error(logits: Tensor, target: Tensor, ignore_index: int) -> ValueError:
    """The error for a NaN loss, counting the non-finite logits at non-ignored targets."""
    kept = logits.detach().movedim(1, -1)[target != ignore_index]
    counts = [int(kept.isnan().sum()), int((kept == math.inf).sum())]
    counts.append(int((kept == -math.inf).sum()))
    return ValueError(
        "the loss is NaN: logits hold non-finite values at non-ignored targets "
        "(NaN: {}, +inf: {}, -inf: {})".format(*counts)
    )
