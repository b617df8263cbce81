"""How the focal losses compute: ``(1 - p_t)^γ · nll`` with its derivative written out, by one
of two paths that give the same values, chosen by :func:`focal_values`.

- **The torch path** (any device, any shape): ``F.cross_entropy(..., reduction="none")`` gives
  ``nll = -log p_t`` (torch checks the target range and differentiates the log-softmax), then
  :class:`_FocalLoss` computes the focal value, its weighting and reduction, and in the same
  ops its derivative in ``nll``; its backward is one multiplication.
- **The NumPy path** (2-D logits on the CPU, up to :data:`SMALL` of them):
  :class:`_SmallFocalLoss` computes the log-softmax, the focal value and the logits' gradient
  ``s · (softmax - onehot)`` in NumPy in its forward, and its backward is one multiplication:
  one autograd node where the torch path has three. At such sizes a torch op costs a few µs
  whatever its size, a NumPy ufunc a fraction of that; beyond them torch's threads win.

Both evaluate the focal parts with :func:`_focal_parts`, written once for torch and NumPy;
the tests run every focal-loss test on both paths. Under ``create_graph=True`` both recompute
the derivative with autograd recording (the NumPy path through the torch path), so second
derivatives stay exact.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from focalcal.losses._common import (
    bad_target_message,
    check_inputs,
    cross_entropy_values,
    is_nan,
    kept_weight,
    nan_error,
    target_weights,
)

SMALL = 2**13
"""Logits: up to this many, 2-D CPU logits take the NumPy path. ``benchmarks/bench_losses.py``
times FLSD-53 on both: on a 2-core AMD EPYC the NumPy path is faster at 128 × 10 and as fast
at 128 × 100; NumPy is single-threaded, torch's larger ops are not."""

Array = Any  # a Tensor or a NumPy array: _focal_parts takes either


@functools.lru_cache(maxsize=64)
def _largest_below(bound: float, dtype: torch.dtype) -> float:
    """The largest ``dtype`` value strictly below ``bound``: ``x < bound`` is ``x <= it`` for
    every ``x`` of that dtype, evaluated without rounding ``bound`` to the dtype (float32's
    nearest to log 0.2 lies below log 0.2, and ``x < float32(log 0.2)`` missed it).

    Example:
        >>> import math
        >>> _largest_below(math.log(0.2), torch.float32) < math.log(0.2)
        True
    """
    nearest = torch.tensor(bound, dtype=dtype)
    if float(nearest) >= bound:
        nearest = torch.nextafter(nearest, torch.tensor(-math.inf, dtype=dtype))
    return float(nearest)


class _Constants(NamedTuple):
    bounds: tuple[Any, ...]  # per threshold t, the largest value below log t (_largest_below)
    gammas: tuple[Any, ...]


@functools.lru_cache(maxsize=64)
def _torch_constants(
    thresholds: tuple[float, ...], gammas: tuple[float, ...], dtype: torch.dtype, device: Any
) -> _Constants:
    """0-d tensors, made once: a tensor made from a Python number at every call costs as much
    as the op that uses it. Filled on the device (``torch.full``, no copy from the host: no
    synchronisation with an accelerator)."""

    def constant(value: float) -> Tensor:
        return torch.full((), value, dtype=dtype, device=device)

    with torch.inference_mode(False):
        bounds = tuple(constant(_largest_below(math.log(t), dtype)) for t in thresholds)
        return _Constants(bounds, tuple(constant(g) for g in gammas))


_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


@functools.lru_cache(maxsize=64)
def _numpy_constants(
    thresholds: tuple[float, ...], gammas: tuple[float, ...], dtype: np.dtype
) -> _Constants:
    """NumPy scalars of ``dtype``, the same values as :func:`_torch_constants`."""
    constants = _torch_constants(thresholds, gammas, _TORCH_DTYPES[dtype], "cpu")
    return _Constants(*(tuple(dtype.type(t.item()) for t in part) for part in constants))


def _numpy_lerp(start: np.ndarray, end: np.ndarray, weight: np.ndarray) -> np.ndarray:
    end = end - start
    end *= weight
    end += start
    return end


class _Namespace(NamedTuple):
    expm1: Callable[[Array], Array]
    where: Callable[[Array, Array, Array], Array]
    clamp_min: Callable[[Array, float], Array]
    lerp: Callable[[Array, Array, Array], Array]  # start + weight · (end - start)
    constants: Callable[[tuple[float, ...], tuple[float, ...], Array], _Constants]  # for nll


_TORCH = _Namespace(
    torch.expm1, torch.where, torch.clamp_min, torch.lerp,
    lambda thresholds, gammas, nll: _torch_constants(thresholds, gammas, nll.dtype, nll.device),
)  # fmt: skip
_NUMPY = _Namespace(
    np.expm1, np.where, np.maximum, _numpy_lerp,
    lambda thresholds, gammas, nll: _numpy_constants(thresholds, gammas, nll.dtype),
)  # fmt: skip


def _focal_parts(
    nll: Array, thresholds: tuple[float, ...], gammas: tuple[float, ...], derivative: bool
) -> tuple[Array, Array | None]:
    """``w = (1 - p_t)^γ`` from ``nll = -log p_t`` (a tensor or a NumPy array), and with
    ``derivative`` the derivative of the focal value ``w · nll`` in ``nll``:
    ``w + γ · nll · ((1 - p_t)^(γ-1) - w)``, as
    ``(1 - p_t)^(γ-1) - (1 - p_t)^γ = (1 - p_t)^(γ-1) p_t``.

    With thresholds, γ is chosen per element from ``p_t``: ``gammas[k]`` for
    ``thresholds[k-1] <= p_t < thresholds[k]``, evaluated as ``log p_t < log threshold``
    exactly (the threshold's log is not rounded to the dtype of ``nll``); without, γ is
    ``gammas[0]``.

    ``1 - p_t`` is computed as ``-expm1(-nll)``, exact near ``p_t = 1``. Where the derivative
    ``γ (1 - p_t)^(γ-1)`` could diverge at ``p_t = 1`` (γ < 1) or is computed as
    ``w / (1 - p_t)`` (a per-element γ), ``1 - p_t`` is bounded below by the smallest normal
    float of the dtype, which changes the loss by at most ``tiny^γ · nll`` and its derivative
    by at most ``γ · tiny^γ``, far below the dtype's resolution.
    """
    xp = _NUMPY if isinstance(nll, np.ndarray) else _TORCH
    log_pt = -nll
    one_minus_pt = -xp.expm1(log_pt)
    if not thresholds:
        gamma = gammas[0]
        if gamma < 1.0:
            one_minus_pt = xp.clamp_min(one_minus_pt, _tiny(nll.dtype))
        w = one_minus_pt**gamma
        if not derivative:
            return w, None
        return w, xp.lerp(w, one_minus_pt ** (gamma - 1.0), gamma * nll)
    constants = xp.constants(thresholds, gammas, nll)
    gamma_t = constants.gammas[-1]
    for bound, g in zip(reversed(constants.bounds), reversed(constants.gammas[:-1]), strict=True):
        gamma_t = xp.where(log_pt <= bound, g, gamma_t)  # the lowest bin is written last
    one_minus_pt = xp.clamp_min(one_minus_pt, _tiny(nll.dtype))
    w = one_minus_pt**gamma_t
    if not derivative:
        return w, None
    return w, xp.lerp(w, w / one_minus_pt, gamma_t * nll)


@functools.cache
def _tiny(dtype: torch.dtype | np.dtype) -> float:
    """The smallest normal number of a torch or NumPy dtype."""
    if isinstance(dtype, torch.dtype):
        return float(torch.finfo(dtype).tiny)
    return float(np.finfo(dtype).tiny)


class _NaNLoss(Exception):
    """Raised inside the autograd functions, which do not see the logits (or not the caller's);
    the caller turns it into the ``ValueError`` that counts the non-finite logits."""


# target, weight, ignore_index, reduction, thresholds, gammas
_Options = tuple[Tensor, Tensor | None, int, str, tuple[float, ...], tuple[float, ...]]


class _FocalLoss(torch.autograd.Function):
    """The torch path: the focal loss of ``nll = -log p_t`` (``(N, d1, ...)``, 0 at ignored
    targets), weighted and reduced like ``CrossEntropyLoss``, with its derivative written out.

    At a small batch every tensor op and every autograd node costs a few µs whatever its size:
    autograd would record a dozen elementwise nodes and the reduction's, each with its backward
    ops. Here the forward is a handful of ops that also compute the derivative, the backward one
    multiplication; ``F.cross_entropy`` differentiates ``nll`` (so the target range is checked
    by torch, and the logits' gradient is torch's). Under ``create_graph=True`` the derivative
    is recomputed from ``nll`` with autograd recording, so second derivatives stay exact. The
    class weight is a constant, as in ``F.cross_entropy`` (which refuses one that needs a
    gradient).
    """

    @staticmethod
    def forward(ctx: Any, nll: Tensor, options: _Options) -> Tensor:
        # One argument for the rest: apply() inspects each of its arguments.
        target, weight, ignore_index, reduction, thresholds, gammas = options
        derivative = ctx.needs_input_grad[0]
        w, slope = _focal_parts(nll, thresholds, gammas, derivative)
        scale = denominator = None  # d loss / d values = scale / denominator
        if weight is not None:
            scale = target_weights(target, weight, ignore_index)
            w = w * scale
        loss: Tensor
        if reduction == "none":
            loss = w * nll
            total = loss.sum()
        else:
            flat = nll.dim() == 1
            total = loss = torch.dot(w, nll) if flat else torch.dot(w.flatten(), nll.flatten())
            if reduction == "mean":
                denominator = kept_weight(target, ignore_index, scale)
                loss = total / denominator
        if is_nan(total):
            raise _NaNLoss
        if slope is not None:
            if scale is not None:
                slope = slope * scale
            if denominator is not None:
                slope = slope.div_(denominator)
            ctx.save_for_backward(nll, slope, scale, denominator)
            ctx.schedule = thresholds, gammas
        return loss

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        nll, slope, scale, denominator = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: a derivative autograd can differentiate
            thresholds, gammas = ctx.schedule
            slope = _focal_parts(nll, thresholds, gammas, derivative=True)[1]
            if scale is not None:
                slope = slope * scale
            if denominator is not None:
                slope = slope / denominator
        return grad * slope, None


def _torch_path(logits: Tensor, options: _Options) -> Tensor:
    target, _, ignore_index, *_ = options
    nll = cross_entropy_values(logits, target, None, ignore_index, 0.0)
    loss: Tensor = _FocalLoss.apply(nll, options)  # type: ignore[no-untyped-call]
    return loss


def _kept_labels(
    target: Tensor, num_classes: int, ignore_index: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """The targets as labels to index with (ignored ones as 0), and which are kept (``None``:
    all); a target outside ``[0, num_classes)`` that is not ``ignore_index`` is an error."""
    labels = target.numpy()
    if labels.min() >= 0 and labels.max() < num_classes:
        return labels, (labels != ignore_index if 0 <= ignore_index < num_classes else None)
    kept = labels != ignore_index
    if ((labels < 0) | (labels >= num_classes))[kept].any():
        raise ValueError(bad_target_message(target, num_classes, ignore_index))
    return np.where(kept, labels, 0), kept


class _SmallFocalLoss(torch.autograd.Function):
    """The NumPy path: the focal loss of 2-D CPU ``logits``, weighted and reduced like
    ``CrossEntropyLoss``; the forward also makes the logits' gradient, the backward multiplies
    it by the incoming one. Under ``create_graph=True`` the backward differentiates the torch
    path instead, with autograd recording."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, options: _Options) -> Tensor:
        target, weight, ignore_index, reduction, thresholds, gammas = options
        derivative = ctx.needs_input_grad[0]
        z = logits.detach().numpy()
        rows = np.arange(z.shape[0])
        labels, kept = _kept_labels(target, z.shape[1], ignore_index)
        with np.errstate(all="ignore"):  # non-finite logits: the NaN check below names them
            shifted = z - z.max(axis=1, keepdims=True)
            exp = np.exp(shifted)
            sums = exp.sum(axis=1)
            nll = np.log(sums) - shifted[rows, labels]
            if kept is not None:
                nll = np.where(kept, nll, 0.0)
            w, slope = _focal_parts(nll, thresholds, gammas, derivative)
            scale = None
            if weight is not None:
                scale = weight.detach().numpy()[labels]
                if kept is not None:
                    scale = np.where(kept, scale, 0.0)
                w = w * scale
            values = w * nll
            total = values.sum() if reduction == "none" else np.dot(w, nll)
            if math.isnan(total):
                raise _NaNLoss
            loss = values if reduction == "none" else total
            denominator = None
            if reduction == "mean":
                count = z.shape[0] if kept is None else np.count_nonzero(kept)
                denominator = z.dtype.type(count) if scale is None else scale.sum()
                loss = total / denominator
            if slope is not None:
                if scale is not None:
                    slope = slope * scale
                elif kept is not None:
                    slope = np.where(kept, slope, 0.0)
                if denominator is not None:
                    slope /= denominator
                exp *= (slope / sums)[:, None]
                exp[rows, labels] -= slope
                ctx.gradient = torch.from_numpy(exp)
                ctx.save_for_backward(logits)
                ctx.options = options
        return torch.from_numpy(np.asarray(loss))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph: a derivative autograd can differentiate
            (logits,) = ctx.saved_tensors
            loss = _torch_path(logits, ctx.options)
            return torch.autograd.grad(loss, logits, grad, create_graph=True)[0], None
        return ctx.gradient * (grad if grad.dim() == 0 else grad.unsqueeze(1)), None


def focal_values(
    logits: Tensor,
    target: Tensor,
    thresholds: tuple[float, ...],
    gammas: tuple[float, ...],
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
) -> Tensor:
    """The focal loss with γ by ``(thresholds, gammas)``, as :func:`_focal_parts` takes them,
    with ``CrossEntropyLoss``'s checks, weighting and reduction."""
    logits, target, weight = check_inputs(logits, target, weight, reduction)
    if weight is not None and weight.requires_grad and torch.is_grad_enabled():
        raise ValueError(
            "weight requires grad, but the focal losses treat the class weight as a constant, "
            "as torch.nn.functional.cross_entropy does: pass weight.detach()"
        )
    options = (target, weight, ignore_index, reduction, thresholds, gammas)
    try:
        if logits.is_cpu and logits.dim() == 2 and 0 < logits.numel() <= SMALL:
            loss: Tensor = _SmallFocalLoss.apply(logits, options)  # type: ignore[no-untyped-call]
            return loss
        return _torch_path(logits, options)
    except _NaNLoss:
        raise nan_error(logits, target, ignore_index) from None
