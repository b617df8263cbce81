"""Post-hoc maps that recalibrate each class's probability on its own, then renormalise:

- :class:`Histogram` (``"histogram"``) — histogram binning, one-vs-rest (Zadrozny & Elkan 2001).
- :class:`TopLabelHistogram` (``"top-label-histogram"``) — histogram binning of the top-label
  confidence per predicted class (Gupta & Ramdas, ICLR 2022).
- :class:`Isotonic` (``"isotonic"``) — isotonic regression, one-vs-rest (Zadrozny & Elkan 2002).
- :class:`Beta` (``"beta"``) — beta calibration, one-vs-rest (Kull, Silva Filho & Flach 2017).

All of them read p = softmax(z) in float64. The binned and isotonic values are frequencies, which
may be 0 or 1 (and a bin may be empty): before the logarithm every such value is clamped to
[:data:`PROBABILITY_FLOOR`, 1 − :data:`PROBABILITY_FLOOR`] = [1e-6, 1 − 1e-6], so a sample of a
class never seen in its bin costs at most −ln 1e-6 ≈ 13.8 nats and every log-probability is
finite. One-vs-rest values q_k are renormalised, ``log q_k − logsumexp_j log q_j``; with a single
class every map returns log 1 = 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from focalcal.metrics._inputs import check_num_bins
from focalcal.metrics.binning import Bins, equal_width_index, histogram
from focalcal.scaling.calibrators import Calibrator, register

PROBABILITY_FLOOR = 1e-6  # binned and isotonic frequencies are clamped to [this, 1 - this]
BETA_CLIP = 2.0**-52  # beta calibration's p is clipped to [this, 1 - this], as in ``betacal``
_NEWTON_ITERATIONS = 100  # beta calibration: at most this many Newton steps per fit,
_DECREMENT_TOLERANCE = 1e-12  # stopping once half the squared Newton decrement is below this
_HALVINGS = 30  # of the Newton step, until the NLL falls enough (Armijo, slope 1/4)
_FACES = ([1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 1.0])  # free (a, b, c)


def _normalised(log_q: Tensor) -> Tensor:
    """One-vs-rest log-values ``(M, C)`` renormalised over the classes."""
    return log_q - torch.logsumexp(log_q, dim=1, keepdim=True)


def _clamped_log(q: Tensor) -> Tensor:
    return q.clamp(PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR).log()


def _log_complement(log_p: Tensor) -> Tensor:
    """``log(1 − p)`` of log-probabilities ``(M, C)``, accurate where p nears 1: ``log1p(−p)``
    for every class but the row's top one (p ≤ 1/2 there), the log of the other classes' sum
    for the top one (−inf for a single class)."""
    top = log_p.argmax(dim=1, keepdim=True)
    rest = torch.logsumexp(log_p.scatter(1, top, -math.inf), dim=1, keepdim=True)
    return torch.log1p(-log_p.exp()).scatter_(1, top, rest)


def _table(name: str, value: Tensor | None, shape: tuple[int, ...], default: float) -> Tensor:
    """A finite float64 copy of a constructor's tensor of this ``shape`` (``default`` where
    ``None``), or a ``ValueError`` naming it."""
    if value is None:
        return torch.full(shape, default, dtype=torch.float64)
    if not isinstance(value, Tensor) or value.dtype == torch.bool or value.is_complex():
        got = value.dtype if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{name} must be a tensor of real numbers, got {got}")
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")
    value = value.detach().to(torch.float64, copy=True)
    if not bool(value.isfinite().all()):
        raise ValueError(f"{name} must be finite")
    return value


class _Binned(Calibrator):
    """A table of per-bin ``counts`` and ``positives`` ``(C, B)`` over equal-width bins of
    [0, 1], read by :func:`~focalcal.metrics.binning.equal_width_index` (the metrics' bins:
    ``(b/B, (b+1)/B]``, 0 in the first). A bin's value is its frequency ``positives / counts``;
    an empty bin's is its centre ``(b + 1/2) / B``."""

    counts: Tensor
    positives: Tensor

    def __init__(
        self,
        num_classes: int,
        num_bins: int = 15,
        counts: Tensor | None = None,
        positives: Tensor | None = None,
    ) -> None:
        super().__init__(num_classes)
        check_num_bins(num_bins)
        self.num_bins = num_bins
        shape = (num_classes, num_bins)
        self.register_buffer("counts", _table("counts", counts, shape, 0.0))
        self.register_buffer("positives", _table("positives", positives, shape, 0.0))
        whole = bool((self.counts == self.counts.round()).all())
        whole &= bool((self.positives == self.positives.round()).all())
        if not whole or not bool(((self.positives >= 0) & (self.positives <= self.counts)).all()):
            raise ValueError("counts and positives must be whole numbers, 0 <= positives <= counts")

    def frequencies(self) -> Tensor:
        """The value of every bin, ``(C, B)`` float64: its frequency, or its centre if empty."""
        centres = (torch.arange(self.num_bins, dtype=torch.float64) + 0.5) / self.num_bins
        centres = centres.to(self.counts.device).expand_as(self.counts)
        return torch.where(self.counts > 0, self.positives / self.counts.clamp_min(1), centres)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "num_bins": self.num_bins}

    def summary(self) -> dict[str, Any]:
        return {"empty_bins": int((self.counts == 0).sum())}


@register
class Histogram(_Binned):
    """Histogram binning one-vs-rest (Zadrozny & Elkan 2001; Guo et al. 2017's multiclass
    form): for each class k, the ``num_bins`` equal-width bins of p_k = softmax(z)_k (as the
    Classwise-ECE bins them: :meth:`~focalcal.metrics.binning.Bins.classwise`); the calibrated
    q_k is the frequency of y = k among the validation samples in p_k's bin (an empty bin's
    centre where none fell), clamped to [1e-6, 1 − 1e-6], and the q_k are renormalised over
    the classes. The map is piecewise constant in each p_k and may change the argmax.

    Example:
        >>> import torch
        >>> from focalcal.scaling import fit_calibrator
        >>> logits = torch.tensor([[2.0, 0.0]] * 4)  # p = (0.88, 0.12)
        >>> labels = torch.tensor([0, 0, 0, 1])  # class 0 in 3 / 4, class 1 in 1 / 4
        >>> binning = fit_calibrator("histogram", logits, labels)
        >>> binning.transform(logits).exp()[0]
        tensor([0.7500, 0.2500], dtype=torch.float64)
    """

    name = "histogram"
    reference = (
        "Zadrozny, Elkan. Obtaining calibrated probability estimates from decision trees and "
        "naive Bayesian classifiers. ICML 2001"
    )

    @classmethod
    def fit(  # type: ignore[override]  # a method takes its own options
        cls, scores: Tensor, labels: Tensor, num_bins: int = 15
    ) -> Histogram:
        check_num_bins(num_bins)
        bins = Bins.classwise(torch.softmax(scores.double(), dim=1), labels, num_bins)
        return cls(scores.shape[1], num_bins, bins.count, bins.correct)

    def _transform(self, scores: Tensor) -> Tensor:
        index = equal_width_index(torch.softmax(scores, dim=1), self.num_bins).long()
        q = self.frequencies().to(scores.device).T.gather(0, index)  # q[i, k] = f[k, index[i, k]]
        return _normalised(_clamped_log(q))


@register
class TopLabelHistogram(_Binned):
    """Top-label histogram binning (Gupta & Ramdas, ICLR 2022): the prediction is the argmax
    of the logits (the first on ties, as in the metrics) and its confidence c = max_k p_k; for
    each predicted class j, ``num_bins`` equal-width bins of c over the validation samples
    predicted j. The predicted class gets its bin's accuracy a (the frequency of y = j; an empty
    bin's centre), clamped to [1e-6, 1 − 1e-6]; the other classes share 1 − a in proportion to
    their probabilities, ``q_k = (1 − a) p_k / (1 − p_j)``, computed in log space (so finite
    however small p_k). The argmax changes where some q_k > a (only if a < 1/2): a metric
    reading the argmax of the output then sees another prediction, whose confidence this map
    did not calibrate (on logits 3× over-confident, 5 classes, a fifth of the rows).

    Example:
        >>> import torch
        >>> from focalcal.scaling import fit_calibrator
        >>> logits = torch.tensor([[2.0, 1.0, 0.0]] * 4)
        >>> labels = torch.tensor([0, 0, 0, 1])  # the prediction, 0, is right 3 times in 4
        >>> binning = fit_calibrator("top-label-histogram", logits, labels)
        >>> binning.transform(logits).exp()[0]  # 0.25 shared e : 1, as p_1 : p_2
        tensor([0.7500, 0.1828, 0.0672], dtype=torch.float64)
    """

    name = "top-label-histogram"
    reference = (
        "Gupta, Ramdas. Top-label calibration and multiclass-to-binary reductions. ICLR 2022"
    )

    @classmethod
    def fit(  # type: ignore[override]  # a method takes its own options
        cls, scores: Tensor, labels: Tensor, num_bins: int = 15
    ) -> TopLabelHistogram:
        check_num_bins(num_bins)
        num_classes = scores.shape[1]
        confidence, prediction = _top_label(scores.double())
        index = equal_width_index(confidence, num_bins).long() + prediction * num_bins
        size, shape = num_classes * num_bins, (num_classes, num_bins)
        counts = histogram(index, size).view(shape)
        positives = histogram(index, size, (prediction == labels).double()).view(shape)
        return cls(num_classes, num_bins, counts, positives)

    def _transform(self, scores: Tensor) -> Tensor:
        confidence, prediction = _top_label(scores)
        index = equal_width_index(confidence, self.num_bins).long()
        accuracy = self.frequencies().to(scores.device)[prediction, index].unsqueeze(1)
        accuracy = accuracy.clamp(PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
        log_p, rows = torch.log_softmax(scores, dim=1), prediction.unsqueeze(1)
        rest = _log_complement(log_p).gather(1, rows)  # log(1 − p_j)
        log_q = (log_p - rest + torch.log1p(-accuracy)).scatter_(1, rows, accuracy.log())
        return _normalised(log_q)  # sums to 1 already, up to rounding (and for C = 1)


def _top_label(scores: Tensor) -> tuple[Tensor, Tensor]:
    """``(max_k softmax(z)_k, argmax_k z_k)`` of float64 logits ``(M, C)``."""
    return torch.softmax(scores, dim=1).amax(dim=1), scores.argmax(dim=1)


@register
class Isotonic(Calibrator):
    """Isotonic regression one-vs-rest (Zadrozny & Elkan 2002): for each class k, the
    non-decreasing fit to the pairs (p_k, 1[y = k]) of the validation samples that minimises
    the squared error, by pool-adjacent-violators; equal p_k are one point with their mean
    label, as in scikit-learn's ``IsotonicRegression`` (which also merges p_k closer than
    1e-15 apart; here only exact ties). Stored as each class's fitted points, the two ends of
    every constant piece (``x_thresholds``, ``y_thresholds`` ``(C, K)``, a row shorter than K
    padded with its last point). A new p_k is clipped to the class's fitted range and
    interpolated linearly between its neighbouring points, as ``IsotonicRegression(
    out_of_bounds="clip")`` predicts; the values are clamped to [1e-6, 1 − 1e-6] and
    renormalised over the classes.

    The fit sorts each class (O(M log M)), then pools in rounds over all classes at once: each
    round merges every run of adjacent blocks whose means do not increase (a run of adjacent
    violators pools to the same answer as pooling them pair by pair), until the means increase
    within each class, each round O(M) tensor work. Random labels take about log M rounds (12
    for 100 000 samples × 10 classes, where the sort costs more than the pooling); contrived
    means take more (≈450 rounds, under a second, for the means n, 0, 1, …, n − 2 of
    n = 10^5 points, which 0/1 labels reach only through ties).

    Example:
        >>> import torch
        >>> from focalcal.scaling import fit_calibrator
        >>> logits = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]])
        >>> labels = torch.tensor([0, 1, 0, 0])  # class 0: 1, 0, 1, 1 as p_0 grows
        >>> isotonic = fit_calibrator("isotonic", logits, labels)
        >>> isotonic.y_thresholds[0]  # 1 and 0 pool to 1/2; the others stay 1
        tensor([0.5000, 0.5000, 1.0000, 1.0000], dtype=torch.float64)
    """

    name = "isotonic"
    reference = (
        "Zadrozny, Elkan. Transforming classifier scores into accurate multiclass probability "
        "estimates. KDD 2002"
    )
    x_thresholds: Tensor
    y_thresholds: Tensor

    def __init__(
        self,
        num_classes: int,
        x_thresholds: Tensor | None = None,
        y_thresholds: Tensor | None = None,
    ) -> None:
        super().__init__(num_classes)
        if x_thresholds is None and y_thresholds is None:  # the identity on [0, 1]
            x_thresholds = y_thresholds = torch.tensor([0.0, 1.0]).repeat(num_classes, 1)
        if x_thresholds is None or y_thresholds is None:
            raise ValueError("give both x_thresholds and y_thresholds, or neither")
        width = x_thresholds.shape[-1] if isinstance(x_thresholds, Tensor) else 0
        shape = (num_classes, max(width, 1))
        x = _table("x_thresholds", x_thresholds, shape, 0.0)
        y = _table("y_thresholds", y_thresholds, shape, 0.0)
        ordered = bool((x.diff(dim=1) >= 0).all() & (y.diff(dim=1) >= 0).all())
        if not ordered or not bool(((y >= 0) & (y <= 1)).all()):
            raise ValueError(
                "x_thresholds and y_thresholds must be non-decreasing along each row, "
                "y_thresholds within [0, 1]"
            )
        self.register_buffer("x_thresholds", x)
        self.register_buffer("y_thresholds", y)

    @classmethod
    def fit(  # type: ignore[override]  # a method takes no options
        cls, scores: Tensor, labels: Tensor
    ) -> Isotonic:
        p = torch.softmax(scores.double(), dim=1)
        return cls(scores.shape[1], *_isotonic_points(p, labels))

    def _transform(self, scores: Tensor) -> Tensor:
        x, y = self.x_thresholds.to(scores.device), self.y_thresholds.to(scores.device)
        p = torch.softmax(scores, dim=1).T.contiguous()  # (C, M), a row per class
        p = p.clamp(x[:, :1], x[:, -1:])
        hi = torch.searchsorted(x, p).clamp_(max=x.shape[1] - 1)
        lo = (hi - 1).clamp_(min=0)  # x[lo] <= p <= x[hi]
        x_lo, x_hi, y_lo, y_hi = x.gather(1, lo), x.gather(1, hi), y.gather(1, lo), y.gather(1, hi)
        slope = (y_hi - y_lo) / (x_hi - x_lo)
        q = torch.where(x_hi > x_lo, slope * (p - x_lo) + y_lo, y_lo)
        return _normalised(_clamped_log(q.T))

    def summary(self) -> dict[str, Any]:
        points = 1 + (self.x_thresholds.diff(dim=1) > 0).sum(dim=1)  # padding repeats the last
        return {"mean_points": float(points.double().mean())}


def _isotonic_points(p: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Pool-adjacent-violators on every class of ``p`` ``(M, C)`` at once: the ends of each
    fitted constant piece, ``(x, y)`` ``(C, K)`` with rows padded by their last point."""
    num_rows, num_classes = p.shape
    x, order = torch.sort(p.T.contiguous(), dim=1, stable=True)
    hits = labels.unsqueeze(0) == torch.arange(num_classes, device=p.device).unsqueeze(1)
    hits = hits.double().gather(1, order)
    new = torch.ones_like(x, dtype=torch.bool)  # a new point: a class's first or a new value
    new[:, 1:] = x[:, 1:] != x[:, :-1]
    point = torch.cumsum(new.view(-1), 0) - 1
    num_points = int(point[-1]) + 1
    # Blocks of points: weight (sample count) and sum of labels, both whole numbers, so exact;
    # a block never crosses into the next class (``start``).
    weight = histogram(point, num_points)
    total = histogram(point, num_points, hits.view(-1))
    point_x = x.view(-1)[new.view(-1)]
    start = torch.zeros(num_points, dtype=torch.bool, device=p.device)
    start[point.view(num_classes, num_rows)[:, 0]] = True
    first = last = torch.arange(num_points, device=p.device)
    while True:
        mean = total / weight
        pool = (mean[:-1] >= mean[1:]) & ~start[1:]  # block b + 1 joins block b
        if not bool(pool.any()):
            break
        begins = torch.cat([start.new_ones(1), ~pool])
        block = torch.cumsum(begins, 0) - 1
        size = int(block[-1]) + 1
        weight, total = histogram(block, size, weight), histogram(block, size, total)
        ends = torch.cat([~pool, start.new_ones(1)])  # block b is the last of its group
        start, first, last = start[begins], first[begins], last[ends]
    # each block's two ends (one where it holds a single point), in order within each class
    ends = torch.stack([first, last], dim=1).view(-1)
    keep = torch.stack([torch.ones_like(start), first != last], dim=1).view(-1)
    ends, values = ends[keep], mean.repeat_interleave(2)[keep]
    owner = torch.cumsum(start.long(), 0).sub_(1).repeat_interleave(2)[keep]
    per_class = torch.bincount(owner, minlength=num_classes)
    position = torch.arange(len(ends), device=p.device) - (per_class.cumsum(0) - per_class)[owner]
    width = int(per_class.max())
    out_x = point_x[ends][per_class.cumsum(0) - 1].unsqueeze(1).repeat(1, width)
    out_y = values[per_class.cumsum(0) - 1].unsqueeze(1).repeat(1, width)
    out_x[owner, position], out_y[owner, position] = point_x[ends], values
    return out_x, out_y


@register
class Beta(Calibrator):
    r"""Beta calibration one-vs-rest (Kull, Silva Filho & Flach, AISTATS 2017), their
    three-parameter map for each class k,

    .. math::
        q_k = \sigma(a_k \ln p_k - b_k \ln(1 - p_k) + c_k), \qquad a_k, b_k \ge 0,

    p_k clipped to [2^-52, 1 − 2^-52] as their ``betacal`` package does (``np.finfo.eps``),
    ln(1 − p_k) computed without cancellation where p_k nears 1; the q_k are renormalised over
    the classes (log σ is finite for every finite argument: no clamp is needed). a = b = 1,
    c = 0 is the identity.

    (a_k, b_k, c_k) minimise the mean binary NLL of 1[y = k] on these (validation) data over
    a, b ≥ 0: the NLL is convex, so the minimum is the best of the unconstrained minima on
    the four faces (a, b free; a = 0; b = 0; a = b = 0) whose free coefficients are ≥ 0 (the
    first alone where its a, b ≥ 0 for every class; the first of equal minima). Where
    the unconstrained fit has one coefficient < 0, this is Kull et al.'s fix (refit with that
    coefficient fixed to 0) whenever their refit is itself ≥ 0, and the exact constrained
    minimum where it is not. Each face is fitted by Newton's method in float64, all classes at
    once, from 0, with step halving (Armijo, slope 1/4) until half the squared Newton
    decrement is at most 1e-12 (at most 100 steps), through the pseudo-inverse of the Hessian,
    so points that pin fewer than three coefficients (two distinct p_k, say) still fit; where
    the NLL has no minimum (a class never seen: c → −∞) the fit stops with finite
    coefficients. Deterministic.

    Example:
        >>> import torch
        >>> from focalcal.scaling import fit_calibrator
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]]).repeat(50, 1)
        >>> labels = torch.tensor([0, 1] * 40 + [1, 0] * 10)  # 80 % right
        >>> beta = fit_calibrator("beta", logits, labels)
        >>> beta.transform(logits).exp()[0].round(decimals=4)
        tensor([0.8000, 0.2000], dtype=torch.float64)
    """

    name = "beta"
    reference = (
        "Kull, Silva Filho, Flach. Beta calibration: a well-founded and easily implemented "
        "improvement on logistic calibration for binary classifiers. AISTATS 2017"
    )
    coefficients: Tensor

    def __init__(self, num_classes: int, coefficients: Tensor | None = None) -> None:
        super().__init__(num_classes)
        identity = torch.tensor([1.0, 1.0, 0.0]).repeat(num_classes, 1)
        given = identity if coefficients is None else coefficients
        coefficients = _table("coefficients", given, (num_classes, 3), 0.0)
        if not bool((coefficients[:, :2] >= 0).all()):
            raise ValueError("coefficients must have a >= 0 and b >= 0 (columns 0 and 1)")
        self.register_buffer("coefficients", coefficients)

    @classmethod
    def fit(  # type: ignore[override]  # a method takes no options
        cls, scores: Tensor, labels: Tensor
    ) -> Beta:
        features = _beta_features(scores.double())  # (C, M, 3)
        classes = torch.arange(scores.shape[1], device=scores.device).unsqueeze(1)
        signs = (labels.unsqueeze(0) == classes).double().mul_(2).sub_(1)  # ±1: y = k or not
        best = features.new_zeros(scores.shape[1], 3)
        best_loss = features.new_full((scores.shape[1],), math.inf)
        for face, free in enumerate(_FACES):
            theta, loss = _newton(features, signs, features.new_tensor(free))
            better = (theta[:, :2] >= 0).all(dim=1) & (loss < best_loss)  # a = b = 0 always is
            best[better], best_loss[better] = theta[better], loss[better]
            if face == 0 and bool(better.all()):  # the minimum is feasible for every class
                break
        return cls(scores.shape[1], best)

    def _transform(self, scores: Tensor) -> Tensor:
        eta = _beta_features(scores) @ self.coefficients.to(scores.device).unsqueeze(2)
        return _normalised(torch.nn.functional.logsigmoid(eta.squeeze(2)).T)

    def summary(self) -> dict[str, Any]:
        a, b = self.coefficients[:, 0], self.coefficients[:, 1]
        zeros = int((a == 0).sum() + (b == 0).sum())
        return {"mean_a": float(a.mean()), "mean_b": float(b.mean()), "zero_coefficients": zeros}


def _beta_features(scores: Tensor) -> Tensor:
    """``(ln p_k, −ln(1 − p_k), 1)`` of float64 logits ``(M, C)``, p_k clipped to
    [BETA_CLIP, 1 − BETA_CLIP]: ``(C, M, 3)``."""
    log_p = torch.log_softmax(scores, dim=1)
    low, high = math.log(BETA_CLIP), math.log1p(-BETA_CLIP)
    columns = [log_p.clamp(low, high), _log_complement(log_p).clamp(low, high).neg_()]
    return torch.stack([*columns, torch.ones_like(log_p)], dim=2).transpose(0, 1).contiguous()


def _newton(features: Tensor, signs: Tensor, free: Tensor) -> tuple[Tensor, Tensor]:
    """Minimise the NLL ``mean_i softplus(−s_i θ·x_i)`` over θ with ``free`` ``(3,)`` marking
    the free coefficients (the others stay 0), for every class at once: features
    ``(C, M, 3)``, signs ``(C, M)`` (+1 where y = k). Returns θ ``(C, 3)`` and the NLL ``(C,)``."""
    num_classes, num_rows, _ = features.shape
    targets, pinned = (signs + 1) / 2, torch.diag(1 - free)

    def evaluate(theta: Tensor) -> tuple[Tensor, Tensor]:
        """The NLL and the linear predictor θ·x."""
        eta = (features @ theta.unsqueeze(2)).squeeze(2)
        return -torch.nn.functional.logsigmoid(eta * signs).mean(dim=1), eta

    theta = features.new_zeros(num_classes, 3)
    loss, eta = evaluate(theta)
    active = torch.ones(num_classes, dtype=torch.bool, device=features.device)
    for _ in range(_NEWTON_ITERATIONS):
        q = torch.sigmoid(eta)
        gradient = ((q - targets).unsqueeze(1) @ features).squeeze(1) * (free / num_rows)
        hessian = (features * (q * (1 - q) / num_rows).unsqueeze(2)).transpose(1, 2) @ features
        hessian = hessian * free.outer(free) + pinned  # pinned coefficients: no step
        step = torch.linalg.pinv(hessian, hermitian=True) @ gradient.unsqueeze(2)
        step = step.squeeze(2).mul_(-free)  # pinned ones exactly 0, not the pseudo-inverse's 1e-17
        decrement = -(gradient * step).sum(dim=1)  # the squared Newton decrement, >= 0
        active &= decrement / 2 > _DECREMENT_TOLERANCE
        if not bool(active.any()):
            break
        length = active.double()  # 0 for the classes done: they stay where they are
        for _ in range(_HALVINGS):
            trial = theta + length.unsqueeze(1) * step
            trial_loss, trial_eta = evaluate(trial)
            accept = trial_loss <= loss - length * decrement / 4
            if bool(accept.all()):
                break
            length = torch.where(accept, length, length / 2)
        active &= accept  # no decrease along the step (rounding): that class is done
        theta = torch.where(accept.unsqueeze(1), trial, theta)
        loss = torch.where(accept, trial_loss, loss)
        eta = torch.where(accept.unsqueeze(1), trial_eta, eta)
    return theta, loss
