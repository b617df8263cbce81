"""Affine calibration maps on logits (Guo et al. 2017; Kull et al., NeurIPS 2019), fitted by
the NLL on a validation split; unlike temperature scaling they may change the argmax.

- :func:`fit_vector_scaling` — ``w ⊙ z + b`` with w, b ∈ R^C.
- :func:`fit_matrix_scaling` — ``W z + b`` with W ∈ R^{C×C}, regularised by Kull et al.'s ODIR.
- :class:`AffineCalibration` — the fitted map, a module from logits to calibrated logits.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from focalcal._checks import TensorLike, as_tensor, check_scores
from focalcal.metrics._inputs import checked

AffineKind = Literal["vector", "matrix"]
ODIR_RATE = 0.1  # the default ODIR: 0.1 (Σ_{i≠j} W_ij² + Σ_j b_j²); see odir_penalties
AFFINE_GRADIENT_TOLERANCE = 1e-6  # the affine fits stop once every |∂L/∂θ| <= this,
_AFFINE_LOSS_CHANGE = 1e-12  # or once an iteration changes L by less than this,
_AFFINE_ITERATIONS = 1000  # or after this many L-BFGS iterations


def fit_vector_scaling(
    logits: TensorLike,
    labels: TensorLike,
    spread_penalty: float | None = None,
    bias_penalty: float | None = None,
) -> AffineCalibration:
    r"""Vector scaling (Guo et al. 2017): the ``w ⊙ z + b``, w, b ∈ R^C, that minimises

    .. math::
        L(w, b) = \frac{1}{N}\sum_i -\log \operatorname{softmax}(w \odot z_i + b)_{y_i}
        + \frac{\lambda}{C} \sum_j (w_j - \bar w)^2 + \frac{\mu}{C} \sum_j b_j^2

    on these (validation) data, λ = ``spread_penalty``, μ = ``bias_penalty``: the penalties of
    ODIR applied to vector scaling, leaving temperature scaling (every w_j equal, b = 0) free.
    Without them the NLL has no minimum where one class is separable on the validation split
    by its own logit: w_j and b_j grow without bound into a threshold, and test samples on the
    wrong side of it cost thousands of nats (seen on a Fashion-MNIST MbLS network: test NLL 56
    against 0.45). ``None`` takes ``(ODIR_RATE · C, ODIR_RATE · C)``, a penalty of
    ``0.1 (Σ_j (w_j − w̄)² + Σ_j b_j²)`` whatever C; 0 and 0 give plain vector scaling.

    The NLL is convex in (w, b). ``torch.optim.LBFGS`` with a strong-Wolfe line search, full
    batch, in float64 on the logits' device, from w = 1, b = 0, in coordinates where the
    curvatures are about 1 (the logits over their RMS s, so w·s is fitted; penalised entries
    over the square root of 1 + the penalty's curvature), until every partial derivative in
    them is at most :data:`AFFINE_GRADIENT_TOLERANCE` = 1e-6 or an iteration changes the loss
    by less than 1e-12 (at most 1000 iterations). A constant added to every b_j leaves the
    softmax unchanged; the gradient never moves along it, so the fitted b keeps the start's
    mean, 0.
    w = 1/T, b = 0 is temperature scaling, so the fitted NLL is at most that of the best T.
    The map may change the argmax. Where the NLL has no minimum (every label its row's largest
    logit, say: the NLL falls towards 0 as w grows), w grows until the gradient is that small,
    and stays finite. The work holds a few float64 copies of the ``(M, C)`` logits.

    Args:
        logits: ``(N, C)`` or ``(N, C, d1, ...)`` (every position a sample), finite; half
            precision is read as float32. N ≥ 1.
        labels: ``(N)`` or ``(N, d1, ...)`` class indices in ``[0, C)``.

    Returns:
        An :class:`AffineCalibration` with ``weight`` ``(C,)`` and ``bias`` ``(C,)`` in float64
        on the logits' device. Deterministic: the same data give the same map.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]]).repeat(50, 1)
        >>> labels = torch.tensor([0, 1] * 40 + [1, 0] * 10)  # 80 % right: softmax(w·z) = 0.8
        >>> fit_vector_scaling(logits, labels).weight  # w = log(4) / 2 on both classes
        tensor([0.6931, 0.6931], dtype=torch.float64)
    """
    scores, labels = checked(logits, labels, from_probs=False)
    spread, bias = _penalties(
        {"spread_penalty": spread_penalty, "bias_penalty": bias_penalty},
        (ODIR_RATE * scores.shape[1], ODIR_RATE * scores.shape[1]),
    )
    return _fit_affine(scores.detach(), labels, "vector", spread, bias)


def fit_matrix_scaling(
    logits: TensorLike,
    labels: TensorLike,
    off_diagonal_penalty: float | None = None,
    bias_penalty: float | None = None,
) -> AffineCalibration:
    r"""Matrix scaling (Guo et al. 2017) with the ODIR of Kull et al. (NeurIPS 2019): the
    ``W z + b``, W ∈ R^{C×C}, b ∈ R^C, that minimises

    .. math::
        L(W, b) = \frac{1}{N}\sum_i -\log \operatorname{softmax}(W z_i + b)_{y_i}
        + \frac{\lambda}{C(C-1)} \sum_{i \ne j} W_{ij}^2 + \frac{\mu}{C} \sum_j b_j^2

    on these (validation) data, λ = ``off_diagonal_penalty``, μ = ``bias_penalty``. ODIR
    (Off-Diagonal and Intercept Regularisation) leaves the diagonal, which holds temperature
    and vector scaling, free; the normalisation is Kull et al.'s (their equation for ODIR, and
    ``reg_norm`` in their ``dirichletcal`` package). λ = μ = 0 is plain matrix scaling. Kull et
    al. choose λ and μ by cross-validation; ``None`` takes :func:`odir_penalties`, a fixed
    choice. L is convex; it is minimised like :func:`fit_vector_scaling`'s NLL, from W = I,
    b = 0. Without a penalty, adding one vector to every row of W (a constant to b) leaves the
    softmax unchanged; the gradient never moves along those directions, so the fit is the
    minimum nearest (I, 0) in them. The NLL at the fit is at most the identity's, and L at most
    the NLL of the best temperature (W = I / T, b = 0 costs no penalty).

    Args:
        logits: ``(N, C)`` or ``(N, C, d1, ...)``, finite; half precision is read as float32.
        labels: ``(N)`` or ``(N, d1, ...)`` class indices in ``[0, C)``.
        off_diagonal_penalty: λ ≥ 0; ``None``: ``odir_penalties(C)[0]``.
        bias_penalty: μ ≥ 0; ``None``: ``odir_penalties(C)[1]``.

    Returns:
        An :class:`AffineCalibration` with ``weight`` ``(C, C)`` and ``bias`` ``(C,)`` in
        float64 on the logits' device.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]]).repeat(50, 1)
        >>> labels = torch.tensor([0, 1] * 40 + [1, 0] * 10)  # 80 % right
        >>> fit_matrix_scaling(logits, labels).weight.round(decimals=4)  # log(4) / 2, as above
        tensor([[0.6931, 0.0000],
                [0.0000, 0.6931]], dtype=torch.float64)
        >>> plain = fit_matrix_scaling(logits, labels, 0.0, 0.0)
        >>> plain.weight  # only W_00 - W_10 = W_11 - W_01 is identified; columns keep sum 1
        tensor([[0.8466, 0.1534],
                [0.1534, 0.8466]], dtype=torch.float64)
    """
    scores, labels = checked(logits, labels, from_probs=False)
    off_diagonal, bias = _penalties(
        {"off_diagonal_penalty": off_diagonal_penalty, "bias_penalty": bias_penalty},
        odir_penalties(scores.shape[1]),
    )
    return _fit_affine(scores.detach(), labels, "matrix", off_diagonal, bias)


def _penalties(
    given: dict[str, float | None], defaults: tuple[float, float]
) -> tuple[float, float]:
    """The two penalties, each given (a finite number >= 0) or its default (``None``)."""
    for name, value in given.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is not None and not (number and 0.0 <= value < math.inf):
            raise ValueError(f"{name} must be a finite number >= 0 or None, got {value!r}")
    first, second = (
        default if value is None else float(value)
        for value, default in zip(given.values(), defaults, strict=True)
    )
    return first, second


def odir_penalties(num_classes: int) -> tuple[float, float]:
    """:func:`fit_matrix_scaling`'s default ``(λ, μ)`` for C = ``num_classes``:
    ``(ODIR_RATE · C(C−1), ODIR_RATE · C)``, so that the penalty is ``0.1 (Σ_{i≠j} W_ij² +
    Σ_j b_j²)`` whatever C (a fixed λ would weaken the penalty on each weight as C grows).

    0.1 is a fixed choice, not Kull et al.'s cross-validation: on eight Fashion-MNIST networks
    (C = 10, 1 000 or 6 000 validation samples) it gave a lower test NLL than temperature
    scaling on six, at most 0.005 higher on two; μ hardly mattered once ≥ 1. With many
    classes and few validation samples, cross-validate λ instead (``docs/metrics.md``).

    Example:
        >>> odir_penalties(10), odir_penalties(100)
        ((9.0, 1.0), (990.0, 10.0))
    """
    return ODIR_RATE * num_classes * (num_classes - 1), ODIR_RATE * num_classes


def _fit_affine(
    scores: Tensor, labels: Tensor, kind: AffineKind, off_diagonal: float, mu: float
) -> AffineCalibration:
    """Minimise the NLL of ``_affine(scores, weight, bias)`` plus the penalties (λ =
    ``off_diagonal``: on W's off-diagonal entries for a matrix, on the spread of w for a
    vector; μ = ``mu``: on b) over checked ``(M, C)`` scores, from the identity map."""
    num_rows, num_classes = scores.shape
    # L-BFGS works in coordinates where every curvature is about 1, so that it takes tens of
    # steps, not hundreds, for large logits or large penalties: the logits divided by their RMS
    # s (so the weight is the map's times s), and each penalised entry divided by sqrt(1 + its
    # penalty's curvature).
    rms = float(torch.linalg.vector_norm(scores, dtype=torch.float64)) / math.sqrt(scores.numel())
    scale = rms if rms > 0 else 1.0
    scores = scores.to(torch.float64, copy=True).div_(scale)
    entries = num_classes if kind == "vector" else num_classes * (num_classes - 1)
    off_diagonal /= max(1, entries) * scale**2  # per entry of W·s (of w·s for a vector)
    mu /= num_classes
    if kind == "vector":
        identity = weight_unit = scores.new_ones(num_classes)
    else:
        identity = torch.eye(num_classes, dtype=scores.dtype, device=scores.device)
        weight_unit = torch.full_like(identity, 1 / math.sqrt(1 + 2 * off_diagonal))
        weight_unit.fill_diagonal_(1.0)
    bias_unit = 1 / math.sqrt(1 + 2 * mu)
    coordinates = [identity * scale / weight_unit, scores.new_zeros(num_classes)]
    minus_one = scores.new_full((num_rows, 1), -1.0 / num_rows)
    rows = labels.unsqueeze(1)

    def objective() -> Tensor:
        """The loss, with the coordinates' ``.grad`` set by hand: p - onehot(y) back through the
        map costs one product, and autograd's bookkeeping as much again for small C."""
        weight, bias = coordinates[0] * weight_unit, coordinates[1] * bias_unit
        out = _affine(scores, weight, bias)
        top, label = out.amax(dim=1, keepdim=True), out.gather(1, rows)
        exp = out.sub_(top).exp_()  # one exp per logit, and no -inf where p_y underflows
        total = exp.sum(dim=1, keepdim=True)
        loss = (total.log() + top - label).mean()
        residual = exp.div_(total * num_rows).scatter_add_(1, rows, minus_one)  # (p - 1_y) / N
        bias_grad = residual.sum(dim=0)
        if kind == "vector":  # the spread Σ (w_j − w̄)²: its gradient is 2 (w − w̄)
            weight_grad = (residual * scores).sum(dim=0)
            penalised = weight - weight.mean()
        else:  # the off-diagonal entries
            weight_grad = residual.T @ scores
            penalised = weight.clone()
            penalised.diagonal().zero_()
        loss = loss + off_diagonal * penalised.square().sum() + mu * bias.square().sum()
        weight_grad.add_(penalised, alpha=2 * off_diagonal)
        bias_grad.add_(bias, alpha=2 * mu)
        coordinates[0].grad = weight_grad.mul_(weight_unit)
        coordinates[1].grad = bias_grad.mul_(bias_unit)
        return loss

    optimizer = torch.optim.LBFGS(
        coordinates,
        lr=1.0,
        max_iter=_AFFINE_ITERATIONS,
        max_eval=_AFFINE_ITERATIONS * 5 // 4,
        tolerance_grad=AFFINE_GRADIENT_TOLERANCE,
        tolerance_change=_AFFINE_LOSS_CHANGE,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    optimizer.step(objective)  # type: ignore[no-untyped-call]
    weight, bias = coordinates[0] * weight_unit / scale, coordinates[1] * bias_unit
    return AffineCalibration(weight, bias)


def _affine(scores: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``w ⊙ z + b`` (``weight`` ``(C,)``) or ``W z + b`` (``(C, C)``) of scores ``(..., C)``."""
    if weight.dim() == 1:
        return torch.mul(scores, weight).add_(bias)
    if scores.dim() == 2:
        return torch.addmm(bias, scores, weight.T)
    return scores @ weight.T + bias


class AffineCalibration(nn.Module):
    """Calibrated logits ``w ⊙ z + b`` (vector scaling, ``weight`` ``(C,)``) or ``W z + b``
    (matrix scaling, ``weight`` ``(C, C)``), z the logits along dim 1.

    ``weight`` and ``bias`` are buffers, kept in the dtype and on the device given (the fits
    give float64 on the logits' device): saved in the ``state_dict``, moved by ``.to()``. The
    map is computed in the logits' dtype (float32 for half precision), so float32 logits give
    float32 calibrated logits. ``nn.Sequential(model, calibration)`` calibrates a model.

    Example:
        >>> import torch
        >>> vector = AffineCalibration(torch.tensor([2.0, 1.0]), torch.tensor([0.0, 1.0]))
        >>> vector(torch.tensor([[1.0, 1.0], [3.0, -1.0]]))
        tensor([[2., 2.],
                [6., 0.]])
        >>> matrix = AffineCalibration(torch.tensor([[1.0, 1.0], [0.0, 1.0]]), torch.zeros(2))
        >>> matrix(torch.tensor([[1.0, 2.0]])), matrix.kind
        (tensor([[3., 2.]]), 'matrix')
    """

    weight: Tensor
    bias: Tensor

    def __init__(self, weight: Tensor, bias: Tensor) -> None:
        super().__init__()
        for name, value in (("weight", weight), ("bias", bias)):
            if not isinstance(value, Tensor) or not value.is_floating_point():
                got = value.dtype if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"{name} must be a floating-point tensor, got {got}")
            if not bool(value.isfinite().all()):
                raise ValueError(f"{name} must be finite")
        num_classes = bias.shape[0] if bias.dim() == 1 else -1
        if num_classes < 1 or weight.shape not in ((num_classes,), (num_classes, num_classes)):
            raise ValueError(
                f"bias must have shape (C,) and weight (C,) or (C, C), got bias "
                f"{tuple(bias.shape)} and weight {tuple(weight.shape)}"
            )
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", bias.detach().clone())

    @property
    def kind(self) -> AffineKind:
        """``"vector"`` or ``"matrix"`` scaling."""
        return "vector" if self.weight.dim() == 1 else "matrix"

    @property
    def num_classes(self) -> int:
        return int(self.bias.shape[0])

    def forward(self, logits: TensorLike) -> Tensor:
        """``(N, C)`` or ``(N, C, d1, ...)`` logits (a tensor or an array) to calibrated logits
        of the same shape."""
        logits = as_tensor(logits, "logits")
        check_scores(logits)
        if logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits must have shape (N, {self.num_classes}) or (N, {self.num_classes}, "
                f"d1, ...), got {tuple(logits.shape)}"
            )
        dtype = torch.float32 if logits.dtype in (torch.float16, torch.bfloat16) else logits.dtype
        weight, bias = self.weight.to(dtype), self.bias.to(dtype)
        return _affine(logits.to(dtype).movedim(1, -1), weight, bias).movedim(-1, 1)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, num_classes={self.num_classes}"
