"""numpy arrays, nested lists and anything torch.as_tensor takes are read as tensors by every
metric and calibrator, with the same results as the tensors they hold."""

import math

import numpy as np
import pytest
import torch

import focalcal.metrics as metrics
from focalcal.metrics import CalibrationAccumulator
from focalcal.scaling import (
    AffineCalibration,
    TemperatureScaled,
    calibrator_names,
    fit_calibrator,
    fit_matrix_scaling,
    fit_temperature,
    fit_vector_scaling,
)

N, C = 80, 4
GENERATOR = torch.Generator().manual_seed(0)
LOGITS = 3 * torch.randn(N, C, generator=GENERATOR, dtype=torch.float64)
LABELS = torch.randint(C, (N,), generator=GENERATOR)
PROBS = LOGITS.softmax(1)

# name -> call(scores, labels, from_probs), for every public function of scores
METRICS = {
    name: (lambda fn: lambda s, y, p: fn(s, y, from_probs=p))(getattr(metrics, name))
    for name in [
        "adaece",
        "adaptive_calibration_error",
        "brier_score",
        "classwise_calibration_error",
        "classwise_ece",
        "debiased_calibration_error",
        "ece",
        "error_rate",
        "expected_calibration_error",
        "maximum_calibration_error",
        "mce",
        "negative_log_likelihood",
        "nll",
        "reliability_bins",
        "signed_calibration_error",
        "smooth_calibration_error",
    ]
} | {
    "entropy": lambda s, y, p: metrics.entropy(s, from_probs=p),
    "max_confidence": lambda s, y, p: metrics.max_confidence(s, from_probs=p),
    "ood_auroc": lambda s, y, p: metrics.ood_auroc(s[:30], s[30:], from_probs=p),
    "calibration_report": lambda s, y, p: metrics.calibration_report(
        s, y, from_probs=p, bootstrap_samples=5
    ).to_dict(),
    "bootstrap_interval": lambda s, y, p: metrics.bootstrap_interval(
        metrics.ece, s, y, 5, from_probs=p
    ),
}


def accumulated(scores, labels, from_probs):
    accumulator = CalibrationAccumulator(C, from_probs=from_probs)
    accumulator.update(scores, labels)
    return accumulator.compute().to_dict()


METRICS["CalibrationAccumulator"] = accumulated


def same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if hasattr(a, "__dataclass_fields__"):
        return all(same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("kind", ["numpy", "numpy float32", "list"])
@pytest.mark.parametrize("from_probs", [False, True])
@pytest.mark.parametrize("name", sorted(METRICS))
def test_every_metric_takes_arrays(name, from_probs, kind):
    scores = PROBS if from_probs else LOGITS
    if kind == "numpy float32":
        scores = scores.float()
        if from_probs:
            scores = LOGITS.float().softmax(1)
    expected = METRICS[name](scores, LABELS, from_probs)
    array, labels = scores.numpy(), LABELS.numpy()
    if kind == "list":  # nested Python floats are torch's default dtype, float32
        array, labels = scores.tolist(), LABELS.tolist()
        expected = METRICS[name](torch.tensor(array), LABELS, from_probs)
    assert same(METRICS[name](array, labels, from_probs), expected)


def test_ood_scores_and_smooth_ece_take_arrays():
    a, b = LOGITS[:, 0], LOGITS[:, 1]
    assert torch.equal(metrics.auroc(a.numpy(), b.numpy()), metrics.auroc(a, b))
    assert same(metrics.roc_curve(a.numpy(), b.numpy()), metrics.roc_curve(a, b))
    confidence, correct = PROBS.amax(1), PROBS.argmax(1) == LABELS
    got = metrics.smooth_ece(confidence.numpy(), correct.numpy())
    assert same(got, metrics.smooth_ece(confidence, correct))


def test_read_only_and_non_contiguous_arrays():
    array = np.asfortranarray(LOGITS.numpy())  # column-major
    array.flags.writeable = False  # as np.load(mmap_mode="r") gives
    assert torch.equal(metrics.ece(array, LABELS.numpy()), metrics.ece(LOGITS, LABELS))


def test_every_calibrator_fits_and_transforms_arrays():
    for name in calibrator_names():
        from_tensors = fit_calibrator(name, LOGITS, LABELS)
        from_arrays = fit_calibrator(name, LOGITS.numpy(), LABELS.numpy())
        expected = from_tensors.transform(LOGITS)
        assert torch.equal(from_arrays.transform(LOGITS.numpy()), expected), name
        assert torch.equal(from_tensors(LOGITS.numpy()), expected), name


def test_the_scaling_functions_take_arrays():
    z, y = LOGITS.numpy(), LABELS.numpy()
    assert fit_temperature(z, y) == fit_temperature(LOGITS, LABELS)
    assert fit_temperature(z, y, "nll") == fit_temperature(LOGITS, LABELS, "nll")
    for fit in (fit_vector_scaling, fit_matrix_scaling):
        got, expected = fit(z, y), fit(LOGITS, LABELS)
        assert torch.equal(got.weight, expected.weight) and torch.equal(got.bias, expected.bias)
        assert torch.equal(got(z), expected(LOGITS))
    affine = AffineCalibration(torch.ones(C), torch.zeros(C))
    assert torch.equal(affine(z), LOGITS)
    scaled = TemperatureScaled(torch.nn.Identity()).fit(z, y)
    assert scaled.temperature == pytest.approx(fit_temperature(LOGITS, LABELS), rel=1e-7)


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        (np.array([["a", "b"]]), "scores must be a tensor or an array of numbers, got ndarray"),
        (np.array([[1, 2]], dtype=object), "scores must be a tensor or an array of numbers"),
        ([[0.1], [0.2, 0.3]], "scores must be a tensor or an array of numbers, got list"),
        (np.array([[1, 2]]), "scores must be a floating-point tensor, got torch.int64"),
        ("0.5", "scores must be a tensor or an array of numbers, got str"),
    ],
)
def test_arrays_that_are_not_scores_are_refused_naming_them(scores, message):
    with pytest.raises(ValueError, match=message):
        metrics.ece(scores, np.array([0]))


def test_float_labels_in_an_array_are_refused():
    with pytest.raises(ValueError, match="labels must hold class indices"):
        metrics.ece(LOGITS.numpy(), LABELS.numpy().astype(float))
