"""Temperature scaling (Guo et al., ICML 2017): logits / T with one scalar T > 0, fitted on a
validation split, never on the test split. T > 0 keeps the argmax, hence the accuracy.

- :func:`fit_temperature` — T from ``(logits, labels)``: the paper's grid search on ECE, or the
  minimum of the NLL.
- :class:`TemperatureScaled` — wraps a model; returns ``model(...) / T`` with T a buffer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from focalcal._checks import TensorLike
from focalcal.metrics._inputs import (
    Scratch,
    check_num_bins,
    checked,
    label_and_others,
    row_chunks,
    softmax,
)
from focalcal.metrics.binning import (
    SCALE,
    Bins,
    check_sample_count,
    counts_and_sums,
    equal_width_edges,
    equal_width_index,
    histogram,
    to_fixed_point,
)

Objective = Literal["ece", "nll"]
TEMPERATURE_GRID: tuple[float, ...] = tuple(round(k / 10, 1) for k in range(1, 101))
T_MIN, T_MAX = 0.01, 100.0  # the range of the "nll" objective
TOLERANCE = 1e-4  # the "nll" objective's guaranteed |T - T*|
_BLOCK = 2**18  # elements per block of the "nll" objective's float64 work on the CPU
_NEWTON_STEPS, _BISECTIONS = 20, 30  # 23 halvings of log(T_MAX / T_MIN) reach TOLERANCE
_SAMPLE_ROWS = 512  # at least this many rows (else 1/16 of them) locate the ECE minimum


def fit_temperature(
    logits: TensorLike, labels: TensorLike, objective: Objective = "ece", num_bins: int = 15
) -> float:
    r"""The temperature T that best calibrates ``softmax(logits / T)`` on these (validation) data.

    - ``"ece"`` (the paper's protocol): the T in :data:`TEMPERATURE_GRID` (0.1, 0.2, …, 10.0)
      with the lowest ``expected_calibration_error(logits / T, labels, num_bins)``, the
      smallest T on ties: the argmin of :func:`ece_per_temperature`, found by computing only
      the T that a lower bound cannot rule out (typically a dozen; docs/metrics.md).
    - ``"nll"``: the T in [``T_MIN``, ``T_MAX``] = [0.01, 100] minimising the mean NLL. Over
      :math:`\beta = 1/T`, :math:`f(\beta) = \mathrm{mean}_i(\operatorname{logsumexp}(\beta z_i)
      - \beta z_{iy_i})` is convex: :math:`f' = \mathrm{mean}_i(E_p[z_i] - z_{iy_i})`,
      :math:`f'' = \mathrm{mean}_i \operatorname{Var}_p[z_i]`, :math:`f''' = \mathrm{mean}_i
      E_p[(z_i - E_p z_i)^3]`, :math:`p = \operatorname{softmax}(\beta z_i)`, all in float64.
      Newton-Halley steps in :math:`\log\beta`, kept inside a bracket on the sign of
      :math:`f'`, stop once a Taylor bound (or the bracket) confines the minimum to at most
      2 ``TOLERANCE`` in T, and return the middle: :math:`|T - T^*| \le` 1e-4. Typically 2 or 3
      passes of ``exp`` over the logits. A minimum beyond the range gives the nearest bound:
      ``T_MIN`` when every label holds its row's largest logit (the NLL falls towards 0 with
      T), ``T_MAX`` when, e.g., the logits say nothing about the labels.

    Args:
        logits: ``(N, C)`` or ``(N, C, d1, ...)``, finite; half precision is computed in float32
            (the ECE is then that of ``logits.float() / T``).
        labels: ``(N)`` or ``(N, d1, ...)`` class indices in ``[0, C)``.
        objective: ``"ece"`` or ``"nll"``.
        num_bins: the ECE's equal-width bins (``"ece"`` only).

    Returns:
        T, a Python float. The work stays on the logits' device; it fits on these data only.

    Example:
        >>> import math, torch
        >>> logits = torch.tensor([[2.0, 0.0]] * 4)
        >>> labels = torch.tensor([0, 0, 0, 1])  # 75 % right: best where sigmoid(2 / T) = 0.75
        >>> fit_temperature(logits, labels)  # the grid T whose confidence is nearest 0.75
        1.8
        >>> abs(fit_temperature(logits, labels, "nll") - 2 / math.log(3)) <= 1e-4
        True
    """
    if objective not in ("ece", "nll"):
        raise ValueError(f"objective must be 'ece' or 'nll', got {objective!r}")
    check_num_bins(num_bins)
    scores, labels = checked(logits, labels, from_probs=False)
    if objective == "ece":
        check_sample_count(labels.numel())
        return _fit_ece(scores.detach(), labels, num_bins)
    return _fit_nll(scores.detach(), labels)


def ece_per_temperature(logits: TensorLike, labels: TensorLike, num_bins: int = 15) -> Tensor:
    """``expected_calibration_error(logits / T, labels, num_bins)`` for every T in
    :data:`TEMPERATURE_GRID`, bit for bit, as a ``(100,)`` float64 tensor on the logits' device.

    Dividing by T > 0 keeps the order of the logits, so the prediction is computed once and per T
    only the confidence ``softmax(logits / T).amax()``, the way the metric computes it: a block
    of rows at a time (the metric's chunks), all 100 T while the block is in cache, into two
    buffers; the confidences of every T are then binned together (one index, three counts).
    Each T still costs a division and a softmax of the logits, about 1.4 softmaxes: the
    confidence is 1 / Σ_k exp(z_k / T − max z / T), and equalling the metric to the last bit
    needs every one of those exponentials, rounded as the metric's softmax rounds it.
    (:func:`fit_temperature` needs only the argmin, and bounds most T instead of computing them.)

    Example:
        >>> import torch
        >>> errors = ece_per_temperature(torch.tensor([[2.0, 0.0]] * 4), torch.tensor([0, 0, 0, 1]))
        >>> TEMPERATURE_GRID[int(errors.argmin())], round(float(errors.min()), 4)
        (1.8, 0.0023)
    """
    check_num_bins(num_bins)
    scores, labels = checked(logits, labels, from_probs=False)
    check_sample_count(labels.numel())
    grid = _Grid(scores.detach(), labels, num_bins)
    return grid.bins(range(len(TEMPERATURE_GRID))).calibration_error()


class _Grid:
    """The metric's top-label bins of ``logits / T`` for any T of the grid, a subset at a time."""

    def __init__(self, scores: Tensor, labels: Tensor, num_bins: int) -> None:
        self.scores, self.labels, self.num_bins = scores, labels, num_bins
        # The label's logit against the largest other (on a copy, as in the metric's
        # top_label_of): the label is the prediction where it is larger. Rounding logits / T
        # can bring the two together where they differ by a few ulps, and the metric then
        # predicts the first of them: rows that close (1000 ulps; usually none) get the
        # metric's argmax of logits / T for every T.
        work = Scratch.local().get("work", scores).copy_(scores)
        own, others = label_and_others(work, labels, restore=False)
        self.correct = own > others
        gap = 1000 * torch.finfo(scores.dtype).eps * (1 + torch.maximum(own, others).abs())
        self.near = ((own - others).abs() <= gap).nonzero().squeeze(1)
        right, n = int(self.correct.sum()) - int(self.correct[self.near].sum()), len(labels)
        self.accuracy = (right / n, (right + len(self.near)) / n)  # near rows: either way

    def bins(self, which: Iterable[int]) -> Bins:
        """Bins of shape ``(len(which), num_bins)``: grid T number k for each k of ``which``."""
        temperatures = [TEMPERATURE_GRID[k] for k in which]
        scores, labels, num_bins, grid = self.scores, self.labels, self.num_bins, len(temperatures)
        size, device = grid * num_bins, scores.device
        offsets = torch.arange(0, size, num_bins, dtype=torch.int32, device=device)
        sums = torch.zeros(3, size, dtype=torch.float64, device=device)
        start = 0
        for chunk, chunk_labels in row_chunks(scores, labels):  # buffers of a fixed size
            stop = start + len(chunk)
            scaled, probs = (Scratch.local().get(name, chunk) for name in ("work", "probs"))
            confidence = chunk.new_empty(grid, len(chunk))
            for k, t in enumerate(temperatures):  # every T while the rows are in cache
                softmax(torch.div(chunk, t, out=scaled), out=probs)
                torch.amax(probs, dim=1, out=confidence[k])
            right = self.correct[start:stop].expand(grid, -1).clone()
            close = self.near[(self.near >= start) & (self.near < stop)] - start
            for k, t in enumerate(temperatures if len(close) else ()):
                right[k, close] = (chunk[close] / t).max(dim=1).indices == chunk_labels[close]
            index = equal_width_index(confidence, num_bins)
            # NaN where logits / T overflows: any bin, and the NaN weight makes that T's ECE NaN
            index.clamp_(0, num_bins - 1).add_(offsets.unsqueeze(1))
            index = index.view(-1)
            count, right_count = counts_and_sums(
                index, size, right.view(-1).double(), stop - start, 1
            )
            sums[0] += count
            sums[1] += histogram(index, size, to_fixed_point(confidence).view(-1))
            sums[2] += right_count
            start = stop
        count, confidence_sum, right_sum = sums.view(3, grid, num_bins)
        return Bins(equal_width_edges(num_bins, device), count, confidence_sum, right_sum)


def _fit_ece(scores: Tensor, labels: Tensor, num_bins: int) -> float:
    """The argmin over the grid of ``ece_per_temperature``, the first of equal minima, computing
    the ECE of only the T that could be it.

    The ECE is at least |mean confidence − accuracy| (all samples in one bin), and the exact
    confidence 1 / Σ_k exp((z_k − max z) / T) falls as T grows. So once some T are computed,
    every other T' has a lower bound: its mean confidence lies below that of the nearest
    computed T under it and above that of the nearest computed T over it, each widened by the
    rounding of the metric's float confidences (:func:`_rounding`); the accuracy is fixed but
    for the rows whose prediction rounding may change. A T' whose bound exceeds the lowest ECE
    computed can be neither the minimum nor tied with it, and is never computed.

    The search: the sign change of mean confidence − accuracy is found on about
    1/16 of the rows; the T beside it are computed on all rows, then the nearest T still
    unbounded on each side of the best, until none is left. Typically a dozen T are computed;
    where the ECE barely moves with T, all of them may be.
    """
    n = len(labels)
    # logits / T overflows for the smallest T when |logits| nears the dtype's maximum: the ECE
    # there is NaN (the metric's softmax of inf), and such a T is never chosen
    largest = torch.stack(torch.aminmax(scores)).abs().amax().reshape(1)  # no (N, C) copy
    temperatures = torch.tensor(TEMPERATURE_GRID, dtype=scores.dtype, device=scores.device)
    finite = torch.div(largest, temperatures).isfinite().tolist()
    first = finite.index(True)  # the smallest T overflow, if any; T >= 1 never does
    full = _Computed(_Grid(scores, labels, num_bins))
    step = n // max(_SAMPLE_ROWS, n // 16)  # 1: the first search computes on every row
    sample = full if step <= 1 else _Computed(_Grid(scores[::step], labels[::step], num_bins))
    full.compute([k for k in _crossing(sample, first) if k not in full.errors])
    rounding = _rounding(scores.shape[1], float(largest))
    while True:
        best = min(full.errors.values())
        k_best = min(k for k, e in full.errors.items() if e == best)
        bounds = _lower_bounds(full, first, rounding)
        unbounded = sorted(k for k, bound in bounds.items() if bound <= best)
        if not unbounded:
            return TEMPERATURE_GRID[k_best]
        below = [k for k in unbounded if k < k_best]
        above = [k for k in unbounded if k > k_best]
        full.compute(below[-1:] + above[:1])


class _Computed:
    """The ECE and mean confidence of the grid T computed so far on one :class:`_Grid`."""

    def __init__(self, grid: _Grid) -> None:
        self.grid = grid
        self.errors: dict[int, float] = {}  # NaN (overflow) as inf: never the minimum
        self.means: dict[int, float] = {}  # finite ones, from the fixed-point sums of the ECE
        self.over: dict[int, bool] = {}  # mean confidence >= accuracy

    def compute(self, which: list[int]) -> None:
        if not which:
            return
        bins = self.grid.bins(which)
        confidence, right = bins.confidence.sum(-1), bins.correct.sum(-1) * SCALE
        values = zip(
            which,
            bins.calibration_error().tolist(),
            (confidence / (len(self.grid.labels) * SCALE)).tolist(),
            (confidence >= right).tolist(),
            strict=True,
        )
        for k, error, mean, over in values:
            self.errors[k], self.over[k] = (math.inf if math.isnan(error) else error), over
            if math.isfinite(mean):
                self.means[k] = mean


def _crossing(computed: _Computed, first: int) -> list[int]:
    """Adjacent grid T numbers around which mean confidence − accuracy changes sign (the
    confidence falls with T): where the ECE is likely low. A search that computes three T
    inside the bracket per pass (the ends too, first), so 4 passes find it among 100."""
    lo, hi = first, len(TEMPERATURE_GRID) - 1
    computed.compute([k for k in (lo, hi) if k not in computed.over])
    if not computed.over[lo]:  # under-confident at every T
        return [lo, min(lo + 1, hi)]
    if computed.over[hi]:
        return [max(hi - 1, lo), hi]
    while hi - lo > 1:
        inside = sorted({lo + (hi - lo) * j // 4 for j in (1, 2, 3)} - {lo, hi})
        computed.compute([k for k in inside if k not in computed.over])
        lo = max([lo] + [k for k in inside if computed.over[k]])
        hi = min([hi] + [k for k in inside if k > lo])
    return [lo, hi]


def _rounding(num_classes: int, largest: float) -> list[float]:
    """Per grid T, a bound on the relative rounding error of the metric's confidence of
    logits / T: four times the first-order sum of logits / T (2^-24 |z| / T each, so 2^-22
    max|z| / T on z_k − max z), the exponentials (a few ulps), their sum (C ulps) and the
    division."""
    return [4 * ((num_classes + 8) * 2**-24 + 2**-22 * largest / t) for t in TEMPERATURE_GRID]


def _lower_bounds(computed: _Computed, first: int, rounding: list[float]) -> dict[int, float]:
    """A lower bound on the ECE at each grid T number from ``first`` not yet computed, from the
    mean confidence of the nearest computed T on each side (the fixed-point confidences lie
    within 2^-25 of the float ones) and the accuracy's range."""
    accuracy, means = computed.grid.accuracy, computed.means
    slack, grid = 2**-24, range(first, len(TEMPERATURE_GRID))
    lower: dict[int, int | None] = {}  # the nearest computed T number below each k
    last: int | None = None
    for k in grid:
        lower[k], last = last, (k if k in means else last)
    bounds, upper = {}, None
    for k in reversed(grid):
        if k in computed.errors:
            upper = k if k in means else upper
            continue
        most, least, r = 1.0, 0.0, rounding[k]  # the mean confidence at k lies in [least, most]
        j = lower[k]
        if j is not None and max(r, rounding[j]) < 0.5:  # a smaller T: a higher confidence
            most = (means[j] + slack) * (1 + r) / (1 - rounding[j]) + slack
        if upper is not None and r < 0.5:
            least = (means[upper] - slack) * (1 - r) / (1 + rounding[upper]) - slack
        gap = max(0.0, least - accuracy[1], accuracy[0] - most)
        bounds[k] = gap * (1 - 2**-40)  # (1 - 2^-40): the ECE's own float64 division
    return bounds


def _fit_nll(scores: Tensor, labels: Tensor) -> float:
    num_rows, num_classes = scores.shape
    top = scores.amax(dim=1, keepdim=True)
    label = scores.gather(1, labels.unsqueeze(1))
    if not bool((label < top).any()):  # every label holds its row's largest logit: f' <= 0
        return T_MIN
    label_mean = (label.double() - top.double()).mean()  # mean_i d_iy, with d = z - max_k z_k
    spread = top.squeeze(1).double() - scores.amin(dim=1).double()  # R_i, the range of row i
    # d in float64, a block of rows at a time in two reused buffers: on the CPU, blocks that stay
    # in cache beat (N, C) temporaries, whose fresh pages cost as much as the arithmetic.
    rows = max(1, _BLOCK // num_classes) if scores.device.type == "cpu" else num_rows
    buffers = scores.new_empty((2, min(rows, num_rows), num_classes), dtype=torch.float64)
    sums = scores.new_empty((4, num_rows), dtype=torch.float64)

    def derivatives(beta: float) -> tuple[list[float], Tensor]:
        """f', f'', f''' at β, and Var_p[d] per row."""
        for start in range(0, num_rows, rows):
            block = slice(start, start + rows)
            d, weights = buffers[:, : min(rows, num_rows - start)]
            d.copy_(scores[block]).sub_(top[block])
            torch.mul(d, beta, out=weights).exp_()  # p up to normalisation; d <= 0: no overflow
            for k in range(4):  # Σ_k w d^k
                torch.sum(weights if k == 0 else weights.mul_(d), dim=1, out=sums[k, block])
        mean, second, third = sums[1:] / sums[0]
        variance = (second - mean.square()).clamp_min_(0)
        skew = third - 3 * mean * second + 2 * mean.pow(3)  # E_p[(d - E_p[d])³]
        moments = torch.stack([mean.mean() - label_mean, variance.mean(), skew.mean()])
        return moments.tolist(), variance

    # Start with a Newton step from β = 0, where p is uniform: f'(0) = mean_i(mean_k z_ik -
    # z_iy), f''(0) = mean_i Var_k z_ik. In float32 it only guesses; where it puts the minimum
    # at T >= T_MAX, the search starts at that bound, and the evaluation there decides.
    row_mean = scores.mean(dim=1)
    slope = float((row_mean - label.squeeze(1)).mean())
    row_square = torch.linalg.vector_norm(scores, dim=1).square() / num_classes  # no (N, C) copy
    curvature_0 = float((row_square - row_mean.square()).mean())
    beta = -slope / curvature_0 if slope < 0 < curvature_0 else 1 / T_MAX
    lo, hi, known = 1 / T_MAX, 1 / T_MIN, [False, False]  # f'(lo) < 0 < f'(hi) once known
    for evaluation in range(_NEWTON_STEPS + _BISECTIONS):
        beta = min(max(beta, lo), hi)
        (slope, curvature, third), variance = derivatives(beta)
        side = int(slope > 0)  # 1: the minimum lies at a smaller β
        lo, hi = (beta, hi) if side == 0 else (lo, beta)
        known[side] = True
        step = 30.0 - 60.0 * side  # f'' = 0, every p one-hot: as far as the bracket allows
        if curvature > 0:
            # Certificate: f'''' is the mean of the rows' fourth cumulants, each at most
            # R_i² Var_i, and moving to β + s reweights p by at most e^(|s| R_i), so on |s| <= δ
            # |f'''(β + s)| <= B = |f'''(β)| + δ mean_i R_i² e^(δ R_i) Var_i(β). With Newton's
            # step t and δ = 2|t|, Taylor puts the minimum within r = 2 B t² / f'' of β + t
            # whenever r <= |t|.
            t = -slope / curvature
            tilt = spread.square() * torch.exp(2 * abs(t) * spread) * variance
            r = 2 * (abs(third) + 2 * abs(t) * float(tilt.mean())) * t * t / curvature
            if r <= abs(t) and beta + t - r > 0:
                high, low = 1 / (beta + t - r), 1 / (beta + t + r)
                if high - low <= 2 * TOLERANCE:
                    return min(max((high + low) / 2, T_MIN), T_MAX)
            # The next β: Newton in log β, with Halley's correction where it is moderate.
            slope_u = beta * curvature  # d f' / d log β
            correction = slope * (slope_u + beta * beta * third) / (slope_u * slope_u)
            step = -slope / slope_u / (1 - correction / 2 if abs(correction) < 1 else 1)
        if 1 / lo - 1 / hi <= 2 * TOLERANCE:
            break
        target = beta * math.exp(max(-30.0, min(30.0, step)))
        if not lo < target < hi or evaluation >= _NEWTON_STEPS:
            towards = int(step > 0)  # try the range's bound on that side first, else bisect
            target = (lo, hi)[towards] if not known[towards] else math.sqrt(lo * hi)
        beta = target
    return (1 / lo + 1 / hi) / 2


class TemperatureScaled(nn.Module):
    """``model(...) / T``: a model whose logits are divided by a temperature T > 0.

    T is the buffer ``T``: it is saved in the ``state_dict`` (and so in checkpoints) and follows
    ``.to()``, ``.cuda()``, ``.double()`` like the model's own tensors; it is created in torch's
    default dtype (float32 unless changed), so :attr:`temperature` reads back T rounded to it.
    The model must return a logits tensor.

    Example:
        >>> import torch
        >>> scaled = TemperatureScaled(nn.Identity(), temperature=2.0)
        >>> scaled(torch.tensor([[4.0, 1.0]]))
        tensor([[2.0000, 0.5000]])
        >>> val_logits, val_labels = torch.tensor([[2.0, 0.0]] * 4), torch.tensor([0, 0, 0, 1])
        >>> round(scaled.fit(val_logits, val_labels).temperature, 6)
        1.8
    """

    T: Tensor

    def __init__(self, model: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.model = model
        number = isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
        self.register_buffer("T", torch.tensor(float(temperature) if number else math.nan))
        if not 0.0 < self.temperature < math.inf:  # checked as stored: 1e-60 is 0 in float32
            raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")

    @property
    def temperature(self) -> float:
        """T as a Python float."""
        return float(self.T)

    def fit(
        self,
        logits: TensorLike,
        labels: TensorLike,
        objective: Objective = "ece",
        num_bins: int = 15,
    ) -> TemperatureScaled:
        """Set T from :func:`fit_temperature` on validation logits the caller computed with the
        wrapped model (this does not run the model). Returns ``self``."""
        self.T.fill_(fit_temperature(logits, labels, objective, num_bins))
        return self

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        logits: Tensor = self.model(*args, **kwargs)
        return logits / self.T

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:.6g}"
