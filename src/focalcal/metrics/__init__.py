"""Calibration metrics: exact to the bin edge, vectorised, streaming and distributed."""

from focalcal.metrics.binning import Bins
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
    signed_calibration_error,
)

__all__ = [
    "Bins",
    "adaece",
    "adaptive_calibration_error",
    "brier_score",
    "classwise_calibration_error",
    "classwise_ece",
    "ece",
    "error_rate",
    "expected_calibration_error",
    "maximum_calibration_error",
    "mce",
    "negative_log_likelihood",
    "nll",
    "signed_calibration_error",
]
