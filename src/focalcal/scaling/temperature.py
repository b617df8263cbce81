"""Temperature scaling (Guo et al., ICML 2017): logits / T with one scalar T > 0, fitted on a
validation split, never on the test split. T > 0 keeps the argmax, hence the accuracy.

- :func:`fit_temperature` — T from ``(logits, labels)``: the paper's grid search on ECE, or the
  minimum of the NLL.
- :class:`TemperatureScaled` — wraps a model; returns ``model(...) / T`` with T a buffer.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from focalcal._checks import TensorLike
from focalcal.metrics._inputs import check_num_bins, checked, row_chunks, softmax
from focalcal.metrics.binning import (
    Bins,
    check_sample_count,
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


def fit_temperature(
    logits: TensorLike, labels: TensorLike, objective: Objective = "ece", num_bins: int = 15
) -> float:
    r"""The temperature T that best calibrates ``softmax(logits / T)`` on these (validation) data.

    - ``"ece"`` (the paper's protocol): the T in :data:`TEMPERATURE_GRID` (0.1, 0.2, …, 10.0)
      with the lowest ``expected_calibration_error(logits / T, labels, num_bins)``, from
      :func:`ece_per_temperature`; the smallest T on ties.
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
    if objective == "ece":  # argmin: the first of equal minima
        errors = ece_per_temperature(logits, labels, num_bins)
        # logits / T overflows for the smallest T when |logits| nears the dtype's maximum: the
        # ECE there is NaN and such a T is never chosen
        if bool(errors.isnan().all()):
            raise ValueError("logits / T overflows for every T of the grid: logits too large")
        return TEMPERATURE_GRID[int(errors.nan_to_num(nan=math.inf).argmin())]
    check_num_bins(num_bins)
    scores, labels = checked(logits, labels, from_probs=False)
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
    needs every one of those exponentials, rounded as the metric's softmax rounds them.

    Example:
        >>> import torch
        >>> errors = ece_per_temperature(torch.tensor([[2.0, 0.0]] * 4), torch.tensor([0, 0, 0, 1]))
        >>> TEMPERATURE_GRID[int(errors.argmin())], round(float(errors.min()), 4)
        (1.8, 0.0023)
    """
    check_num_bins(num_bins)
    scores, labels = checked(logits, labels, from_probs=False)
    check_sample_count(labels.numel())
    scores = scores.detach()
    top, prediction = scores.max(dim=1)
    correct = prediction == labels
    # Rounding logits / T can make the top two equal where the logits differ by a few ulps, and
    # the metric then predicts the first of them. Rows that close (1000 ulps; usually none) get
    # the metric's argmax of logits / T for every T.
    second = scores.scatter(1, prediction.unsqueeze(1), -math.inf).amax(dim=1)
    eps = torch.finfo(scores.dtype).eps
    near = (top - second <= 1000 * eps * (1 + top.abs())).nonzero().squeeze(1)
    grid, size = len(TEMPERATURE_GRID), len(TEMPERATURE_GRID) * num_bins
    offsets = torch.arange(0, size, num_bins, dtype=torch.int32, device=scores.device)
    sums = torch.zeros(3, size, dtype=torch.float64, device=scores.device)
    start = 0
    for chunk, chunk_labels in row_chunks(scores, labels):  # buffers of a fixed size
        stop = start + len(chunk)
        scaled, probs = torch.empty_like(chunk), torch.empty_like(chunk)
        confidence = chunk.new_empty(grid, len(chunk))
        for k, t in enumerate(TEMPERATURE_GRID):  # every T while the rows are in cache
            softmax(torch.div(chunk, t, out=scaled), out=probs)
            torch.amax(probs, dim=1, out=confidence[k])
        right = correct[start:stop].expand(grid, -1).clone()
        close = near[(near >= start) & (near < stop)] - start
        for k, t in enumerate(TEMPERATURE_GRID):
            if len(close):
                right[k, close] = (chunk[close] / t).max(dim=1).indices == chunk_labels[close]
        index = equal_width_index(confidence, num_bins).add_(offsets.unsqueeze(1)).view(-1)
        sums[0] += histogram(index, size)
        sums[1] += histogram(index, size, to_fixed_point(confidence).view(-1))
        sums[2] += histogram(index, size, right.view(-1).double())
        start = stop
    count, confidence_sum, right_sum = sums.view(3, grid, num_bins)
    edges = equal_width_edges(num_bins, scores.device)
    return Bins(edges, count, confidence_sum, right_sum).calibration_error()


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
