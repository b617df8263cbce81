"""Calibration metrics: exact to the bin edge, vectorised, streaming and distributed.

``CalibrationMetric`` (a ``torchmetrics.Metric``) is imported on first use, and listed in
``__all__`` only where torchmetrics is installed, so the rest needs no torchmetrics.
"""

from importlib.util import find_spec
from typing import Any

from focalcal.metrics.binning import Bins
from focalcal.metrics.bootstrap import bootstrap_interval
from focalcal.metrics.calibration import (
    adaece,
    adaptive_calibration_error,
    brier_score,
    classwise_calibration_error,
    classwise_ece,
    ece,
    error_rate,
    expected_calibration_error,
    maximum_calibration_error,
    mce,
    negative_log_likelihood,
    nll,
    reliability_bins,
    signed_calibration_error,
)
from focalcal.metrics.extensions import (
    debiased_calibration_error,
    debiased_from_bins,
    smooth_calibration_error,
    smooth_ece,
)
from focalcal.metrics.ood import (
    auroc,
    entropy,
    fpr_at_tpr,
    max_confidence,
    ood_auroc,
    ood_fpr_at_tpr,
    ood_scores,
    roc_curve,
)
from focalcal.metrics.streaming import CalibrationAccumulator, CalibrationReport, calibration_report

__all__ = [
    "Bins",
    "CalibrationAccumulator",
    "CalibrationReport",
    "adaece",
    "adaptive_calibration_error",
    "auroc",
    "bootstrap_interval",
    "brier_score",
    "calibration_report",
    "classwise_calibration_error",
    "classwise_ece",
    "debiased_calibration_error",
    "debiased_from_bins",
    "ece",
    "entropy",
    "error_rate",
    "expected_calibration_error",
    "fpr_at_tpr",
    "max_confidence",
    "maximum_calibration_error",
    "mce",
    "negative_log_likelihood",
    "nll",
    "ood_auroc",
    "ood_fpr_at_tpr",
    "ood_scores",
    "reliability_bins",
    "roc_curve",
    "signed_calibration_error",
    "smooth_calibration_error",
    "smooth_ece",
]

if find_spec("torchmetrics") is not None:
    __all__ += ["CalibrationMetric"]


def __getattr__(name: str) -> Any:
    if name == "CalibrationMetric":  # ImportError naming the extra without torchmetrics
        from focalcal.metrics.torchmetric import CalibrationMetric

        return CalibrationMetric
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
