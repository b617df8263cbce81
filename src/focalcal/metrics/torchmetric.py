"""The streaming report as a ``torchmetrics.Metric``, for Lightning and other torchmetrics users.

:class:`CalibrationMetric` keeps :class:`~focalcal.metrics.streaming.CalibrationAccumulator`'s
exact sums as registered states, so torchmetrics moves them with ``.to(device)``, resets them
and syncs them across ``torch.distributed`` ranks (sums with ``"sum"``, the per-sample rows with
``"cat"``); the accumulator computes every batch's sums and the report, so ``compute()`` gives
the same :class:`~focalcal.metrics.streaming.CalibrationReport` as
:func:`~focalcal.metrics.streaming.calibration_report` on all the data, bit for bit. Needs
torchmetrics: ``pip install 'focalcal[lightning]'``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn import Module

try:
    from torchmetrics import Metric
except ImportError as error:  # the core of focalcal does not need torchmetrics
    raise ImportError(
        "focalcal.metrics.CalibrationMetric needs torchmetrics: pip install 'focalcal[lightning]'"
    ) from error

from focalcal.metrics.binning import Bins, check_sample_count, equal_width_edges
from focalcal.metrics.streaming import CalibrationAccumulator, CalibrationReport

TOP_LABEL = ("top_count", "top_confidence", "top_correct")
CLASSWISE = ("classwise_count", "classwise_confidence", "classwise_correct")


class CalibrationMetric(Metric):
    """Every calibration metric of a stream of batches, as a torchmetrics ``Metric``.

    The arguments are :class:`~focalcal.metrics.streaming.CalibrationAccumulator`'s, plus the
    bootstrap intervals of :meth:`~focalcal.metrics.streaming.CalibrationAccumulator.compute`
    (``bootstrap_samples > 0``, at ``level``, seeded by ``seed``) and torchmetrics' keyword
    arguments (``sync_on_compute``, ``process_group``, ``compute_on_cpu``, ...).
    ``update(scores, labels)`` takes what the accumulator takes; ``compute()`` returns a
    :class:`~focalcal.metrics.streaming.CalibrationReport`, so log its fields
    (``report.ece``), not the metric itself.

    The states are float64 whole numbers, exact only in float64: they keep that dtype whatever
    the module is cast to (``.to(device)`` moves them). With ``keep_samples`` (for AdaECE, the
    debiased and smooth ECE and the intervals) a ``"cat"`` state also holds four float64
    values per sample, rows ``(confidence, correct, NLL, Brier)``. Under ``torch.distributed``
    every rank must have called ``update`` before ``compute`` (torchmetrics cannot gather an
    empty ``"cat"`` state of two dimensions).

    Example:
        >>> import torch
        >>> metric = CalibrationMetric(num_classes=3)
        >>> for _ in range(4):
        ...     metric.update(torch.randn(8, 3), torch.randint(3, (8,)))
        >>> report = metric.compute()
        >>> report.num_samples, 0.0 <= report.ece <= report.mce <= 1.0
        (32, True)
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    # the states, registered with add_state
    top_count: Tensor
    top_confidence: Tensor
    top_correct: Tensor
    classwise_count: Tensor
    classwise_confidence: Tensor
    classwise_correct: Tensor
    totals: Tensor
    samples: list[Tensor]  # (M, 4) blocks; one tensor while synced

    def __init__(
        self,
        num_classes: int,
        num_bins: int = 15,
        from_probs: bool = False,
        keep_samples: bool = True,
        temperature: float | None = None,
        bootstrap_samples: int = 0,
        level: float = 0.95,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # checks the arguments, computes each batch's sums and the report from the states
        self._accumulator = CalibrationAccumulator(
            num_classes, num_bins, from_probs, keep_samples, temperature
        )
        self.num_classes, self.num_bins, self.keep_samples = num_classes, num_bins, keep_samples
        self.bootstrap_samples, self.level, self.seed = bootstrap_samples, level, seed
        shapes: dict[str, tuple[int, ...]] = {name: (num_bins,) for name in TOP_LABEL}
        shapes |= {name: (num_classes, num_bins) for name in CLASSWISE}
        shapes |= {"totals": (5,)}  # the bins' edges are the real b / B for every dtype
        for name, shape in shapes.items():
            zeros = torch.zeros(shape, dtype=torch.float64)
            self.add_state(name, zeros, dist_reduce_fx="sum")
        if keep_samples:
            self.add_state("samples", [], dist_reduce_fx="cat")

    def update(self, scores: Tensor, labels: Tensor) -> None:
        """Add a batch: scores ``(N, C)`` or ``(N, C, d1, ...)`` and labels ``(N, ...)``."""
        batch = self._accumulator
        batch.reset()
        batch.update(scores, labels)
        top, classwise, totals, samples = batch.sums()
        batch.reset()
        if top.count.device != self.top_count.device:
            raise ValueError(
                f"scores are on {top.count.device}, the metric's states on "
                f"{self.top_count.device}: move the metric with .to(device)"
            )
        # one read back (a host synchronisation on an accelerator)
        check_sample_count(int(self.top_count.sum() + top.count.sum()))
        parts = [top.count, top.confidence, top.correct]
        parts += [classwise.count, classwise.confidence, classwise.correct, totals]
        for name, value in zip((*TOP_LABEL, *CLASSWISE, "totals"), parts, strict=True):
            getattr(self, name).add_(value)
        if self.keep_samples:
            self.samples.append(samples.T)  # (M, 4): torchmetrics concatenates along dim 0

    def compute(self) -> CalibrationReport:
        """The report on every batch since the last ``reset()`` (of every rank, synced)."""
        if int(self.top_count.sum()) == 0:
            raise ValueError("no samples: call update() before compute()")
        edges = equal_width_edges(self.num_bins, self.top_count.device)
        top = Bins(edges, self.top_count, self.top_confidence, self.top_correct)
        classwise = Bins(
            edges, self.classwise_count, self.classwise_confidence, self.classwise_correct
        )
        if self.keep_samples:  # (M, 4) rows: a list, or one tensor once synced
            rows = [self.samples] if isinstance(self.samples, Tensor) else self.samples
            samples = torch.cat([part.T for part in rows], dim=1)  # a copy, sorted in place
        else:
            samples = torch.zeros(4, 0, dtype=torch.float64, device=edges.device)
        report = self._accumulator
        report.load_sums(top, classwise, self.totals, samples)
        try:
            return report.compute(self.bootstrap_samples, self.level, self.seed)
        finally:
            report.reset()

    def _wrap_compute(self, compute: Callable[[], Any]) -> Callable[[], Any]:
        """torchmetrics' wrapper (sync, cache) walks into a dataclass result to squeeze and
        clone its tensors, and fails on the frozen report: it gets the report in a box."""
        boxed = super()._wrap_compute(lambda: _Box(compute()))

        @functools.wraps(compute)
        def unboxed() -> CalibrationReport:
            report: CalibrationReport = boxed().report
            return report

        return unboxed

    def _apply(self, fn: Callable[[Tensor], Tensor], exclude_state: Sequence[str] = "") -> Module:
        """Move the states with the module, but keep them float64 (torchmetrics would cast
        them with ``.to(dtype)``, and a cast to a narrower float would round the sums)."""
        super()._apply(fn, exclude_state=(*exclude_state, *self._defaults))  # returns self
        for name, default in self._defaults.items():
            if name in exclude_state:
                continue
            value = getattr(self, name)
            if isinstance(default, Tensor):
                self._defaults[name] = default.to(self.device)
                setattr(self, name, value.to(self.device))
            else:
                self._defaults[name] = [v.to(self.device) for v in default]
                setattr(self, name, [v.to(self.device) for v in value])
        return self


class _Box:
    """Holds a report where torchmetrics does not look."""

    __slots__ = ("report",)

    def __init__(self, report: CalibrationReport) -> None:
        self.report = report
