"""Out-of-distribution (OOD) detection: per-sample uncertainty scores and the AUROC of them.

OOD is the **positive** class and a **higher** score means more OOD-like. The paper (Mukhoti et
al. 2020) scores the in-distribution test set and an OOD test set (SVHN, CIFAR-10-C) by softmax
entropy and reports the area under the ROC curve: :func:`ood_auroc`. The false-positive rate
at 95 % true-positive rate (:func:`ood_fpr_at_tpr`, Hendrycks & Gimpel 2017) reads the same
scores the other way round, the in-distribution samples being the positives.

The curve and its area come from one sort of the pooled scores and cumulative counts of each
set at every distinct score, kept as integers, so the area is exact up to one final division:
O(M log M) for M = N_in + N_out samples, no loop over samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from focalcal._checks import TensorLike, as_tensor
from focalcal.metrics._inputs import checked_scores


def entropy(scores: TensorLike, from_probs: bool = False) -> Tensor:
    r"""Softmax entropy of every sample, in nats: :math:`H_i = -\sum_k p_{ik} \ln p_{ik}`,
    with :math:`0 \ln 0 = 0`; between 0 (one-hot) and :math:`\ln C` (uniform).

    ``scores``: logits ``(N, C)`` or ``(N, C, d1, ...)`` (every position is a sample) or, with
    ``from_probs=True``, probabilities. From logits :math:`\ln p` comes from ``log_softmax``, so
    the entropy is finite for every finite logit. Returns ``(M,)`` with ``M = N·d1·…`` in the
    row-major order of ``(N, d1, ...)``, in the scores' dtype (float32 for half precision).

    Example:
        >>> import torch
        >>> entropy(torch.tensor([[0.0, 0.0], [0.0, 1e4]]))
        tensor([0.6931, 0.0000])
        >>> entropy(torch.tensor([[0.5, 0.5, 0.0]]), from_probs=True)
        tensor([0.6931])
    """
    return _entropy(checked_scores(scores, from_probs), from_probs)


def max_confidence(scores: TensorLike, from_probs: bool = False) -> Tensor:
    r"""Top-label confidence of every sample: :math:`c_i = \max_k p_{ik}`.

    ``scores`` as in :func:`entropy`; returns ``(M,)``. From logits it is
    :math:`1 / \sum_k \exp(z_k - \max_j z_j)`, accurate for logits of any magnitude.

    Example:
        >>> import torch
        >>> max_confidence(torch.tensor([[0.0, 0.0], [0.0, 1e4]]))
        tensor([0.5000, 1.0000])
    """
    return _max_confidence(checked_scores(scores, from_probs), from_probs)


def roc_curve(in_scores: TensorLike, out_scores: TensorLike) -> tuple[Tensor, Tensor, Tensor]:
    r"""ROC curve of telling ``out_scores`` (positive) from ``in_scores`` (negative).

    ``in_scores`` ``(N_in,)`` and ``out_scores`` ``(N_out,)`` are finite floating-point scores,
    higher meaning more OOD-like. Point ``k`` flags every sample with score
    :math:`\ge t_k`: :math:`\mathrm{FPR}_k = \#\{s_{in} \ge t_k\} / N_{in}` and
    :math:`\mathrm{TPR}_k = \#\{s_{out} \ge t_k\} / N_{out}`. There is one point per distinct
    score (tied scores form one step) plus a first point at :math:`t_0 = +\infty`, so the curve
    starts at (0, 0) and ends at (1, 1).

    Returns ``(fpr, tpr, thresholds)``, each of length (number of distinct scores + 1):
    ``fpr`` and ``tpr`` float64, non-decreasing; ``thresholds`` strictly decreasing, in the
    scores' (promoted) dtype.

    Example:
        >>> import torch
        >>> fpr, tpr, thresholds = roc_curve(torch.tensor([0.1, 0.4]), torch.tensor([0.9, 0.4]))
        >>> fpr
        tensor([0.0000, 0.0000, 0.5000, 1.0000], dtype=torch.float64)
        >>> tpr
        tensor([0.0000, 0.5000, 1.0000, 1.0000], dtype=torch.float64)
        >>> thresholds
        tensor([   inf, 0.9000, 0.4000, 0.1000])
    """
    in_scores, out_scores = _checked_pair(in_scores, out_scores)
    false_positives, true_positives, thresholds = _cumulative_counts(in_scores, out_scores)
    fpr = false_positives.double() / in_scores.numel()
    tpr = true_positives.double() / out_scores.numel()
    return fpr, tpr, thresholds


def auroc(in_scores: TensorLike, out_scores: TensorLike) -> Tensor:
    r"""Area under :func:`roc_curve` (trapezoids across ties), OOD being the positive class:

    .. math:: \mathrm{AUROC} = P(s_{out} > s_{in}) + \tfrac12 P(s_{out} = s_{in}),

    the Mann–Whitney statistic over all :math:`N_{in} N_{out}` pairs, computed in
    O(M log M). 1 when every OOD score is above every in-distribution score, 0.5 for
    indistinguishable scores. ``in_scores`` ``(N_in,)``, ``out_scores`` ``(N_out,)``; returns a
    0-d float64 tensor on their device. Depends only on the order of the scores.

    Example:
        >>> import torch
        >>> auroc(torch.tensor([0.1, 0.4, 0.35]), torch.tensor([0.8, 0.4, 0.3]))
        tensor(0.7222, dtype=torch.float64)
    """
    in_scores, out_scores = _checked_pair(in_scores, out_scores)
    return _auroc(in_scores, out_scores)


def fpr_at_tpr(in_scores: TensorLike, out_scores: TensorLike, tpr: float = 0.95) -> Tensor:
    r"""False-positive rate at a true-positive rate of ``tpr`` (FPR at 95 % TPR by default),
    the **in-distribution** samples being the positives; lower is better.

    ``in_scores`` ``(N_in,)`` and ``out_scores`` ``(N_out,)`` as in :func:`auroc`: higher means
    more OOD-like. A sample is taken as in-distribution when its score is at most a threshold
    :math:`t`; :math:`t` is the smallest score that takes at least ``tpr`` of the
    in-distribution samples, the :math:`k`-th smallest of them with
    :math:`k = \min\{k : k / N_{in} \ge \mathrm{tpr}\}` (a float64 comparison, as a ROC
    curve computes its rates), and

    .. math:: \mathrm{FPR} = \#\{s_{out} \le t\} / N_{out}.

    Ties are conservative: OOD samples tied with :math:`t` count as false positives, as do
    in-distribution ones tied with it as true positives (one threshold, one step of the curve).
    This is the FPR of the first point of ``sklearn.metrics.roc_curve(in-distribution = 1,
    -scores)`` whose TPR reaches ``tpr``. ``tpr`` in (0, 1]; returns a 0-d float64 tensor on the
    scores' device.

    Example:
        >>> import torch
        >>> in_scores = torch.arange(20.0)  # t = 18, the 19th smallest: 19 / 20 = 95 %
        >>> fpr_at_tpr(in_scores, torch.tensor([18.0, 18.5, 25.0, 30.0]))
        tensor(0.2500, dtype=torch.float64)
    """
    tpr = _checked_tpr(tpr)
    in_scores, out_scores = _checked_pair(in_scores, out_scores)
    return _fpr_at_tpr(in_scores, out_scores, tpr)


OODScore = Literal["entropy", "confidence"]


def ood_auroc(
    in_logits: TensorLike,
    out_logits: TensorLike,
    score: OODScore = "entropy",
    from_probs: bool = False,
) -> Tensor:
    r"""AUROC of detecting ``out_logits`` samples among ``in_logits`` ones by an uncertainty score.

    ``in_logits`` ``(N_in, C, ...)`` and ``out_logits`` ``(N_out, C, ...)``: the same classifier's
    logits (or probabilities with ``from_probs=True``) on the in-distribution test set and on an
    OOD set, with the same class count ``C``. ``score="entropy"`` (the paper's choice) scores a
    sample by its softmax entropy :math:`H`; ``score="confidence"`` by :math:`-\max_k p_k`; in
    both a higher score means more OOD-like. Returns :func:`auroc` of the two sets of scores.

    Example:
        >>> import torch
        >>> confident = torch.tensor([[4.0, 0.0, 0.0], [0.0, 5.0, 1.0]])
        >>> flat = torch.tensor([[0.2, 0.0, 0.1], [1.0, 0.9, 1.1], [4.0, 0.0, 0.0]])
        >>> ood_auroc(confident, flat)
        tensor(0.9167, dtype=torch.float64)
        >>> ood_auroc(confident, flat, score="confidence")
        tensor(0.9167, dtype=torch.float64)
    """
    return _auroc(*ood_scores(in_logits, out_logits, score, from_probs))


def ood_fpr_at_tpr(
    in_logits: TensorLike,
    out_logits: TensorLike,
    score: OODScore = "entropy",
    tpr: float = 0.95,
    from_probs: bool = False,
) -> Tensor:
    r"""FPR at ``tpr`` TPR (:func:`fpr_at_tpr`) of keeping the ``in_logits`` samples
    (positives) and rejecting the ``out_logits`` ones by an uncertainty score: the fraction
    of OOD samples taken as in-distribution when ``tpr`` of the in-distribution ones are.

    Inputs and ``score`` as in :func:`ood_auroc`: ``"entropy"`` keeps a sample whose softmax
    entropy is at most a threshold, ``"confidence"`` one whose :math:`\max_k p_k` is at least
    one (ties with the threshold kept). Returns a 0-d float64 tensor.

    Example:
        >>> import torch
        >>> confident = torch.tensor([[4.0, 0.0, 0.0], [0.0, 5.0, 1.0]])
        >>> flat = torch.tensor([[0.2, 0.0, 0.1], [1.0, 0.9, 1.1], [4.0, 0.0, 0.0]])
        >>> ood_fpr_at_tpr(confident, flat)  # the third OOD sample is as sure as the first
        tensor(0.3333, dtype=torch.float64)
    """
    tpr = _checked_tpr(tpr)
    return _fpr_at_tpr(*ood_scores(in_logits, out_logits, score, from_probs), tpr)


def ood_scores(
    in_logits: TensorLike,
    out_logits: TensorLike,
    score: OODScore = "entropy",
    from_probs: bool = False,
) -> tuple[Tensor, Tensor]:
    """The per-sample ``score`` of both sets (higher: more OOD-like, as :func:`auroc` and
    :func:`fpr_at_tpr` read them), checked to come from one classifier: what
    :func:`ood_auroc` and :func:`ood_fpr_at_tpr` compute, for computing both from one pass.

    Example:
        >>> import torch
        >>> ood_scores(torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 0.0]]), "confidence")
        (tensor([-0.9820]), tensor([-0.5000]))
    """
    if score not in _OOD_SCORES:
        raise ValueError(f"score must be one of {sorted(_OOD_SCORES)}, got {score!r}")
    names = ("in_logits", "out_logits")
    if isinstance(in_logits, Tensor) and isinstance(out_logits, Tensor):
        _check_same_device(in_logits, out_logits, names)
    flat = []
    for name, logits in zip(names, (in_logits, out_logits), strict=True):
        try:
            flat.append(checked_scores(logits, from_probs))
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
    if flat[0].shape[1] != flat[1].shape[1]:
        raise ValueError(
            f"in_logits have {flat[0].shape[1]} classes but out_logits have {flat[1].shape[1]}: "
            "both must come from the same classifier"
        )
    to_score = _OOD_SCORES[score]
    return to_score(flat[0], from_probs), to_score(flat[1], from_probs)


def _entropy(scores: Tensor, from_probs: bool) -> Tensor:
    if from_probs:
        terms: Tensor = torch.special.entr(scores)  # -p ln p, 0 at p = 0
    else:
        # exp(log p) underflows to exactly 0 where log p is very negative, and 0·(finite) = 0;
        # log p itself is -inf where a logit's distance to the largest overflows (-3e38 and
        # 3e38 in float32), so it is clamped to the dtype's finite range, which changes no p
        log_probs = torch.log_softmax(scores, dim=1).clamp_min(torch.finfo(scores.dtype).min)
        terms = log_probs.exp() * -log_probs
    # The exact entropy lies in [0, ln C]; the rounded sum of C terms can leave that range by a
    # few ulps (a uniform row), in either direction depending on the kernel's summation order
    return terms.sum(dim=1).clamp_(0.0, math.log(scores.shape[1]))


def _max_confidence(scores: Tensor, from_probs: bool) -> Tensor:
    top = scores.amax(dim=1, keepdim=True)
    if from_probs:
        return top.squeeze(1)
    # not exp(max - logsumexp): logsumexp is rounded at the logits' magnitude (1e-3 at 1e4)
    return (scores - top).exp().sum(dim=1).reciprocal()


_OOD_SCORES: dict[str, Callable[[Tensor, bool], Tensor]] = {
    "entropy": _entropy,
    "confidence": lambda scores, from_probs: -_max_confidence(scores, from_probs),
}


def _check_same_device(first: Tensor, second: Tensor, names: tuple[str, str]) -> None:
    if first.device != second.device:
        raise ValueError(f"{names[0]} are on {first.device} but {names[1]} are on {second.device}")


def _checked_pair(in_scores: TensorLike, out_scores: TensorLike) -> tuple[Tensor, Tensor]:
    """Check two sets of per-sample scores: floating point, 1-D, non-empty, finite; detached."""
    names = ("in_scores", "out_scores")
    in_scores, out_scores = as_tensor(in_scores, names[0]), as_tensor(out_scores, names[1])
    pair = (in_scores, out_scores)
    for name, scores in zip(names, pair, strict=True):
        if not scores.is_floating_point():
            got = scores.dtype if isinstance(scores, Tensor) else type(scores).__name__
            raise ValueError(f"{name} must be a floating-point tensor, got {got}")
        if scores.dim() != 1:
            raise ValueError(
                f"{name} must be 1-D (one score per sample), got shape {tuple(scores.shape)}"
            )
        if scores.numel() == 0:
            raise ValueError(
                f"{name} is empty: OOD detection needs at least one in- and one "
                "out-of-distribution sample"
            )
    _check_same_device(in_scores, out_scores, names)
    for name, scores in zip(names, pair, strict=True):
        if not scores.isfinite().all():
            nan, inf = int(scores.isnan().sum()), int(scores.isinf().sum())
            raise ValueError(f"{name} hold {nan} NaN and {inf} infinite value(s)")
    return in_scores.detach(), out_scores.detach()


def _cumulative_counts(in_scores: Tensor, out_scores: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(false positives, true positives) as int64 at +inf and then at every distinct score in
    decreasing order, with those thresholds: the counts of in- and OOD scores >= threshold."""
    num_out = out_scores.numel()
    ranked, order = torch.cat([out_scores, in_scores]).sort(descending=True)
    is_out = order < num_out
    # the last position of each run of equal scores closes one step of the curve
    closes_step = torch.ones_like(is_out)
    closes_step[:-1] = ranked[1:] != ranked[:-1]
    seen = torch.arange(1, ranked.numel() + 1, device=ranked.device)[closes_step]
    true_positives = is_out.cumsum(0)[closes_step]
    zero = torch.zeros(1, dtype=torch.long, device=ranked.device)
    start = torch.full((1,), float("inf"), dtype=ranked.dtype, device=ranked.device)
    return (
        torch.cat([zero, seen - true_positives]),
        torch.cat([zero, true_positives]),
        torch.cat([start, ranked[closes_step]]),
    )


def _auroc(in_scores: Tensor, out_scores: Tensor) -> Tensor:
    false_positives, true_positives, _ = _cumulative_counts(in_scores, out_scores)
    # twice the area in units of 1 / (N_in N_out): Σ Δfp · (tp_k + tp_{k+1}), an exact integer
    twice_area = (false_positives.diff() * (true_positives[1:] + true_positives[:-1])).sum()
    return twice_area.double() / (2 * in_scores.numel() * out_scores.numel())


def _checked_tpr(tpr: float) -> float:
    if not (isinstance(tpr, (int, float)) and not isinstance(tpr, bool) and 0 < tpr <= 1):
        raise ValueError(f"tpr must be a number in (0, 1], got {tpr!r}")
    return float(tpr)


def _fpr_at_tpr(in_scores: Tensor, out_scores: Tensor, tpr: float) -> Tensor:
    count = in_scores.numel()
    # the least k with k / N >= tpr as float64 division, so that it agrees with a ROC curve's
    # rates; floor(tpr·N) - 1 starts below it whatever the rounding of tpr·N
    k = next(k for k in range(max(1, math.floor(tpr * count) - 1), count + 1) if k / count >= tpr)
    threshold = in_scores.kthvalue(k).values
    return (out_scores <= threshold).sum().double() / out_scores.numel()
