"""Post-hoc calibration maps on logits, fitted on a validation split, never on the test split:
temperature scaling (:mod:`focalcal.scaling.temperature`) and the affine maps, vector and matrix
scaling with ODIR (:mod:`focalcal.scaling.affine`)."""

from focalcal.scaling.affine import (
    AFFINE_GRADIENT_TOLERANCE,
    ODIR_RATE,
    AffineCalibration,
    fit_matrix_scaling,
    fit_vector_scaling,
    odir_penalties,
)
from focalcal.scaling.temperature import (
    T_MAX,
    T_MIN,
    TEMPERATURE_GRID,
    TOLERANCE,
    Objective,
    TemperatureScaled,
    ece_per_temperature,
    fit_temperature,
)

__all__ = [
    "AFFINE_GRADIENT_TOLERANCE",
    "ODIR_RATE",
    "TEMPERATURE_GRID",
    "TOLERANCE",
    "T_MAX",
    "T_MIN",
    "AffineCalibration",
    "Objective",
    "TemperatureScaled",
    "ece_per_temperature",
    "fit_matrix_scaling",
    "fit_temperature",
    "fit_vector_scaling",
    "odir_penalties",
]
