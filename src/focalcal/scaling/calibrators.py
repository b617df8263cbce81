"""One interface for every post-hoc calibration map: fit on validation logits, apply to new ones.

- :func:`fit_calibrator` — ``fit_calibrator(name, logits, labels, **options)`` fits the map
  ``name`` (one of :func:`calibrator_names`) on these (validation) data.
- :class:`Calibrator` — the fitted map, an ``nn.Module``: ``transform(logits)`` (or calling it)
  gives calibrated **log-probabilities** of the logits' shape, whose softmax is the calibrated
  distribution (so every metric reads them as logits); its tensors are buffers, so
  ``state_dict()``/``load_state_dict()`` and ``.to()`` work as for any module.
- :func:`save_calibrator` / :func:`load_calibrator` — a fitted map as plain JSON (the method,
  its options and its tensors as numbers, float64 written exactly), never a pickle.

A method is a :class:`Calibrator` subclass registered with :func:`register`: its ``name``, a
classmethod ``fit(scores, labels, **options)`` on checked ``(M, C)`` logits and ``(M,)`` labels,
and ``_transform`` on checked ``(M, C)`` logits. Its constructor takes its options (plain JSON
values, returned by :meth:`Calibrator.options`) and its tensors as keyword arguments named as
its buffers, which is how :func:`load_calibrator` rebuilds it.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from focalcal._checks import TensorLike, as_tensor, check_scores, unknown_name
from focalcal._io import atomic_write_text
from focalcal.metrics._inputs import checked
from focalcal.scaling.affine import (
    AffineCalibration,
    _affine,
    fit_matrix_scaling,
    fit_vector_scaling,
)
from focalcal.scaling.temperature import fit_temperature

FORMAT = "focalcal-calibrator"
VERSION = 1

_REGISTRY: dict[str, type[Calibrator]] = {}
C = TypeVar("C", bound="type[Calibrator]")


class Calibrator(nn.Module):
    """A fitted post-hoc map from ``(N, C)`` or ``(N, C, d1, ...)`` logits to calibrated
    log-probabilities of the same shape (computed in float64, returned in float64)."""

    name: ClassVar[str]
    reference: ClassVar[str] = ""  # the paper it follows, one line

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
        self.num_classes = num_classes

    @classmethod
    def fit(cls, scores: Tensor, labels: Tensor, **options: Any) -> Calibrator:
        """The map fitted on checked ``(M, C)`` logits and ``(M,)`` labels."""
        raise NotImplementedError

    def _transform(self, scores: Tensor) -> Tensor:
        """Calibrated float64 log-probabilities ``(M, C)`` of checked ``(M, C)`` logits."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The constructor's arguments that are not tensors (plain JSON values)."""
        return {"num_classes": self.num_classes}

    def summary(self) -> dict[str, Any]:
        """The fitted parameters a report shows (numbers, e.g. ``{"T": 1.8}``)."""
        return {}

    def transform(self, logits: TensorLike) -> Tensor:
        """Calibrated log-probabilities of ``logits`` ``(N, C)`` or ``(N, C, d1, ...)`` (a
        tensor or an array), same shape, float64, on the logits' device."""
        logits = as_tensor(logits, "logits")
        check_scores(logits)
        if logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits have {logits.shape[1]} classes, the {self.name} calibrator "
                f"{self.num_classes}"
            )
        moved = logits.detach().movedim(1, -1)
        flat = moved.reshape(-1, self.num_classes)
        if flat.shape[0] == 0:
            raise ValueError("the input is empty: a calibrator needs at least one sample")
        if not bool(flat.isfinite().all()):
            raise ValueError("logits hold NaN or infinite values")
        out = self._transform(flat.double())
        return out.reshape(moved.shape).movedim(-1, 1)

    def forward(self, logits: TensorLike) -> Tensor:
        return self.transform(logits)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in {**self.options(), **self.summary()}.items())


def register(cls: C) -> C:
    """Add a :class:`Calibrator` subclass to :func:`calibrator_names` under ``cls.name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"a calibrator named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def calibrator_names() -> list[str]:
    """The registered methods, in the order they were registered."""
    return list(_REGISTRY)


FULL_MATRIX = ("matrix", "dirichlet")
FULL_MATRIX_CLASSES = 100
"""Above this many classes :func:`default_calibrators` leaves out the maps that fit a full
C × C matrix (:data:`FULL_MATRIX`: a million parameters at 1 000 classes)."""


def default_calibrators(num_classes: int) -> list[str]:
    """The methods ``focalcal calibrate`` and ``evaluate`` fit unless told otherwise: every one
    of :func:`calibrator_names`, but those of :data:`FULL_MATRIX` only up to
    :data:`FULL_MATRIX_CLASSES` classes (name them to fit them anyway).

    Example:
        >>> "matrix" in default_calibrators(10), "matrix" in default_calibrators(200)
        (True, False)
    """
    if num_classes <= FULL_MATRIX_CLASSES:
        return calibrator_names()
    return [name for name in calibrator_names() if name not in FULL_MATRIX]


def calibrator_class(name: str) -> type[Calibrator]:
    if name not in _REGISTRY:
        raise unknown_name("calibrator", name, calibrator_names())
    return _REGISTRY[name]


def fit_calibrator(name: str, logits: TensorLike, labels: TensorLike, **options: Any) -> Calibrator:
    """Fit the post-hoc map ``name`` (see :func:`calibrator_names`) on validation ``logits``
    ``(N, C)`` or ``(N, C, d1, ...)`` and class-index ``labels`` ``(N)`` or ``(N, d1, ...)``;
    ``options`` are the method's (an unknown one is a ``ValueError`` naming it).

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.0]] * 4)
        >>> labels = torch.tensor([0, 0, 0, 1])
        >>> calibrator = fit_calibrator("temperature", logits, labels)
        >>> calibrator.transform(logits).exp()[0].round(decimals=3)  # 75 % right: p = 0.75
        tensor([0.7500, 0.2500], dtype=torch.float64)
    """
    cls = calibrator_class(name)
    accepted = inspect.signature(cls.fit).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(options) - set(accepted) - {"scores", "labels"})
        if unknown:
            allowed = sorted(set(accepted) - {"scores", "labels"})
            raise ValueError(
                f"the {name} calibrator has no option {unknown[0]!r}; it takes {allowed}"
            )
    scores, labels = checked(logits, labels, from_probs=False)
    return cls.fit(scores.detach(), labels, **options)


def _plain(value: Any) -> Any:
    """A JSON value, float64 numbers written exactly (``repr`` round-trips); non-finite
    numbers as the strings "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _number(value: Any) -> Any:
    if isinstance(value, str):
        return float(value)
    if isinstance(value, list):
        return [_number(v) for v in value]
    return value


def calibrator_to_dict(calibrator: Calibrator) -> dict[str, Any]:
    """The calibrator as plain data: ``{"format", "version", "method", "options", "tensors"}``,
    each tensor as ``{"dtype", "shape", "values"}`` (float64 values exactly)."""
    tensors = {
        name: {
            "dtype": str(t.dtype).removeprefix("torch."),
            "shape": list(t.shape),
            "values": _plain(t.detach().cpu().double().reshape(-1).tolist()),
        }
        for name, t in calibrator.state_dict().items()
    }
    return {
        "format": FORMAT,
        "version": VERSION,
        "method": calibrator.name,
        "options": calibrator.options(),
        "summary": calibrator.summary(),
        "tensors": tensors,
    }


def calibrator_from_dict(data: dict[str, Any], source: str = "the calibrator") -> Calibrator:
    """The calibrator of :func:`calibrator_to_dict`'s data; ``source`` names it in errors."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{source} is not a focalcal calibrator (no format {FORMAT!r})")
    if data.get("version") != VERSION:
        raise ValueError(f"{source} has version {data.get('version')!r}; expected {VERSION}")
    cls = calibrator_class(data.get("method", ""))
    try:
        tensors = {
            name: torch.tensor(_number(t["values"]), dtype=getattr(torch, t["dtype"])).reshape(
                t["shape"]
            )
            for name, t in data["tensors"].items()
        }
        arguments: dict[str, Any] = {**data["options"], **tensors}
        return cls(**arguments)
    except (KeyError, TypeError, AttributeError, RuntimeError) as error:
        raise ValueError(f"{source} is damaged: {error}") from None


def save_calibrator(calibrator: Calibrator, path: str | Path) -> Path:
    """Write ``calibrator`` to ``path`` as JSON (atomically: an interrupted write leaves the
    previous file). Returns the path."""
    path = Path(path)
    atomic_write_text(path, json.dumps(calibrator_to_dict(calibrator), indent=1) + "\n")
    return path


def load_calibrator(path: str | Path) -> Calibrator:
    """The calibrator :func:`save_calibrator` wrote to ``path`` (plain JSON, no code runs)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a focalcal calibrator: not JSON ({error})") from None
    return calibrator_from_dict(data, str(path))


def _log_softmax(scores: Tensor) -> Tensor:
    return torch.log_softmax(scores, dim=1)


@register
class Temperature(Calibrator):
    """Temperature scaling (Guo et al., ICML 2017): ``log_softmax(z / T)``, T from
    :func:`~focalcal.scaling.fit_temperature` (``objective="nll"`` by default; ``"ece"`` is
    the paper's grid)."""

    name = "temperature"
    reference = "Guo, Pleiss, Sun, Weinberger. On Calibration of Modern Neural Networks. ICML 2017"
    T: Tensor

    def __init__(self, num_classes: int, objective: str = "nll", T: Tensor | float = 1.0) -> None:
        super().__init__(num_classes)
        self.objective = objective
        self.register_buffer("T", torch.as_tensor(T, dtype=torch.float64).reshape(()).clone())
        if not 0.0 < float(self.T) < math.inf:
            raise ValueError(f"T must be finite and > 0, got {float(self.T)!r}")

    @classmethod
    def fit(  # type: ignore[override]  # a method takes its own options
        cls, scores: Tensor, labels: Tensor, objective: str = "nll"
    ) -> Temperature:
        temperature = fit_temperature(scores, labels, objective)  # type: ignore[arg-type]
        return cls(scores.shape[1], objective, temperature)

    def _transform(self, scores: Tensor) -> Tensor:
        return _log_softmax(scores / self.T.to(scores.device))

    def options(self) -> dict[str, Any]:
        return {**super().options(), "objective": self.objective}

    def summary(self) -> dict[str, Any]:
        return {"T": float(self.T)}


class _Affine(Calibrator):
    """``log_softmax(W z + b)`` or ``log_softmax(w ⊙ z + b)``, fitted by
    :mod:`focalcal.scaling.affine`."""

    weight: Tensor
    bias: Tensor

    def __init__(self, num_classes: int, weight: Tensor, bias: Tensor) -> None:
        super().__init__(num_classes)
        affine = AffineCalibration(weight.double(), bias.double())  # checks shapes and values
        if affine.num_classes != num_classes:
            raise ValueError(f"bias has {affine.num_classes} classes, not {num_classes}")
        self.register_buffer("weight", affine.weight)
        self.register_buffer("bias", affine.bias)

    def _transform(self, scores: Tensor) -> Tensor:
        return _log_softmax(
            _affine(scores, self.weight.to(scores.device), self.bias.to(scores.device))
        )


@register
class Vector(_Affine):
    """Vector scaling (Guo et al. 2017) with ODIR-style penalties:
    :func:`~focalcal.scaling.fit_vector_scaling`."""

    name = "vector"
    reference = Temperature.reference

    @classmethod
    def fit(cls, scores: Tensor, labels: Tensor, **options: Any) -> Vector:
        affine = fit_vector_scaling(scores, labels, **options)
        return cls(scores.shape[1], affine.weight, affine.bias)


@register
class Matrix(_Affine):
    """Matrix scaling with ODIR (Kull et al., NeurIPS 2019) on the logits:
    :func:`~focalcal.scaling.fit_matrix_scaling`."""

    name = "matrix"
    reference = (
        "Kull, Perello-Nieto, Kängsepp, Silva Filho, Song, Flach. Beyond temperature scaling: "
        "Obtaining well-calibrated multiclass probabilities with Dirichlet calibration. "
        "NeurIPS 2019"
    )

    @classmethod
    def fit(cls, scores: Tensor, labels: Tensor, **options: Any) -> Matrix:
        affine = fit_matrix_scaling(scores, labels, **options)
        return cls(scores.shape[1], affine.weight, affine.bias)
