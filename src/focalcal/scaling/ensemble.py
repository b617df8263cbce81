"""Post-hoc maps built from the simpler ones, through :func:`~focalcal.scaling.fit_calibrator`:

- :class:`EnsembleTemperature` (``"ensemble-temperature"``) — a mixture of the temperature-scaled
  softmax, the raw softmax and the uniform distribution (Zhang, Kailkhura & Han, ICML 2020).
- :class:`Dirichlet` (``"dirichlet"``) — matrix scaling with ODIR on the log-probabilities
  instead of the logits (Kull et al., NeurIPS 2019).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import Tensor

from focalcal.scaling.affine import _penalties, fit_matrix_scaling, odir_penalties
from focalcal.scaling.calibrators import Calibrator, Matrix, _Affine, _log_softmax, register
from focalcal.scaling.temperature import fit_temperature

WEIGHT_SUM_TOLERANCE = 1e-9  # ensemble weights must sum to 1 within this
TIE_TOLERANCE = 1e-12  # a later face's minimum wins only if its Brier score is lower by more


@register
class EnsembleTemperature(Calibrator):
    r"""Ensemble temperature scaling (Zhang, Kailkhura & Han, ICML 2020): the mixture

    .. math::
        p = w_1 \operatorname{softmax}(z / T) + w_2 \operatorname{softmax}(z) + w_3 / C,
        \qquad w_j \ge 0, \quad w_1 + w_2 + w_3 = 1,

    returned as ``log p``, computed as ``logsumexp_j(log w_j + log s_j)`` over the three
    components s_j in float64, so a zero weight drops its component exactly and log p is finite
    whenever w_3 > 0 (log p ≥ log(w_3 / C)), and otherwise wherever ``log_softmax(z / T)`` or
    ``log_softmax(z)`` is (logits below about 1e305 in magnitude). Both softmaxes order the
    classes as z does, so the argmax is kept (unless w_3 = 1: every class ties).

    Fitted as Zhang et al. do, in two steps on these (validation) data. First T, by
    :func:`~focalcal.scaling.fit_temperature` with ``objective="nll"`` (their code fits T by
    the squared error below instead). Then w, with T fixed, minimising the squared error
    :math:`B(w) = \frac{1}{M}\sum_i \sum_k (p_{ik} - 1[y_i = k])^2` (the Brier score; their
    code's ``mse_w``, a mean over the M × C entries, is B / C: the same minimiser) over the
    simplex. B is a convex quadratic in w, :math:`B(w) = w^\top A w - 2 b^\top w + 1` with
    :math:`A_{jl} = \frac{1}{M}\sum_i \langle s_{ij}, s_{il} \rangle` and
    :math:`b_j = \frac{1}{M}\sum_i s_{ij}[y_i]`, so its minimum is found exactly, with no
    iterative optimiser: the best of the stationary points of B on the simplex's seven faces
    (vertices, edges, interior) that lie in their face, in float64, taken in that order, each
    in the order (softmax(z / T), softmax(z), uniform), a later one only where it lowers B by
    more than :data:`TIE_TOLERANCE` = 1e-12. So B at the fit is within 1e-12 (and rounding) of
    its minimum, the fewest components win near-ties, and logits that say nothing (every row
    constant) give w = (1, 0, 0). Deterministic. w = (1, 0, 0) is temperature scaling with
    this T, so B at the fit is at most its B (up to rounding).

    Example:
        >>> import torch
        >>> from focalcal.scaling import fit_calibrator
        >>> logits = torch.tensor([[4.0, 0.0]] * 4)
        >>> labels = torch.tensor([0, 0, 0, 1])  # 75 % right
        >>> ets = fit_calibrator("ensemble-temperature", logits, labels)
        >>> ets.transform(logits).exp()[0].round(decimals=4)
        tensor([0.7500, 0.2500], dtype=torch.float64)
    """

    name = "ensemble-temperature"
    reference = (
        "Zhang, Kailkhura, Han. Mix-n-Match: Ensemble and Compositional Methods for Uncertainty "
        "Calibration in Deep Learning. ICML 2020"
    )
    T: Tensor
    weights: Tensor

    def __init__(
        self,
        num_classes: int,
        T: Tensor | float = 1.0,
        weights: Tensor | tuple[float, float, float] = (1.0, 0.0, 0.0),
    ) -> None:
        super().__init__(num_classes)
        self.register_buffer("T", torch.as_tensor(T, dtype=torch.float64).reshape(()).clone())
        if not 0.0 < float(self.T) < math.inf:
            raise ValueError(f"T must be finite and > 0, got {float(self.T)!r}")
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float64).clone())
        w = self.weights
        on_simplex = w.shape == (3,) and bool((w >= 0).all())
        if not (on_simplex and abs(float(w.sum()) - 1) <= WEIGHT_SUM_TOLERANCE):
            raise ValueError(
                f"weights must be 3 numbers >= 0 summing to 1 (within {WEIGHT_SUM_TOLERANCE}), "
                f"got {w.tolist()}"
            )

    @classmethod
    def fit(  # type: ignore[override]  # a method takes its own options (here none)
        cls, scores: Tensor, labels: Tensor
    ) -> EnsembleTemperature:
        num_classes = scores.shape[1]
        temperature = fit_temperature(scores, labels, "nll")
        scores = scores.double()
        tempered, raw = torch.softmax(scores / temperature, dim=1), torch.softmax(scores, dim=1)
        uniform = 1.0 / num_classes
        rows = labels.unsqueeze(1)
        # mean_i <s_ij, s_il> for the two softmaxes; <s, uniform> = 1 / C for every s
        cross = [
            [float((a * b).sum(dim=1).mean()) for b in (tempered, raw)] for a in (tempered, raw)
        ]
        gram = torch.tensor(
            [[*cross[0], uniform], [*cross[1], uniform], [uniform] * 3], dtype=torch.float64
        )
        target = torch.tensor(
            [float(tempered.gather(1, rows).mean()), float(raw.gather(1, rows).mean()), uniform],
            dtype=torch.float64,
        )
        return cls(num_classes, temperature, _simplex_minimum(gram, target))

    def _transform(self, scores: Tensor) -> Tensor:
        components = torch.stack(
            [
                _log_softmax(scores / self.T.to(scores.device)),
                _log_softmax(scores),
                torch.full_like(scores, -math.log(self.num_classes)),
            ]
        )
        log_weights = self.weights.to(scores.device).log().view(3, 1, 1)  # log 0 = -inf
        return torch.logsumexp(components + log_weights, dim=0)

    def summary(self) -> dict[str, Any]:
        return {"T": float(self.T), "weights": self.weights.tolist()}


def _simplex_minimum(gram: Tensor, target: Tensor) -> Tensor:
    """The w on the simplex minimising ``wᵀ gram w − 2 targetᵀ w`` (``gram`` 3×3 positive
    semi-definite, on the CPU): the first best (to ``TIE_TOLERANCE``) of each face's stationary
    point that lies in the face. On a face S it solves the KKT system
    ``2 gram_SS w_S + λ 1 = 2 target_S``, ``1ᵀ w_S = 1`` by the pseudo-inverse, whose
    least-squares answer, where the system is singular (a flat face), is still a point of the
    face if it passes the check: every candidate is feasible, none beats the true minimum."""
    best, best_value = gram.new_tensor([1.0, 0.0, 0.0]), math.inf
    for size in (1, 2, 3):
        for face in map(list, itertools.combinations(range(3), size)):
            kkt = gram.new_zeros(size + 1, size + 1)
            kkt[:size, :size] = 2 * gram[face][:, face]
            kkt[:size, size] = kkt[size, :size] = 1.0
            solution = torch.linalg.pinv(kkt) @ torch.cat([2 * target[face], gram.new_ones(1)])
            if not bool((solution[:size] >= 0).all()):
                continue
            w = gram.new_zeros(3).index_copy_(0, torch.tensor(face), solution[:size])
            w /= w.sum()
            value = float(w @ gram @ w - 2 * target @ w)
            if value < best_value - TIE_TOLERANCE:
                best, best_value = w, value
    return best


@register
class Dirichlet(_Affine):
    r"""Dirichlet calibration with ODIR (Kull et al., NeurIPS 2019): matrix scaling applied to
    the log-probabilities instead of the logits,

    .. math::
        \log \hat p = \operatorname{log\_softmax}(W \operatorname{log\_softmax}(z) + b),

    the map a Dirichlet-distributed class-conditional likelihood of the probabilities gives
    (Kull et al.'s "Dir-ODIR"). W ∈ R^{C×C}, b ∈ R^C are
    :func:`~focalcal.scaling.fit_matrix_scaling` of ``log_softmax(z)`` (float64) and the
    labels: they minimise the mean NLL + λ/(C(C−1)) Σ_{i≠j} W_ij² + μ/C Σ_j b_j², λ =
    ``off_diagonal_penalty``, μ = ``bias_penalty``, ``None`` taking
    :func:`~focalcal.scaling.odir_penalties` (a fixed choice; Kull et al. cross-validate
    them). ``log_softmax(z)`` differs from z by a constant per row, which W = I / T, b = 0 turns
    into another constant, so that map is temperature scaling: the fitted objective is at most
    the NLL of the best temperature. The map may change the argmax. :meth:`options` holds the
    penalties used (numbers, the defaults resolved).

    Example:
        >>> import torch
        >>> from focalcal.scaling import fit_calibrator
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]]).repeat(50, 1)
        >>> labels = torch.tensor([0, 1] * 40 + [1, 0] * 10)  # 80 % right
        >>> dirichlet = fit_calibrator("dirichlet", logits, labels)
        >>> dirichlet.weight.round(decimals=4)  # log(4) / 2: softmax gives 0.8
        tensor([[0.6931, 0.0000],
                [0.0000, 0.6931]], dtype=torch.float64)
    """

    name = "dirichlet"
    reference = Matrix.reference

    def __init__(
        self,
        num_classes: int,
        weight: Tensor,
        bias: Tensor,
        off_diagonal_penalty: float | None = None,
        bias_penalty: float | None = None,
    ) -> None:
        if not isinstance(weight, Tensor) or weight.dim() != 2:
            got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
            raise ValueError(f"weight must be a (C, C) matrix, got {got}")
        super().__init__(num_classes, weight, bias)
        self.off_diagonal_penalty, self.bias_penalty = _penalties(
            {"off_diagonal_penalty": off_diagonal_penalty, "bias_penalty": bias_penalty},
            odir_penalties(num_classes),
        )

    @classmethod
    def fit(  # type: ignore[override]  # a method takes its own options
        cls,
        scores: Tensor,
        labels: Tensor,
        off_diagonal_penalty: float | None = None,
        bias_penalty: float | None = None,
    ) -> Dirichlet:
        affine = fit_matrix_scaling(
            _log_softmax(scores.double()), labels, off_diagonal_penalty, bias_penalty
        )
        return cls(scores.shape[1], affine.weight, affine.bias, off_diagonal_penalty, bias_penalty)

    def _transform(self, scores: Tensor) -> Tensor:
        return super()._transform(_log_softmax(scores))

    def options(self) -> dict[str, Any]:
        return {
            **super().options(),
            "off_diagonal_penalty": self.off_diagonal_penalty,
            "bias_penalty": self.bias_penalty,
        }
