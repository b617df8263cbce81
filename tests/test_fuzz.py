"""Fuzzing: random shapes, dtypes, extreme logits and labels through every loss, every metric
and temperature scaling.

Finite input gives finite output and gradients, or one of the documented ``ValueError``s;
the metrics stay within their bounds and T within its range. Logits reach the largest
magnitude at which the exact result is still representable ("meaningful"): the dtype's largest
finite value where the computation is done in a wider dtype, less where the true loss, NLL or
``logits / T`` would itself overflow. The examples are derandomized, so CI sees the same ones
on every run; ``FOCALCAL_FUZZ_EXAMPLES=2000`` fuzzes deeper.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

from focalcal._checks import looks_like_probabilities, probability_tolerance
from focalcal.losses import build_loss, loss_names
from focalcal.metrics import (
    CalibrationAccumulator,
    adaptive_calibration_error,
    brier_score,
    classwise_calibration_error,
    debiased_calibration_error,
    entropy,
    error_rate,
    expected_calibration_error,
    max_confidence,
    maximum_calibration_error,
    negative_log_likelihood,
    ood_auroc,
    signed_calibration_error,
    smooth_calibration_error,
)
from focalcal.scaling import (
    T_MAX,
    T_MIN,
    TEMPERATURE_GRID,
    TemperatureScaled,
    ece_per_temperature,
    fit_temperature,
)

EXAMPLES = int(os.environ.get("FOCALCAL_FUZZ_EXAMPLES", "30"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
KINDS = ("normal", "constant", "one_huge", "signs", "special")
MAGNITUDES = (1.0, 1e4, math.inf)  # inf: the largest meaningful magnitude
IGNORE_INDEX = -100
SEEDS = st.integers(0, 2**32 - 1)

# Sample values for every parametric loss name (``fl-<x>`` ...): γ over [0, 10], ε over [0, 1].
SAMPLE_VALUES = {
    "fl": ("0", "0.5", "3", "10"),
    "dual-focal": ("0", "0.5", "5", "10"),
    "ls": ("0.05", "1"),
}
PARAMETRIC = "-<x>"


def loss_cases() -> list[str]:
    names = []
    for name in loss_names():
        if name.endswith(PARAMETRIC):
            prefix = name.removesuffix(PARAMETRIC)
            names += [f"{prefix}-{value}" for value in SAMPLE_VALUES.get(prefix, ())]
        else:
            names.append(name)
    return names


@dataclass(frozen=True)
class Batch:
    """Logits ``(N, C, d1, ...)`` in a fuzzed dtype and labels ``(N, d1, ...)``."""

    logits: Tensor
    labels: Tensor

    @property
    def num_classes(self) -> int:
        return self.logits.shape[1]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half precision is computed in float32 by the losses and the metrics."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def meaningful_limit(dtype: torch.dtype, wider: torch.dtype, divisor: float) -> float:
    """The largest logit magnitude for ``dtype`` input computed in ``wider``, where ``divisor``
    times the magnitude must stay finite in ``wider`` (a sum of losses, ``logits / T``)."""
    return min(torch.finfo(dtype).max, torch.finfo(wider).max / divisor)


def make_logits(shape: tuple[int, ...], dtype: torch.dtype, kind: str, size: float, seed: int):
    """Logits of one ``kind``; ``size`` is the largest magnitude used (finite)."""
    g = torch.Generator().manual_seed(seed)
    normal = torch.randn(shape, generator=g, dtype=torch.float64)
    winner = torch.randint(shape[1], (shape[0], 1, *shape[2:]), generator=g)
    sign = 1.0 if torch.rand(1, generator=g).item() < 0.7 else -1.0
    if kind == "normal":
        logits = normal * size / 4
    elif kind == "constant":
        logits = torch.full(shape, sign * size, dtype=torch.float64)
    elif kind == "one_huge":
        logits = normal.clone().scatter_(1, winner, sign * size)
    elif kind == "signs":  # ±size, one class per row at +size
        logits = normal.sign().mul_(size).scatter_(1, winner, size)
    else:
        tiny = torch.finfo(dtype).tiny
        pool = torch.tensor([0.0, 0.5, 1.0, -1.0, tiny, -tiny, 1e4, -1e4, size, -size])
        logits = pool.double()[torch.randint(len(pool), shape, generator=g)]
    return logits.clamp_(-size, size).to(dtype)


@st.composite
def batches(draw, divisor: float = 8.0, wider: str = "compute"):
    """A :class:`Batch`; ``divisor`` and ``wider`` bound the magnitude (see meaningful_limit):
    ``wider`` is "compute" (float32 for half precision), "float64" or "own" (the dtype's)."""
    n = draw(st.integers(1, 64))
    c = draw(st.integers(2, 12))
    dims = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    shape = (n, c, *dims)
    dtype = draw(st.sampled_from(DTYPES))
    samples = n * math.prod(dims)
    wide = {"compute": compute_dtype(dtype), "float64": torch.float64, "own": dtype}[wider]
    limit = meaningful_limit(dtype, wide, divisor * samples * c)
    size = min(draw(st.sampled_from(MAGNITUDES)), limit)
    logits = make_logits(shape, dtype, draw(st.sampled_from(KINDS)), size, draw(SEEDS))
    g = torch.Generator().manual_seed(draw(SEEDS))
    which = draw(st.sampled_from(("random", "argmax", "argmin")))
    if which == "random":
        labels = torch.randint(c, (n, *dims), generator=g)
    else:
        labels = (logits.argmax(1) if which == "argmax" else logits.argmin(1)).long()
    return Batch(logits, labels)


def assert_finite(value: Tensor, what: str) -> None:
    assert torch.isfinite(value).all(), f"{what}: {value}"


# --- losses ---------------------------------------------------------------------------------


def test_every_parametric_loss_has_a_sample_value():
    parametric = {n.removesuffix(PARAMETRIC) for n in loss_names() if n.endswith(PARAMETRIC)}
    missing = parametric - set(SAMPLE_VALUES)
    assert not missing, f"add sample values for {sorted(missing)} to SAMPLE_VALUES"


@pytest.mark.parametrize("name", loss_cases())
@pytest.mark.filterwarnings("ignore::focalcal._checks.ProbabilitiesAsLogitsWarning")
@FUZZ
@given(
    batch=batches(),
    reduction=st.sampled_from(("mean", "sum", "none")),
    ignored=st.sampled_from((0.0, 0.3, 1.0)),
    weighted=st.booleans(),
    seed=SEEDS,
)
def test_losses_are_finite_with_finite_gradients(name, batch, reduction, ignored, weighted, seed):
    g = torch.Generator().manual_seed(seed)
    target = batch.labels.clone()
    target[torch.rand(target.shape, generator=g) < ignored] = IGNORE_INDEX
    weight = torch.rand(batch.num_classes, generator=g) * 2 + 0.1 if weighted else None
    if weight is not None:
        weight = weight.to(compute_dtype(batch.logits.dtype))
    criterion = build_loss(name, weight=weight, ignore_index=IGNORE_INDEX, reduction=reduction)
    logits = batch.logits.clone().requires_grad_()
    loss = criterion(logits, target)
    if reduction == "mean" and bool((target == IGNORE_INDEX).all()):
        assert torch.isnan(loss)  # 0 / 0, as torch.nn.CrossEntropyLoss
        return
    assert_finite(loss, "loss")
    assert (loss >= 0).all(), loss
    loss.sum().backward()
    assert_finite(logits.grad, "gradient")


# --- metrics --------------------------------------------------------------------------------

# metric -> (low, high), each held exactly: the binned metrics divide exact integer sums once
# (correctly rounded, so ECE <= MCE <= 1 too), the others clamp where they are formed
BINNED = {
    expected_calibration_error: (0.0, 1.0),
    maximum_calibration_error: (0.0, 1.0),
    adaptive_calibration_error: (0.0, 1.0),
    classwise_calibration_error: (0.0, 1.0),
    debiased_calibration_error: (0.0, 1.0),
    signed_calibration_error: (-1.0, 1.0),
}
UNBINNED = {error_rate: (0.0, 1.0), brier_score: (0.0, 2.0)}


def metric_scores(batch: Batch, from_probs: bool) -> Tensor:
    if not from_probs:
        return batch.logits
    return torch.softmax(batch.logits, dim=1)  # in the logits' dtype: a user's probabilities


def expect_probabilities_error(scores: Tensor, from_probs: bool):
    """Logits that happen to look like probabilities are refused, and only those."""
    if not from_probs and looks_like_probabilities(scores):
        return pytest.raises(ValueError, match="look like probabilities")
    return None


@FUZZ
@given(
    batch=batches(wider="float64"),
    from_probs=st.booleans(),
    num_bins=st.integers(1, 20),
    label_dtype=st.sampled_from((torch.int64, torch.int32, torch.uint8)),
)
def test_metrics_are_finite_and_within_bounds(batch, from_probs, num_bins, label_dtype):
    scores, labels = metric_scores(batch, from_probs), batch.labels.to(label_dtype)
    refusal = expect_probabilities_error(scores, from_probs)
    if refusal is not None:
        with refusal:
            expected_calibration_error(scores, labels, num_bins)
        return
    values = {}
    for metrics, kw in ((BINNED, {"num_bins": num_bins}), (UNBINNED, {})):
        for metric, (low, high) in metrics.items():
            value = float(metric(scores, labels, from_probs=from_probs, **kw))
            assert low <= value <= high, (metric.__name__, value)
            values[metric] = value
    assert values[expected_calibration_error] <= values[maximum_calibration_error]
    smooth = smooth_calibration_error(scores, labels, from_probs=from_probs)
    assert 0.0 <= float(smooth) <= 1.0
    nll = negative_log_likelihood(scores, labels, from_probs=from_probs)
    assert float(nll) >= 0.0  # NaN fails too
    if not from_probs:
        assert math.isfinite(nll), nll


@FUZZ
@given(batch=batches(wider="float64"), from_probs=st.booleans())
def test_ood_scores_are_finite_and_within_bounds(batch, from_probs):
    scores = metric_scores(batch, from_probs)
    refusal = expect_probabilities_error(scores, from_probs)
    if refusal is not None:
        with refusal:
            entropy(scores)
        return
    c = batch.num_classes
    h = entropy(scores, from_probs=from_probs)
    assert_finite(h, "entropy")
    assert (h >= 0).all() and (h <= torch.tensor(math.log(c), dtype=h.dtype)).all(), h
    top = max_confidence(scores, from_probs=from_probs)
    assert_finite(top, "max_confidence")
    assert (top >= 1 / c - 1e-3).all() and (top <= 1 + 1e-6).all(), top
    n = scores.shape[0]
    if n >= 2:
        halves = scores[: n // 2], scores[n // 2 :]
        if any(expect_probabilities_error(half, from_probs) for half in halves):
            return
        for score in ("entropy", "confidence"):
            area = ood_auroc(*halves, score, from_probs=from_probs)
            assert 0.0 <= float(area) <= 1.0


@FUZZ
@given(batch=batches(wider="float64"), parts=st.integers(1, 4), from_probs=st.booleans())
def test_the_accumulator_equals_the_metrics_on_any_input(batch, parts, from_probs):
    scores, labels = metric_scores(batch, from_probs), batch.labels
    chunks = scores.chunk(parts)
    if any(expect_probabilities_error(part, from_probs) for part in (scores, *chunks)):
        return  # the refusal is the metrics' test above
    accumulator = CalibrationAccumulator(batch.num_classes, from_probs=from_probs)
    for chunk, chunk_labels in zip(chunks, labels.chunk(parts), strict=True):
        accumulator.update(chunk, chunk_labels)
    report = accumulator.compute()
    kw = {"from_probs": from_probs}
    assert report.ece == float(expected_calibration_error(scores, labels, **kw))
    assert report.mce == float(maximum_calibration_error(scores, labels, **kw))
    assert report.classwise_ece == float(classwise_calibration_error(scores, labels, **kw))
    assert report.error == float(error_rate(scores, labels, **kw))
    assert report.adaece == float(adaptive_calibration_error(scores, labels, **kw))
    nll = float(negative_log_likelihood(scores, labels, **kw))
    assert report.nll == pytest.approx(nll, rel=1e-6, abs=1e-6) or report.nll == nll == math.inf
    for value in (report.ece, report.mce, report.classwise_ece, report.error, report.adaece):
        assert 0.0 <= value <= 1.0
    assert 0.0 <= report.brier <= 2.0


@FUZZ
@given(batch=batches(wider="float64"))
def test_softmax_output_is_detected_and_logits_only_when_every_row_is_a_distribution(batch):
    assert looks_like_probabilities(torch.softmax(batch.logits, dim=1))
    rows = batch.logits.movedim(1, -1).reshape(-1, batch.num_classes).double()
    tolerance = probability_tolerance(batch.num_classes, batch.logits.dtype)
    in_range = bool(((rows >= 0) & (rows <= 1)).all())
    distributions = in_range and bool(((rows.sum(1) - 1).abs() <= tolerance).all())
    assert looks_like_probabilities(batch.logits) == distributions


# --- temperature scaling --------------------------------------------------------------------


def mean_nll(logits: Tensor, labels: Tensor, t: float) -> float:
    """The NLL of ``logits / t`` in float64, from each row's distance to its largest logit."""
    z = logits.movedim(1, -1).reshape(-1, logits.shape[1]).double()
    d = (z - z.amax(dim=1, keepdim=True)) / t
    return float((d.logsumexp(dim=1) - d.gather(1, labels.reshape(-1, 1)).squeeze(1)).mean())


@FUZZ
@given(batch=batches(divisor=8 / T_MIN, wider="own"), objective=st.sampled_from(("ece", "nll")))
def test_temperature_is_within_its_range(batch, objective):
    logits, labels = batch.logits, batch.labels
    refusal = expect_probabilities_error(logits, False)
    if refusal is not None:
        with refusal:
            fit_temperature(logits, labels, objective)
        return
    t = fit_temperature(logits, labels, objective)
    if objective == "ece":  # the search's T is the whole grid's first argmin
        errors = ece_per_temperature(logits, labels).nan_to_num(nan=math.inf)
        assert t == TEMPERATURE_GRID[int(errors.argmin())]
    else:
        assert T_MIN <= t <= T_MAX
        nll = mean_nll(logits, labels, t)
        for factor in (1 / 1.1, 1.1):  # |T - T*| <= 1e-4: the NLL rises on either side
            other = mean_nll(logits, labels, min(max(t * factor, T_MIN), T_MAX))
            assert nll <= other + 1e-9 * abs(other), (t, factor, nll, other)
    scaled = TemperatureScaled(torch.nn.Identity()).fit(logits, labels, objective)
    assert scaled.temperature == pytest.approx(t, rel=1e-6)
    assert_finite(scaled(logits), "logits / T")


def test_the_limits_are_meaningful():
    # float32 logits at the float32 maximum: the metrics compute in float64 where they must
    assert meaningful_limit(torch.float32, torch.float64, 8 * 64 * 12) == torch.finfo().max
    assert meaningful_limit(torch.float16, torch.float32, 8 * 64 * 12) == 65504.0
