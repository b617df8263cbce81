"""Calibration metrics beyond the paper: the debiased ℓ2 ECE and the smooth ECE.

Both measure the top-label calibration error. Like the metrics in
:mod:`focalcal.metrics.calibration`, the ``(scores, labels)`` functions take logits (softmax
applied here) or, with ``from_probs=True``, probabilities, and return fractions as float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from focalcal._checks import TensorLike, as_tensor
from focalcal.metrics._inputs import check_num_bins, top_label
from focalcal.metrics.binning import SCALE, Bins, check_sample_count, to_fixed_point
from focalcal.metrics.calibration import adaptive_bins

GRID_INTERVALS = 40_000
"""Smooth ECE: the residuals are spread onto this many equal intervals of [0, 1]."""
MIN_BANDWIDTH = 1e-3
"""Smooth ECE: the narrowest kernel, 40 grid intervals wide (as ``relplot``'s floor)."""
TOLERANCE = 1e-6
"""Smooth ECE: the automatic bandwidth satisfies ``|smECE_σ − σ| <= TOLERANCE``."""
MAX_HALVINGS = 60


def debiased_calibration_error(
    scores: TensorLike, labels: TensorLike, num_bins: int = 15, from_probs: bool = False
) -> Tensor:
    r"""Debiased ℓ2 top-label calibration error over ``num_bins`` equal-mass bins.

    .. math::
        \sqrt{\max\Big(0,\ \sum_{b:\ n_b \ge 2} \frac{n_b}{N} \Big[(\bar c_b - \bar a_b)^2
        - \frac{\bar a_b (1 - \bar a_b)}{n_b - 1}\Big]\Big)}

    where :math:`\bar c_b` and :math:`\bar a_b` are the mean confidence and the accuracy of
    bin ``b``. The plug-in :math:`(\bar c_b - \bar a_b)^2` overestimates the squared gap by the
    variance of :math:`\bar a_b`; the second term removes an unbiased estimate of it. Bins with
    fewer than 2 samples contribute 0. Kumar, Liang & Ma, "Verified Uncertainty Calibration",
    NeurIPS 2019 (``calibration.utils.unbiased_l2_ce`` in p-lambda/verified_calibration).

    Bins are equal-mass, the reference's default for this estimator (``lower_bound_scaling_ce``
    with ``get_equal_bins``). The edges are AdaECE's interpolated quantiles
    (:func:`~focalcal.metrics.calibration.adaptive_bins`); the reference splits the sorted
    confidences into runs whose sizes differ by at most one and puts each edge midway between
    two runs. Each edge may move one sample, which matters only when bins hold a few samples.

    Example:
        >>> import torch
        >>> confidence = torch.tensor([0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
        >>> probs = torch.stack([confidence, 1 - confidence], dim=1)
        >>> labels = torch.tensor([0, 1, 1, 1, 0, 1, 0, 1])  # 3 of 8 right: over-confident
        >>> debiased_calibration_error(probs, labels, num_bins=2, from_probs=True)
        tensor(0.3122, dtype=torch.float64)
    """
    check_num_bins(num_bins)
    confidence, correct = top_label(scores, labels, from_probs)
    check_sample_count(confidence.numel())
    return debiased_from_bins(adaptive_bins(confidence, correct, num_bins))


def debiased_from_bins(bins: Bins) -> Tensor:
    r"""The debiased ℓ2 calibration error (see :func:`debiased_calibration_error`) of any bins.

    Computed from the exact per-bin sums, so bins accumulated in batches or across processes
    give the same value as one pass. Float64, one value per row of ``bins``.

    Example:
        >>> import torch
        >>> from focalcal.metrics.binning import equal_width_edges
        >>> confidence = torch.tensor([0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95])
        >>> correct = torch.tensor([1, 0, 0, 0, 1, 0, 1, 0]).bool()
        >>> edges = equal_width_edges(4)
        >>> debiased_from_bins(Bins.top_label(confidence, correct, edges))
        tensor(0.2962, dtype=torch.float64)
    """
    count, correct = bins.count, bins.correct
    total = count.sum(-1)
    if bool((total == 0).any()):
        raise ValueError("the bins hold no samples: the calibration error needs at least one")
    gap = (bins.confidence - correct * SCALE) / SCALE  # Σ c − Σ a, exact before / 2^24
    # (n_b/N)·gap_b²/n_b² and (n_b/N)·ā(1 − ā)/(n_b − 1) with ā = A/n_b
    plug_in = gap.square() / count
    variance = correct * (count - correct) / (count * (count - 1))
    per_bin = torch.where(count >= 2, plug_in - variance, 0.0)
    # the debiasing can take the sum below 0 (then the estimate is 0); it cannot take it
    # above 1, but the bound is the rounding's: clamping makes [0, 1] hold by construction
    return (per_bin.sum(-1) / total).clamp_(0.0, 1.0).sqrt()


def smooth_calibration_error(
    scores: TensorLike, labels: TensorLike, from_probs: bool = False, bandwidth: float | None = None
) -> Tensor:
    """Smooth ECE of the top-label confidences; see :func:`smooth_ece` for the definition.

    ``bandwidth=None`` chooses σ as the fixed point smECE_σ = σ.

    Example:
        >>> import torch
        >>> probs = torch.tensor([[0.9, 0.1]] * 10, dtype=torch.float64)
        >>> labels = torch.tensor([0] * 8 + [1] * 2)  # 90 % confident, 80 % right
        >>> smooth_calibration_error(probs, labels, from_probs=True)
        tensor(0.1000, dtype=torch.float64)
    """
    confidence, correct = top_label(scores, labels, from_probs)
    return smooth_ece(confidence, correct, bandwidth)[0]


def smooth_ece(
    confidence: TensorLike, correct: TensorLike, bandwidth: float | None = None
) -> tuple[Tensor, float]:
    r"""Smooth ECE (Błasiok & Nakkiran, "Smooth ECE: Principled Reliability Diagrams via Kernel
    Smoothing", ICLR 2024) and the bandwidth used.

    .. math::
        \mathrm{smECE}_\sigma = \int_0^1 \Big|\frac{1}{N} \sum_i \tilde K_\sigma(t, f_i)
        (y_i - f_i)\Big|\, dt, \qquad \tilde K_\sigma(t, f) = \sum_{k \in \mathbb{Z}}
        \varphi_\sigma(t - f - 2k) + \varphi_\sigma(t + f - 2k),

    the Gaussian :math:`\varphi_\sigma` reflected at 0 and 1, with ``f = confidence`` and
    ``y = correct`` (0/1, or any value in [0, 1]). The integrand is the Nadaraya-Watson smoothed
    residual times the kernel density estimate, so the density cancels; this is
    ``relplot.metrics.smooth_ece`` in apple/ml-calibration. With ``bandwidth=None``, σ is the
    fixed point smECE_σ = σ (smECE_σ does not increase with σ) in [MIN_BANDWIDTH, 1], to
    ``|smECE_σ − σ| <= TOLERANCE`` (1e-6), found by regula falsi, first on a coarser grid
    (:func:`_bandwidth`); if smECE_σ < σ already at σ = MIN_BANDWIDTH (1e-3), that σ is used. A
    given bandwidth must be at least MIN_BANDWIDTH.

    Discretisation: each residual is split between the two nearest of ``GRID_INTERVALS + 1``
    (40 001) grid points by linear interpolation, so h = 1/40 000 <= σ/40. Reflection makes
    the problem periodic with period 2, so the kernel is applied exactly, all images included,
    by FFT with the Gaussian's Fourier coefficients; the integral is the trapezoid rule on the
    grid. Each σ costs one FFT of 80 000 points, whatever N.

    Example:
        >>> import torch
        >>> confidence = torch.full((10,), 0.9, dtype=torch.float64)
        >>> correct = torch.arange(10) < 8  # 90 % confident, 80 % right
        >>> value, sigma = smooth_ece(confidence, correct)
        >>> value, round(sigma, 4)
        (tensor(0.1000, dtype=torch.float64), 0.1)
    """
    if bandwidth is not None:
        _check_bandwidth(bandwidth)
    confidence, correct = as_tensor(confidence, "confidence"), as_tensor(correct, "correct")
    _check_pairs(confidence, correct)
    confidence, correct = confidence.detach().double(), correct.detach()
    at = _smoother(confidence, correct)
    sigma = float(bandwidth) if bandwidth is not None else _bandwidth(confidence, correct, at)
    return at(sigma), sigma


def _smoother(
    confidence: Tensor, correct: Tensor, intervals: int = GRID_INTERVALS
) -> Callable[[float], Tensor]:
    """σ ↦ smECE_σ on a grid of ``intervals``; the residuals are put on the grid once (in place
    where the values stay the same: a few per-sample temporaries, whatever N), in whole units
    of 2^-24 (see :mod:`~focalcal.metrics.binning`), so the grid, and smECE, do not depend on
    the order of the samples. The last value is kept: the bandwidth search ends on it."""
    n = intervals
    position = confidence * n
    left = position.floor().clamp_(max=n - 1).int()
    right_share = position.sub_(left)
    residual = confidence.neg().add_(correct)  # correct − confidence, for 0/1 or float correct
    line = torch.zeros(n + 1, dtype=torch.float64, device=confidence.device)
    line.index_add_(0, left, to_fixed_point(torch.rsub(right_share, 1).mul_(residual)))
    line.index_add_(0, left.add_(1), to_fixed_point(right_share.mul_(residual)))
    line /= SCALE
    # The reflected kernel on [0, 1] is the Gaussian on the circle of length 2 applied to the
    # residuals plus their mirror images at -x = 2 - x; the images of 0 and 1 are 0 and 1.
    circle = torch.cat([line, line[1:-1].flip(0)])
    circle[[0, n]] *= 2
    spectrum = _fft(circle)
    frequency = math.pi * torch.arange(n + 1, dtype=torch.float64, device=confidence.device)
    # The smoothed residual is even about 0 and 1: its mean over the circle is the trapezoid
    # rule on [0, 1]. Grid masses per interval h = 1/n become a density by the factor n.
    scale = n / confidence.numel()
    last: dict[float, Tensor] = {}

    def at(sigma: float) -> Tensor:
        if sigma in last:
            return last[sigma]
        # past σ·πk = 38.7 the Gaussian's coefficient exp(-(σπk)² / 2) is 0 in float64: only
        # the first ones are computed (a few hundred for σ = 0.05, of 40 001)
        used = min(n + 1, math.floor(38.7 / (math.pi * sigma)) + 2)
        kernel = torch.exp(-0.5 * (sigma * frequency[:used]) ** 2)
        smoothed = _fft(spectrum[:used] * kernel, inverse_size=2 * n)  # the rest: zeros
        # The exact integral is at most mean |y − f| <= 1; the FFT's round-off (which differs
        # by CPU: 1 + 2e-15 on an Intel Xeon where every residual is −1) is not
        last.clear()
        last[sigma] = (smoothed.abs().mean() * scale).clamp_(max=1.0)
        return last[sigma]

    return at


def _fft(values: Tensor, inverse_size: int | None = None) -> Tensor:
    """``torch.fft.rfft(values)``, or with ``inverse_size`` ``torch.fft.irfft(values,
    inverse_size)`` (zero-padded); numpy's on the CPU, which takes half the time there (at
    80 000 points, 0.46 against 1.04 ms on this project's AMD EPYC)."""
    if values.device.type != "cpu":
        out: Tensor  # torch.fft's functions are untyped
        out = (
            torch.fft.rfft(values)
            if inverse_size is None
            else torch.fft.irfft(values, inverse_size)
        )
        return out
    array = values.numpy()
    if inverse_size is None:
        return torch.from_numpy(np.fft.rfft(array))
    return torch.from_numpy(np.fft.irfft(array, inverse_size))


def _bandwidth(confidence: Tensor, correct: Tensor, at: Callable[[float], Tensor]) -> float:
    """σ with ``|at(σ) − σ| <= TOLERANCE``. It is located first on a grid 16 times coarser (an
    FFT of a twentieth the size), between |mean(y − f)| and mean |y − f|, the least and the most
    smECE_σ can be whatever σ. It is then settled on ``at``'s grid: g(σ) = smECE_σ − σ falls at
    least as fast as −σ, so the root lies between σ and σ + g(σ), a bracket that regula falsi
    closes in a step or two. Where the coarse root is an end of [MIN_BANDWIDTH, 1], or the
    bracket does not hold, the search runs on ``at``'s grid alone."""

    def excess(sigma: float) -> float:
        return float(at(sigma)) - sigma

    residual = to_fixed_point(confidence.neg().add_(correct))  # exact sums: in any order
    total = confidence.numel() * SCALE
    least, most = abs(float(residual.sum())) / total, float(residual.abs_().sum()) / total
    del residual  # before the coarse grid's temporaries
    coarse = _smoother(confidence, correct, GRID_INTERVALS // 16)
    low, high = max(least, MIN_BANDWIDTH), min(most, 1.0)
    guess = _fixed_point(lambda sigma: float(coarse(sigma)) - sigma, low, high)
    if MIN_BANDWIDTH < guess < 1.0:
        g_guess = excess(guess)
        if abs(g_guess) <= TOLERANCE:
            return guess
        other = min(max(guess + g_guess, MIN_BANDWIDTH), 1.0)
        g_other = excess(other)
        if abs(g_other) <= TOLERANCE:
            return other
        if (g_guess > 0) != (g_other > 0):
            ends = sorted([(guess, g_guess), (other, g_other)])
            return _regula_falsi(excess, *ends[0], *ends[1])
    return _fixed_point(excess)


def _fixed_point(
    excess: Callable[[float], float], low: float = MIN_BANDWIDTH, high: float = 1.0
) -> float:
    """σ with |excess(σ)| <= TOLERANCE on [low, high], where excess(σ) = smECE_σ − σ
    decreases in σ; ``low`` where it is <= 0 already there, ``high`` where it is >= 0 there."""
    g_low = excess(low)
    if g_low <= 0 or high <= low:
        return low
    g_high = excess(high)
    if g_high >= 0:  # on [MIN_BANDWIDTH, 1]: only where every residual is ±1 with one sign
        return high
    return _regula_falsi(excess, low, g_low, high, g_high)


def _regula_falsi(
    excess: Callable[[float], float], low: float, g_low: float, high: float, g_high: float
) -> float:
    """The root of the decreasing ``excess`` in [low, high] (g_low > 0 > g_high), to
    TOLERANCE. Regula falsi with the Illinois rule (halve the weight of an end kept twice in
    a row): g is smooth, so it needs a few evaluations where bisection needs about 20, each an
    FFT; a step that does not shrink the bracket by half is followed by a bisection, so it
    never takes more than bisection's MAX_HALVINGS steps."""
    kept = 0  # +1: the low end was kept last time, -1: the high end
    for _ in range(MAX_HALVINGS):
        width = high - low
        middle = (low * g_high - high * g_low) / (g_high - g_low)
        g_middle = excess(middle)
        if abs(g_middle) <= TOLERANCE:
            return middle
        if g_middle > 0:
            low, g_low = middle, g_middle
            g_high, kept = (g_high / 2 if kept == -1 else g_high), -1
        else:
            high, g_high = middle, g_middle
            g_low, kept = (g_low / 2 if kept == 1 else g_low), 1
        if high - low > width / 2:  # slow progress: bisect once
            middle = (low + high) / 2
            g_middle = excess(middle)
            if abs(g_middle) <= TOLERANCE:
                return middle
            if g_middle > 0:
                low, g_low = middle, g_middle
            else:
                high, g_high = middle, g_middle
    return high


def _check_bandwidth(bandwidth: float) -> None:
    is_number = isinstance(bandwidth, (int, float)) and not isinstance(bandwidth, bool)
    if not is_number or not math.isfinite(bandwidth) or bandwidth < MIN_BANDWIDTH:
        raise ValueError(
            f"bandwidth must be a finite number >= {MIN_BANDWIDTH:g} (the grid resolves no "
            f"narrower kernel), or None to choose it; got {bandwidth!r}"
        )


def _check_pairs(confidence: Tensor, correct: Tensor) -> None:
    if not isinstance(confidence, Tensor) or not confidence.is_floating_point():
        dtype = confidence.dtype if isinstance(confidence, Tensor) else type(confidence).__name__
        raise ValueError(f"confidence must be a floating-point tensor, got {dtype}")
    if confidence.dim() != 1:
        raise ValueError(f"confidence must have shape (N,), got {tuple(confidence.shape)}")
    if not isinstance(correct, Tensor) or correct.shape != confidence.shape:
        got = tuple(correct.shape) if isinstance(correct, Tensor) else type(correct).__name__
        raise ValueError(f"correct must be a tensor of shape {tuple(confidence.shape)}, got {got}")
    if confidence.numel() == 0:
        raise ValueError("the input is empty: a metric needs at least one sample")
    if not bool(((confidence >= 0) & (confidence <= 1)).all()):
        raise ValueError("confidence must lie in [0, 1] (and not be NaN)")
    if not bool(((correct >= 0) & (correct <= 1)).all()):
        raise ValueError("correct must be 0/1 (or lie in [0, 1], and not be NaN)")
