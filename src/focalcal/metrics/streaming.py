"""A streaming, distributed calibration accumulator and the report it computes.

``update`` keeps O(bins × classes) exact integer sums (see :mod:`focalcal.metrics.binning`) plus,
for the metrics that need them (AdaECE, bootstrap intervals), each sample's top-label confidence,
correctness, NLL and Brier score. Batching, streaming and ``torch.distributed`` therefore give
bit-identical reports: integer sums do not depend on their order, the per-sample metrics
(AdaECE's sorted runs, smooth ECE's grid in whole units) are such sums too, and the bootstrap,
which draws samples by position, puts them in a canonical order first.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from focalcal._checks import as_tensor
from focalcal.metrics._inputs import (
    check_num_bins,
    checked,
    probabilities_of,
    row_chunks,
    top_label_of,
)
from focalcal.metrics.binning import (
    SCALE,
    Bins,
    check_sample_count,
    to_fixed_point,
)
from focalcal.metrics.bootstrap import IntervalMethod, bootstrap, check_method
from focalcal.metrics.calibration import adaptive_bins, sample_brier, sample_nll
from focalcal.metrics.extensions import debiased_from_bins, smooth_ece


@dataclass(frozen=True)
class CalibrationReport:
    """Every calibration metric of one set of predictions, as fractions (JSON-serialisable).

    ``ece_over`` and ``ece_under`` split ``ece`` into the bins where the model is over- and
    under-confident; ``signed_ece`` is their difference. The metrics that need per-sample
    values (AdaECE, the debiased ECE on the same equal-mass bins, the smooth ECE and its
    automatic bandwidth) are ``None`` when the accumulator did not keep them. ``temperature``
    is the T the logits were divided by, ``None`` without temperature scaling. ``intervals``
    maps a metric's name to its bootstrap ``(low, high)`` interval, of the kind
    ``interval_method`` (see :func:`focalcal.metrics.bootstrap.bootstrap`) at
    ``interval_level``; both are ``None`` without intervals.
    """

    num_samples: int
    num_classes: int
    num_bins: int
    error: float
    nll: float
    brier: float
    ece: float
    mce: float
    classwise_ece: float
    signed_ece: float
    ece_over: float
    ece_under: float
    adaece: float | None = None
    debiased_ece: float | None = None
    smooth_ece: float | None = None
    smooth_ece_bandwidth: float | None = None
    temperature: float | None = None
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    interval_method: IntervalMethod | None = None
    interval_level: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


class CalibrationAccumulator:
    """Accumulate predictions batch by batch; ``compute()`` gives a :class:`CalibrationReport`.

    Example:
        >>> import torch
        >>> accumulator = CalibrationAccumulator(num_classes=3)
        >>> for _ in range(4):
        ...     accumulator.update(torch.randn(8, 3), torch.randint(3, (8,)))
        >>> report = accumulator.compute()
        >>> report.num_samples
        32
    """

    def __init__(
        self,
        num_classes: int,
        num_bins: int = 15,
        from_probs: bool = False,
        keep_samples: bool = True,
        temperature: float | None = None,
    ) -> None:
        check_num_bins(num_bins)
        if temperature is not None and (from_probs or not 0.0 < temperature < math.inf):
            raise ValueError(
                f"temperature must be a finite float > 0 applied to logits (from_probs=False), "
                f"got {temperature!r} with from_probs={from_probs}"
            )
        self.temperature = temperature
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
        self.num_classes, self.num_bins = num_classes, num_bins
        self.from_probs, self.keep_samples = from_probs, keep_samples
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.num_samples = 0
        self._top: Bins | None = None
        self._classwise: Bins | None = None
        # [number right, Σ ⌊NLL⌋, Σ frac(NLL) · 2^24, Σ Brier · 2^24, number of infinite NLLs]
        self._totals: Tensor | None = None
        self._samples: list[Tensor] = []  # (4, M) float64 rows: confidence, right, NLL, Brier
        self._synced: tuple[Bins, Bins, Tensor, Tensor, int] | None = None

    def update(self, scores: Tensor, labels: Tensor) -> None:
        """Add a batch: scores ``(N, C)`` or ``(N, C, d1, ...)`` and labels ``(N, ...)``."""
        flat, labels = checked(scores, labels, self.from_probs)
        if flat.shape[1] != self.num_classes:
            raise ValueError(
                f"scores have {flat.shape[1]} classes, the accumulator {self.num_classes}"
            )
        check_sample_count(self.num_samples + len(labels))
        # one block of per-sample values, filled chunk by chunk: many small ones would be
        # scattered through the heap, which keeps their memory after they are concatenated
        rows = 4 if self.keep_samples else 0
        samples = torch.empty(rows, len(labels), dtype=torch.float64, device=flat.device)
        start = 0
        for chunk, chunk_labels in row_chunks(flat, labels):  # a fixed size of temporaries
            stop = start + len(chunk_labels)
            self._add(chunk, chunk_labels, samples[:, start:stop])
            start = stop
        if self.keep_samples:
            self._samples.append(samples)
        self.num_samples += len(labels)
        self._synced = None

    def _add(self, flat: Tensor, labels: Tensor, samples: Tensor) -> None:
        """Add checked ``(M, C)`` scores and ``(M,)`` labels to the sums, and write their
        per-sample values into ``samples`` ``(4, M)`` if they are kept."""
        if self.temperature is not None:
            flat = flat / self.temperature
        probs = probabilities_of(flat, self.from_probs)
        confidence, correct = top_label_of(flat, probs, labels)
        top = Bins.top_label(confidence, correct, self.num_bins)
        classwise = Bins.classwise(probs, labels, self.num_bins)

        nll, brier = sample_nll(flat, labels, self.from_probs), sample_brier(probs, labels)
        finite = nll.isfinite()
        finite_nll = torch.where(finite, nll, 0.0)
        whole = finite_nll.floor()
        totals = torch.stack([  # whole numbers in float64, exact in any order (see binning)
            correct.sum(dtype=torch.float64),
            whole.sum(),
            to_fixed_point(finite_nll - whole).sum(),
            to_fixed_point(brier).sum(),
            (~finite).sum(dtype=torch.float64),
        ])  # fmt: skip

        self._top = top if self._top is None else self._top + top
        self._classwise = classwise if self._classwise is None else self._classwise + classwise
        self._totals = totals if self._totals is None else self._totals + totals
        if self.keep_samples:
            samples.copy_(torch.stack([confidence.double(), correct.double(), nll, brier]))

    def sync(self) -> None:
        """Combine the statistics of every ``torch.distributed`` rank (a no-op when it is not
        initialised). Every rank then computes the global report; the local state is kept, so
        calling ``sync`` again, or after more updates, never counts a batch twice."""
        top, classwise, totals, samples = self._local()
        num_samples = self.num_samples
        if dist.is_available() and dist.is_initialized():
            sums = [top.count, top.confidence, top.correct]
            sums += [classwise.count, classwise.confidence, classwise.correct, totals]
            sums = _all_reduce_sum(sums)
            top = Bins(top.edges, *sums[:3])
            classwise = Bins(classwise.edges, *sums[3:6])
            totals = sums[6]
            samples = _all_gather_columns(samples)
            num_samples = int(top.count.sum())
        self._synced = (top, classwise, totals, samples, num_samples)

    def _local(self) -> tuple[Bins, Bins, Tensor, Tensor]:
        if self._top is None or self._classwise is None or self._totals is None:
            raise ValueError("no samples: call update() before compute() or sync()")
        if len(self._samples) != 1:  # one tensor from now on, so no sample is held twice
            empty = torch.zeros(4, 0, dtype=torch.float64, device=self._totals.device)
            self._samples = [torch.cat(self._samples, dim=1) if self._samples else empty]
        return self._top, self._classwise, self._totals, self._samples[0]

    def sums(self) -> tuple[Bins, Bins, Tensor, Tensor]:
        """The local statistics, for code that keeps them elsewhere (the torchmetrics
        adapter): top-label bins, class-wise bins, the totals ``(5,)`` and the per-sample
        values ``(4, M)`` (``(4, 0)`` without ``keep_samples``), all float64."""
        return self._local()

    def load_sums(self, top: Bins, classwise: Bins, totals: Tensor, samples: Tensor) -> None:
        """Replace the statistics with ``sums()``' parts added up elsewhere (over batches or
        ranks), as if they had been accumulated here; ``compute()`` then reports on them."""
        self.num_samples = int(top.count.sum())
        self._top, self._classwise, self._totals = top, classwise, totals
        self._samples, self._synced = [samples], None

    def top_label_bins(self) -> Bins:
        """The equal-width top-label bins (for reliability diagrams), synced if ``sync`` ran."""
        return self._state()[0]

    def _state(self) -> tuple[Bins, Bins, Tensor, Tensor, int]:
        if self._synced is not None:
            return self._synced
        return (*self._local(), self.num_samples)

    def compute(
        self,
        bootstrap_samples: int = 0,
        level: float = 0.95,
        seed: int = 0,
        interval_method: IntervalMethod = "basic",
    ) -> CalibrationReport:
        """The report; ``bootstrap_samples > 0`` adds seeded bootstrap intervals at ``level``
        (basic by default, clipped to each metric's range) for error, NLL, Brier, ECE, AdaECE
        and the debiased ECE."""
        check_method(interval_method)
        top, classwise, totals, samples, n = self._state()
        right, nll_whole, nll_frac, brier, infinite = (int(t) for t in totals)
        over, under = top.over_under()
        per_sample: dict[str, Any] = {}
        if self.keep_samples:
            if bootstrap_samples:  # the per-sample metrics are sums that ignore the order
                samples = _canonical(samples)
            confidence, hit = samples[0], samples[1].bool()
            equal_mass = adaptive_bins(confidence, hit, self.num_bins)
            smooth, bandwidth = smooth_ece(confidence, hit)
            per_sample = {
                "adaece": float(equal_mass.calibration_error()),
                "debiased_ece": float(debiased_from_bins(equal_mass)),
                "smooth_ece": float(smooth),
                "smooth_ece_bandwidth": bandwidth,
            }
            if bootstrap_samples:
                per_sample["intervals"] = _intervals(
                    samples, self.num_bins,
                    bootstrap_samples, level, seed, interval_method,
                )  # fmt: skip
                per_sample["interval_method"] = interval_method
                per_sample["interval_level"] = level
        return CalibrationReport(
            num_samples=n,
            num_classes=self.num_classes,
            num_bins=self.num_bins,
            error=1.0 - right / n,
            nll=math.inf if infinite else (nll_whole + nll_frac / SCALE) / n,
            brier=brier / SCALE / n,
            ece=float(top.calibration_error()),
            mce=float(top.max_calibration_error()),
            classwise_ece=float(classwise.calibration_error().mean()),
            signed_ece=float(top.signed_calibration_error()),
            ece_over=float(over),
            ece_under=float(under),
            temperature=self.temperature,
            **per_sample,
        )


def _canonical(samples: Tensor) -> Tensor:
    """``samples`` with their columns sorted in place by every row, most significant first: the
    same multiset of samples gives the same matrix, whatever the batching or the ranks it came
    from. Stable sorts from the least significant row, each applied row by row, so the samples
    are never copied whole; into buffers made once, which the heap cannot fragment."""
    values, order = torch.empty_like(samples[0]), torch.empty_like(samples[0], dtype=torch.long)
    for key in reversed(range(samples.shape[0])):
        torch.sort(samples[key], stable=True, out=(values, order))
        for row in samples:
            row.copy_(torch.index_select(row, 0, order, out=values))
    return samples


def _all_reduce_sum(tensors: list[Tensor]) -> list[Tensor]:
    """Sum each tensor over the ranks, with one collective for all of them."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    out, start = [], 0
    for t in tensors:
        out.append(flat[start : start + t.numel()].view(t.shape))
        start += t.numel()
    return out


def _all_gather_columns(local: Tensor) -> Tensor:
    """Concatenate every rank's ``(rows, M_rank)`` tensor along the columns."""
    sizes = [
        torch.zeros(1, dtype=torch.long, device=local.device) for _ in range(dist.get_world_size())
    ]
    dist.all_gather(sizes, torch.tensor([local.shape[1]], device=local.device))
    width = int(max(int(s) for s in sizes))
    padded = torch.zeros(local.shape[0], width, dtype=local.dtype, device=local.device)
    padded[:, : local.shape[1]] = local
    gathered = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:, : int(s)] for g, s in zip(gathered, sizes, strict=True)], dim=1)


RANGES = {
    "error": (0.0, 1.0),
    "nll": (0.0, math.inf),
    "brier": (0.0, 2.0),
    "ece": (0.0, 1.0),
    "adaece": (0.0, 1.0),
    "debiased_ece": (0.0, 1.0),
}
"""The range of each metric with an interval, which the (basic) interval is clipped to."""


def _intervals(
    samples: Tensor,
    num_bins: int,
    resamples: int,
    level: float,
    seed: int,
    method: IntervalMethod,
) -> dict[str, tuple[float, float]]:
    """Bootstrap intervals of the metrics computed from per-sample values."""
    confidence, right, nll, brier = samples
    right_bool = right.bool()

    def statistic(index: Tensor) -> dict[str, float]:
        conf, hit = confidence[index], right_bool[index]
        equal_mass = adaptive_bins(conf, hit, num_bins)
        return {
            "error": 1.0 - float(right[index].mean()),
            "nll": float(nll[index].mean()),
            "brier": float(brier[index].mean()),
            "ece": float(Bins.top_label(conf, hit, num_bins).calibration_error()),
            "adaece": float(equal_mass.calibration_error()),
            "debiased_ece": float(debiased_from_bins(equal_mass)),
        }

    num_samples, device = samples.shape[1], samples.device
    return bootstrap(statistic, num_samples, resamples, level, seed, device, method, RANGES)


def calibration_report(
    scores: Tensor,
    labels: Tensor,
    num_bins: int = 15,
    from_probs: bool = False,
    bootstrap_samples: int = 0,
    level: float = 0.95,
    seed: int = 0,
    temperature: float | None = None,
    interval_method: IntervalMethod = "basic",
) -> CalibrationReport:
    """Every metric of ``(scores, labels)`` in one :class:`CalibrationReport`; with
    ``temperature``, of ``logits / temperature``, and the report records T. With
    ``bootstrap_samples > 0``, bootstrap intervals at ``level`` (``interval_method``, see
    :meth:`CalibrationAccumulator.compute`).

    Example:
        >>> import torch
        >>> report = calibration_report(torch.randn(100, 5), torch.randint(5, (100,)))
        >>> report.num_samples, 0.0 <= report.ece <= report.mce <= 1.0
        (100, True)
    """
    scores = as_tensor(scores, "scores")
    num_classes = scores.shape[1] if scores.dim() >= 2 else 1
    accumulator = CalibrationAccumulator(num_classes, num_bins, from_probs, temperature=temperature)
    accumulator.update(scores, labels)
    return accumulator.compute(bootstrap_samples, level, seed, interval_method)
