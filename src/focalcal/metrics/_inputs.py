"""Checks shared by every metric: scores and labels in, probabilities ``(M, C)`` out."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import torch
from torch import Tensor

from focalcal._checks import (
    PROBABILITIES_AS_LOGITS,
    TensorLike,
    as_tensor,
    check_class_indices,
    check_scores,
    distribution_gap,
    first_row,
    probability_tolerance,
)

CHUNK_ELEMENTS = 2**20
"""The metrics read the scores in chunks of rows holding about this many values (4 MiB of
float32), so their temporaries (probabilities, bin indices, float64 sums) stay a fixed size
whatever the input's: about 16 MiB. (Each chunk costs a few dozen tensor ops, a few µs each
whatever their size; chunks of 2^18 values made Classwise-ECE 1.4x slower at 10 000 × 100.)
Every per-bin sum is exact and every per-sample value depends on its row alone, so the results
do not depend on it (tested down to chunks of two rows)."""


class Scratch:
    """Named buffers that the metrics reuse from chunk to chunk and, on the CPU, from call to
    call: the pages of a fresh tensor cost about as much as the arithmetic on it (0.5 ms per 4
    MiB on this project's AMD EPYC; a softmax of as many values takes 0.5 ms). Each thread has
    its own (:meth:`local`). A buffer is valid until its name is asked for again, and a metric
    never returns one. Only buffers of :data:`SMALL_ELEMENTS` to :data:`KEPT_ELEMENTS` values
    are kept (a chunk's worth: about 20 MiB a thread in all): smaller ones come from the
    allocator's warm heap at less cost than a view of a kept one, and on other devices the
    allocator caches memory itself."""

    _threads = threading.local()

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}
        self._views: dict[str, Tensor] = {}  # the last view of each, reused for its shape

    @classmethod
    def local(cls) -> Scratch:
        """The calling thread's scratch memory."""
        scratch: Scratch | None = getattr(cls._threads, "scratch", None)
        if scratch is None:
            scratch = cls._threads.scratch = cls()
        return scratch

    def get(self, name: str, like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """A contiguous tensor of ``like``'s shape and device (and dtype unless given), its
        values undefined."""
        dtype, size = like.dtype if dtype is None else dtype, like.numel()
        if not like.is_cpu or not SMALL_ELEMENTS <= size <= KEPT_ELEMENTS:
            return torch.empty(like.shape, dtype=dtype, device=like.device)
        view = self._views.get(name)
        if view is not None and view.dtype == dtype and view.shape == like.shape:
            return view
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size or buffer.dtype != dtype:
            buffer = self._buffers[name] = torch.empty(size, dtype=dtype)
        view = self._views[name] = buffer[:size].view(like.shape)
        return view


SMALL_ELEMENTS = 2**15
"""Below this many values (128 KiB of float32) :class:`Scratch` hands out fresh tensors."""
KEPT_ELEMENTS = 2 * CHUNK_ELEMENTS
"""The largest buffer :class:`Scratch` keeps, in values: twice the metrics' chunk, which a
chunk of rows passes by at most a row."""


def row_sums(values: Tensor) -> Tensor:
    """The float64 sums of the rows of ``(M, C)`` values: on the CPU by a copy into
    :class:`Scratch` memory (``torch.sum(dtype=torch.float64)`` makes a fresh float64 copy
    there, and its pages cost more than the sum)."""
    if values.device.type != "cpu" or values.dtype == torch.float64:
        return torch.sum(values, dim=1, dtype=torch.float64)
    return Scratch.local().get("wide", values, torch.float64).copy_(values).sum(dim=1)


def row_chunks(
    scores: Tensor, labels: Tensor, elements: int | None = None
) -> list[tuple[Tensor, Tensor]]:
    """Checked ``(M, C)`` scores and ``(M,)`` labels, about ``elements`` (by default
    :data:`CHUNK_ELEMENTS`) values at a time, and never one row alone out of several: torch
    sums the C values of a lone row on all its threads (for C >= 2^15), which rounds its Brier
    score otherwise than within a batch."""
    elements = CHUNK_ELEMENTS if elements is None else elements
    total, rows = len(labels), max(2, elements // scores.shape[1])
    if total <= rows:  # one chunk: no split (a few µs, as much as a small metric's work)
        return [(scores, labels)]
    sizes = [rows] * (total // rows) + ([total % rows] if total % rows else [])
    if sizes[-1] == 1:
        sizes[-2:] = [rows + 1]
    return list(zip(torch.split(scores, sizes), torch.split(labels, sizes), strict=True))


def per_row(fn: Callable[[Tensor, Tensor], Tensor], scores: Tensor, labels: Tensor) -> Tensor:
    """``fn(scores, labels)``, one float64 value per row of checked ``(M, C)`` scores, computed
    chunk by chunk into one ``(M,)`` tensor made first: results made chunk by chunk would lie
    in the heap between the chunks' temporaries and keep their memory from being reused."""
    out = torch.empty(len(labels), dtype=torch.float64, device=scores.device)
    start = 0
    for chunk, chunk_labels in row_chunks(scores, labels):
        stop = start + len(chunk_labels)
        out[start:stop] = fn(chunk, chunk_labels)
        start = stop
    return out


def check_num_bins(num_bins: int) -> None:
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins must be an integer >= 1, got {num_bins!r}")


def checked_scores(scores: TensorLike, from_probs: bool) -> Tensor:
    """Check ``scores`` alone (no labels) and return them flattened to ``(M, C)``.

    ``scores`` are logits or, with ``from_probs=True``, probabilities; shape ``(N, C)`` or
    ``(N, C, d1, ...)``, where every position counts as a sample: ``M = N·d1·…``, in the
    row-major order of ``(N, d1, ...)``. Half-precision scores are computed in float32.
    Metrics are not differentiable: scores that require grad are read detached, as torchmetrics
    does, and give the same values.
    Logits must be finite and must not look like probabilities (every row in [0, 1], summing
    to 1: see :func:`~focalcal._checks.looks_like_probabilities`); probabilities must lie in
    [0, 1] and sum to 1 over dim 1, to :func:`~focalcal._checks.probability_tolerance` of
    their dtype. Numpy arrays and anything :func:`torch.as_tensor` takes are read as tensors
    (:func:`~focalcal._checks.as_tensor`).
    """
    scores = as_tensor(scores, "scores")
    check_scores(scores, "scores")
    scores = scores.detach()
    num_classes = scores.shape[1]
    if scores.shape[0] * math.prod(scores.shape[2:]) == 0:
        raise ValueError("the input is empty: a metric needs at least one sample")
    if num_classes == 0:
        raise ValueError(f"scores have no classes: shape {tuple(scores.shape)} has C = 0")
    tolerance = probability_tolerance(num_classes, scores.dtype)
    if scores.dim() > 2:
        scores = scores.movedim(1, -1).reshape(-1, num_classes)
    if scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()
    if from_probs:
        _check_probabilities(scores, tolerance)
    else:
        _check_logits(scores, tolerance)
    return scores


def checked(scores: TensorLike, labels: TensorLike, from_probs: bool) -> tuple[Tensor, Tensor]:
    """Check ``(scores, labels)`` and return them flattened to ``(M, C)`` and ``(M,)``.

    ``scores`` as in :func:`checked_scores`. ``labels`` are class indices ``(N)`` or
    ``(N, d1, ...)``. The class count ``C`` comes from the scores' shape, never from the labels.
    """
    scores, labels = as_tensor(scores, "scores"), as_tensor(labels, "labels")
    flat = checked_scores(scores, from_probs)
    check_class_indices(scores, labels, ("scores", "labels"))
    num_classes = flat.shape[1]
    labels = labels.reshape(-1).long()
    low, high = torch.aminmax(labels)
    if int(low) < 0 or int(high) >= num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes}) (the class count comes from the scores' "
            f"shape), got min {int(low)}, max {int(high)}"
        )
    return flat, labels


def probabilities_of(scores: Tensor, from_probs: bool) -> Tensor:
    """The probabilities of checked ``(M, C)`` scores, computed one way for every metric: for
    logits, into the thread's :class:`Scratch` buffer ``"probs"``, valid until the next call."""
    return scores if from_probs else softmax(scores, out=Scratch.local().get("probs", scores))


FEW_CLASSES = 32
"""Below this many classes :func:`softmax` is written out: torch's CPU softmax over the last
dimension costs up to 6x more there (17 ns a value at C = 10, against 1 ns at C >= 32)."""


def softmax(logits: Tensor, out: Tensor | None = None) -> Tensor:
    """The softmax over dim 1 of ``(M, C)`` logits (into ``out`` if given): the one softmax of
    every metric and of temperature scaling's ECE grid, so they agree to the last bit. Torch's
    where it is fast; on the CPU below :data:`FEW_CLASSES` classes exp(z − max z) / Σ."""
    if logits.shape[1] >= FEW_CLASSES or logits.device.type != "cpu":
        return torch.softmax(logits, dim=1) if out is None else torch.softmax(logits, 1, out=out)
    out = torch.sub(logits, logits.amax(dim=1, keepdim=True), out=out).exp_()
    return out.div_(out.sum(dim=1, keepdim=True))


def top_label(scores: TensorLike, labels: TensorLike, from_probs: bool) -> tuple[Tensor, Tensor]:
    """Checked top-label ``(confidence (M,), correct (M,) bool)``; see :func:`checked` and
    :func:`top_label_of`. The probabilities are computed :data:`CHUNK_ELEMENTS` at a time into
    one :class:`Scratch` buffer, never a fresh ``(M, C)`` tensor (whose pages cost as much as
    the softmax), and which stays in cache."""
    flat, labels = checked(scores, labels, from_probs)
    confidence = flat.new_empty(len(labels))
    correct = torch.empty(len(labels), dtype=torch.bool, device=flat.device)
    chunks = row_chunks(flat, labels)
    if len(chunks) == 1:  # no slices to write through (a few µs, much at small sizes)
        return _top_label_chunk(flat, labels, from_probs, confidence, correct)
    start = 0
    for chunk, chunk_labels in chunks:
        stop = start + len(chunk_labels)
        _top_label_chunk(
            chunk, chunk_labels, from_probs, confidence[start:stop], correct[start:stop]
        )
        start = stop
    return confidence, correct


def _top_label_chunk(
    scores: Tensor, labels: Tensor, from_probs: bool, confidence: Tensor, correct: Tensor
) -> tuple[Tensor, Tensor]:
    """:func:`top_label` of one chunk of rows, into ``confidence`` and ``correct``."""
    probs = Scratch.local().get("probs", scores)
    if not from_probs and scores.device.type == "cpu" and scores.shape[1] < FEW_CLASSES:
        # :func:`softmax` written out: its largest probability is exp(0) / Σ = 1 / Σ, so no
        # division pass, and the row maxima come with the prediction
        top, prediction = scores.max(dim=1, keepdim=True)
        torch.reciprocal(torch.sub(scores, top, out=probs).exp_().sum(dim=1), out=confidence)
        return confidence, torch.eq(prediction.squeeze(1), labels, out=correct)
    if from_probs:
        probs.copy_(scores)
    else:
        softmax(scores, out=probs)
    return top_label_of(scores, probs, labels, confidence, correct, False)


def top_label_of(
    scores: Tensor,
    probs: Tensor,
    labels: Tensor,
    confidence: Tensor | None = None,
    correct: Tensor | None = None,
    keep_probs: bool = True,
) -> tuple[Tensor, Tensor]:
    """``(confidence, correct)`` of checked ``(M, C)`` scores and their probabilities (into
    ``confidence`` and ``correct`` if given): the confidence is the largest probability; the
    prediction is the argmax of the scores (for logits the exact argmax, where rounded
    probabilities may tie; the first index on ties). Every metric and the accumulator use
    this, so they agree bit for bit.

    On the CPU from :data:`FEW_CLASSES` classes, where ``max(dim=1)``'s indices cost more
    than the softmax, the prediction is read from the probabilities instead: with p_y the
    label's probability and q the largest of the others (``probs`` is changed to find it, and
    restored unless ``keep_probs=False``; probabilities given are copied first), the label is
    the prediction where p_y > q and is not where p_y < q, for probabilities are
    non-decreasing in the logits. The rows where p_y and q lie within 2^-20 of each other
    (ties, and gaps that a kernel's exp could misorder) take the exact argmax of their
    scores."""
    if confidence is None:
        confidence = probs.new_empty(len(labels))
    if correct is None:
        correct = torch.empty(len(labels), dtype=torch.bool, device=probs.device)
    if probs.device.type != "cpu" or probs.shape[1] < FEW_CLASSES:
        torch.amax(probs, dim=1, out=confidence)
        return confidence, torch.eq(scores.max(dim=1).indices, labels, out=correct)
    if probs.data_ptr() == scores.data_ptr() or not probs.is_contiguous():
        probs = probs.clone(memory_format=torch.contiguous_format)  # never write into input
    own, others = label_and_others(probs, labels, restore=keep_probs)
    torch.maximum(own, others, out=confidence)  # the largest probability, one pass fewer
    torch.gt(own, others, out=correct)
    # |own − others| <= 2^-20 · others, as isclose(rtol=2^-20, atol=0) but in two passes
    tied = (own - others).abs_().le_(others * 2**-20).nonzero().squeeze(1)
    if len(tied):
        correct[tied] = scores[tied].max(dim=1).indices == labels[tied]
    return confidence, correct


def label_and_others(values: Tensor, labels: Tensor, restore: bool) -> tuple[Tensor, Tensor]:
    """Each row's value at its label and the largest of its other values, for contiguous
    ``(M, C)`` values: the labels' entries are set to −inf to find the others, and put back if
    ``restore``."""
    rows, num_classes = values.shape
    at = torch.arange(0, rows * num_classes, num_classes, device=values.device).add_(labels)
    flat = values.view(-1)  # index_fill_ on the flat view: half the time of scatter_ (2 threads)
    own = flat[at]
    others = flat.index_fill_(0, at, -math.inf).view(rows, num_classes).amax(dim=1)
    if restore:
        flat[at] = own
    return own, others


def _check_logits(logits: Tensor, tolerance: float) -> None:
    """Finite, and not softmax output. The sum (one fast pass; only NaN, inf or overflow fail
    it) and the first row's minimum are read back together: one host synchronisation. Only
    where that row has no negative value is its distance from a distribution measured (see
    :func:`~focalcal._checks.looks_like_probabilities`), and only where it is a distribution
    the whole tensor's."""
    row = first_row(logits)
    checks = [logits.sum()]
    if logits.shape[1] >= 2:  # with one class, every row of logits "sums to 1"
        checks.append(row.amin())
    total, *low = torch.stack(checks).tolist()
    if not math.isfinite(total):
        nan, inf = int(logits.isnan().sum()), int(logits.isinf().sum())
        if nan or inf:
            raise ValueError(
                f"logits hold {nan} NaN and {inf} infinite value(s); pass probabilities with "
                "from_probs=True to give a class probability 0"
            )
    if (
        low
        and low[0] >= 0  # NaN: no
        and float(distribution_gap(row.unsqueeze(0), tolerance)) <= 0
        and float(distribution_gap(logits, tolerance)) <= 0
    ):
        message = PROBABILITIES_AS_LOGITS.format(name="scores")
        raise ValueError(f"{message}; pass probabilities with from_probs=True")


def _check_probabilities(probs: Tensor, tolerance: float) -> None:
    low, high = (float(v) for v in torch.aminmax(probs))  # NaN propagates to both
    if math.isnan(low) or math.isnan(high):
        raise ValueError("probabilities hold NaN")
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"probabilities must lie in [0, 1], got min {low:.6g}, max {high:.6g}: "
            "are these logits? (then leave from_probs=False)"
        )
    worst = float((probs.sum(dim=1) - 1.0).abs().max())
    if worst > tolerance:
        raise ValueError(
            f"probabilities must sum to 1 over the classes (dim 1): a row is off by {worst:.3g} "
            f"(tolerance {tolerance:.1g}); are these logits? (then leave from_probs=False)"
        )
