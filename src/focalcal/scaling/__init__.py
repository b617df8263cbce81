"""Post-hoc calibration maps on logits, fitted on a validation split, never on the test split:
temperature scaling (:mod:`focalcal.scaling.temperature`), the affine maps, vector and matrix
scaling with ODIR (:mod:`focalcal.scaling.affine`), and one interface for every method,
:func:`fit_calibrator` (:mod:`focalcal.scaling.calibrators`; the methods beyond those in
:mod:`focalcal.scaling.nonparametric` and :mod:`focalcal.scaling.ensemble`)."""

# the modules of methods register them when imported: the order of calibrator_names()
from focalcal.scaling import ensemble, nonparametric  # noqa: F401
from focalcal.scaling.affine import (
    AFFINE_GRADIENT_TOLERANCE,
    ODIR_RATE,
    AffineCalibration,
    fit_matrix_scaling,
    fit_vector_scaling,
    odir_penalties,
)
from focalcal.scaling.calibrators import (
    Calibrator,
    calibrator_names,
    default_calibrators,
    fit_calibrator,
    load_calibrator,
    save_calibrator,
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
    "Calibrator",
    "Objective",
    "TemperatureScaled",
    "calibrator_names",
    "default_calibrators",
    "ece_per_temperature",
    "fit_calibrator",
    "fit_matrix_scaling",
    "fit_temperature",
    "fit_vector_scaling",
    "load_calibrator",
    "odir_penalties",
    "save_calibrator",
]
