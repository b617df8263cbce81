"""OOD metrics against torchmetrics, scikit-learn, a pairwise Mann–Whitney reference and exact
properties."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_curve as sklearn_roc_curve
from torchmetrics.functional.classification import binary_auroc, binary_roc

from focalcal.metrics.ood import (
    auroc,
    entropy,
    fpr_at_tpr,
    max_confidence,
    ood_auroc,
    ood_fpr_at_tpr,
    roc_curve,
)

KINDS = ["continuous", "tied"]


def score_sets(kind, seed, n_in=500, n_out=300):
    """Scores in [0, 1] (torchmetrics leaves those as they are), OOD shifted upwards.

    "tied" draws from 5 and 6 levels, so almost every threshold is shared by both sets."""
    g = torch.Generator().manual_seed(seed)
    if kind == "continuous":
        in_scores = torch.rand(n_in, generator=g, dtype=torch.float64) * 0.8
        out_scores = torch.rand(n_out, generator=g, dtype=torch.float64) * 0.8 + 0.2
    else:
        in_scores = torch.randint(0, 5, (n_in,), generator=g).double() / 5
        out_scores = torch.randint(1, 6, (n_out,), generator=g).double() / 5
    return in_scores, out_scores


def pairwise_auroc(in_scores, out_scores):
    """O(N_in·N_out) Mann–Whitney: P(s_out > s_in) + ½ P(s_out = s_in) over all pairs."""
    outs, ins = out_scores.double()[None, :], in_scores.double()[:, None]
    return ((outs > ins).double() + 0.5 * (outs == ins).double()).mean()


def python_pairwise_auroc(in_scores, out_scores):
    wins = sum(1.0 if o > i else 0.5 if o == i else 0.0 for i in in_scores for o in out_scores)
    return wins / (len(in_scores) * len(out_scores))


def python_entropy(logits):
    """Per position of (N, C, d1, ...) logits, -Σ p ln p with plain floats (0·ln 0 = 0)."""
    rows = logits.double().movedim(1, -1).reshape(-1, logits.shape[1]).tolist()
    result = []
    for z in rows:
        top = max(z)
        e = [math.exp(v - top) for v in z]
        p = [v / sum(e) for v in e]
        result.append(-sum(q * math.log(q) for q in p if q > 0))
    return torch.tensor(result, dtype=torch.float64)


def as_binary(in_scores, out_scores):
    """torchmetrics' form: pooled predictions, target 1 for OOD."""
    preds = torch.cat([in_scores, out_scores])
    target = torch.cat([torch.zeros(in_scores.numel()), torch.ones(out_scores.numel())]).long()
    return preds, target


# ---------------------------------------------------------------- roc_curve and auroc


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(3))
def test_roc_curve_equals_torchmetrics(kind, seed):
    in_scores, out_scores = score_sets(kind, seed)
    fpr, tpr, thresholds = roc_curve(in_scores, out_scores)
    ref_fpr, ref_tpr, ref_thresholds = binary_roc(*as_binary(in_scores, out_scores))
    # Both list thresholds in decreasing order with one point per distinct score, so the curves
    # compare point by point. Conventions differ in two places: torchmetrics opens the curve at
    # threshold 1.0 (it assumes probabilities) where we use +inf, and it would pass scores
    # outside [0, 1] through a sigmoid (ours lie inside, so it does not here).
    assert thresholds[0] == math.inf and ref_thresholds[0] == 1.0
    torch.testing.assert_close(thresholds[1:], ref_thresholds[1:].double(), rtol=0, atol=0)
    ours = torch.stack([fpr, tpr], dim=1)
    theirs = torch.stack([ref_fpr, ref_tpr], dim=1).double()  # torchmetrics computes in float32
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(3))
def test_auroc_equals_torchmetrics(kind, seed):
    in_scores, out_scores = score_sets(kind, seed)
    expected = binary_auroc(*as_binary(in_scores, out_scores)).double()
    torch.testing.assert_close(auroc(in_scores, out_scores), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("n_in", "n_out"), [(1, 1), (1, 9), (13, 2), (200, 150)])
def test_auroc_equals_pairwise_reference(kind, n_in, n_out):
    in_scores, out_scores = score_sets(kind, n_in + n_out, n_in, n_out)
    got = auroc(in_scores, out_scores)
    assert got.dtype == torch.float64 and got.shape == () and got.device == in_scores.device
    torch.testing.assert_close(got, pairwise_auroc(in_scores, out_scores), rtol=0, atol=1e-14)


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
tied = st.integers(-3, 3).map(float)
score_lists = st.lists(st.one_of(finite, tied), min_size=1, max_size=25)


@settings(max_examples=200, deadline=None)
@given(score_lists, score_lists)
def test_auroc_equals_python_pairwise_on_any_finite_scores(in_list, out_list):
    in_scores = torch.tensor(in_list, dtype=torch.float64)
    out_scores = torch.tensor(out_list, dtype=torch.float64)
    expected = python_pairwise_auroc(in_list, out_list)
    assert auroc(in_scores, out_scores).item() == pytest.approx(expected, abs=1e-14)
    total = auroc(in_scores, out_scores) + auroc(out_scores, in_scores)
    assert total.item() == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize("kind", KINDS)
def test_roc_curve_shape(kind):
    in_scores, out_scores = score_sets(kind, 7)
    fpr, tpr, thresholds = roc_curve(in_scores, out_scores)
    distinct = torch.cat([in_scores, out_scores]).unique().numel()
    assert fpr.shape == tpr.shape == thresholds.shape == (distinct + 1,)
    assert fpr.dtype == tpr.dtype == torch.float64
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert (fpr.diff() >= 0).all() and (tpr.diff() >= 0).all()
    assert (thresholds.diff() < 0).all()
    # every point counts the samples at or above its threshold
    for k in (1, distinct // 2, distinct):
        t = thresholds[k]
        assert fpr[k] == (in_scores >= t).double().mean()
        assert tpr[k] == (out_scores >= t).double().mean()


def test_roc_curve_promotes_dtypes():
    _, _, thresholds = roc_curve(torch.rand(4), torch.rand(3, dtype=torch.float64))
    assert thresholds.dtype == torch.float64


@pytest.mark.parametrize("kind", KINDS)
def test_auroc_is_antisymmetric(kind):
    in_scores, out_scores = score_sets(kind, 3)
    total = auroc(in_scores, out_scores) + auroc(out_scores, in_scores)
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=1e-15)


def test_perfectly_separated_scores():
    in_scores, out_scores = torch.rand(50), torch.rand(40) + 1.0
    assert auroc(in_scores, out_scores) == 1.0
    assert auroc(out_scores, in_scores) == 0.0
    fpr, tpr, _ = roc_curve(in_scores, out_scores)
    assert fpr[tpr == 1.0].min() == 0.0  # all of OOD flagged before any in-distribution


def test_identical_constant_scores_give_chance():
    in_scores, out_scores = torch.full((5,), 0.3), torch.full((8,), 0.3)
    assert auroc(in_scores, out_scores) == 0.5
    fpr, tpr, thresholds = roc_curve(in_scores, out_scores)
    assert fpr.tolist() == [0.0, 1.0] and tpr.tolist() == [0.0, 1.0]
    assert thresholds.tolist() == [math.inf, pytest.approx(0.3)]


TRANSFORMS = {
    "exp": torch.exp,
    "affine": lambda x: 1e3 * x - 5.0,
    "cubic": lambda x: x**3 + x,
    "sigmoid": lambda x: torch.sigmoid(4.0 * x),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", TRANSFORMS)
def test_invariant_to_strictly_increasing_transforms(kind, name):
    in_scores, out_scores = score_sets(kind, 11)
    f = TRANSFORMS[name]
    pooled = torch.cat([in_scores, out_scores]).unique()
    assert (f(pooled).diff() > 0).all()  # strictly increasing on these values in float64 too
    assert torch.equal(auroc(f(in_scores), f(out_scores)), auroc(in_scores, out_scores))
    fpr, tpr, _ = roc_curve(f(in_scores), f(out_scores))
    ref_fpr, ref_tpr, _ = roc_curve(in_scores, out_scores)
    assert torch.equal(fpr, ref_fpr) and torch.equal(tpr, ref_tpr)


# ---------------------------------------------------------------- entropy and confidence


@pytest.mark.parametrize("shape", [(13, 7), (4, 5, 3, 2)])
@pytest.mark.parametrize("scale", [0.1, 3.0, 30.0])
def test_entropy_equals_python_reference(shape, scale):
    g = torch.Generator().manual_seed(int(scale * 10))
    logits = scale * torch.randn(shape, generator=g, dtype=torch.float64)
    expected = python_entropy(logits)
    torch.testing.assert_close(entropy(logits), expected, rtol=1e-12, atol=1e-14)
    probs = torch.softmax(logits, dim=1)
    torch.testing.assert_close(entropy(probs, from_probs=True), expected, rtol=1e-12, atol=1e-14)


def test_entropy_float32_and_half():
    logits = 3 * torch.randn(64, 10, generator=torch.Generator().manual_seed(1))
    expected = python_entropy(logits)
    torch.testing.assert_close(entropy(logits).double(), expected, rtol=1e-5, atol=1e-6)
    half = entropy(logits.half())
    assert half.dtype == torch.float32
    torch.testing.assert_close(half.double(), python_entropy(logits.half()), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("num_classes", [2, 10, 1000])
def test_entropy_of_uniform_is_log_c(num_classes):
    logits = torch.full((3, num_classes), 2.5, dtype=torch.float64)
    expected = torch.full((3,), math.log(num_classes), dtype=torch.float64)
    torch.testing.assert_close(entropy(logits), expected, rtol=1e-14, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_entropy_never_exceeds_log_c(dtype):
    """The rounded sum over a uniform row passes ln C by an ulp for most C (C = 7 in float32)."""
    for num_classes in range(2, 300):
        bound = torch.tensor(math.log(num_classes), dtype=dtype)
        uniform = torch.zeros(2, num_classes, dtype=dtype)
        for h in (entropy(uniform), entropy(uniform.softmax(1), from_probs=True)):
            assert bool((h <= bound).all() and (h >= 0).all()), (num_classes, h - bound)


def test_entropy_of_one_hot_probabilities_is_zero():
    probs = torch.eye(4)[[0, 3, 1]]
    assert entropy(probs, from_probs=True).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_entropy_finite_for_huge_logits(dtype):
    logits = torch.tensor(
        [[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4], [-1e4, 1e4, 1e4]], dtype=dtype
    )
    got = entropy(logits)
    assert got.isfinite().all()
    expected = torch.tensor([0.0, math.log(3), math.log(2), math.log(2)], dtype=dtype)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_entropy_finite_at_the_largest_finite_logits(dtype):
    # a logit's distance to the largest overflows to -inf: log p = -inf, and 0 · inf is NaN
    top = torch.finfo(dtype).max
    logits = torch.tensor([[top, -top, 0.0], [top, top, -top]], dtype=dtype)
    expected = torch.tensor([0.0, math.log(2)], dtype=dtype)
    torch.testing.assert_close(entropy(logits), expected)
    torch.testing.assert_close(ood_auroc(logits[:1], logits[1:]), torch.tensor(1.0).double())


def test_entropy_keeps_zero_probabilities_at_zero():
    probs = torch.tensor([[0.5, 0.5, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(
        entropy(probs, from_probs=True), torch.tensor([math.log(2)]).double()
    )


@pytest.mark.parametrize("shape", [(13, 7), (4, 5, 3, 2)])
def test_max_confidence_equals_softmax_max(shape):
    logits = 4 * torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = torch.softmax(logits, dim=1).amax(dim=1).reshape(-1)
    torch.testing.assert_close(max_confidence(logits), expected, rtol=1e-12, atol=0)
    probs = torch.softmax(logits, dim=1)
    torch.testing.assert_close(max_confidence(probs, from_probs=True), expected, rtol=1e-12, atol=0)
    huge = torch.tensor([[1e4, -1e4], [1e4, 1e4]])
    assert max_confidence(huge).tolist() == [1.0, 0.5]


# ---------------------------------------------------------------- ood_auroc


def confident_and_flat(seed, n_in=400, n_out=300, num_classes=10, dtype=torch.float64):
    """In-distribution logits with a clear winner; OOD logits flatter (the same noise, no peak)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(num_classes, (n_in,), generator=g)
    peak = 6.0 * torch.nn.functional.one_hot(labels, num_classes).to(dtype)
    in_logits = torch.randn(n_in, num_classes, generator=g, dtype=dtype) + peak
    out_logits = torch.randn(n_out, num_classes, generator=g, dtype=dtype)
    return in_logits, out_logits


@pytest.mark.parametrize("seed", range(3))
def test_ood_auroc_entropy_separates_flat_logits(seed):
    in_logits, out_logits = confident_and_flat(seed)
    got = ood_auroc(in_logits, out_logits)
    assert got > 0.9
    independent = torch.distributions.Categorical(logits=in_logits).entropy()
    expected = pairwise_auroc(
        independent, torch.distributions.Categorical(logits=out_logits).entropy()
    )
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-14)
    assert torch.equal(ood_auroc(in_logits, out_logits, score="entropy"), got)


@pytest.mark.parametrize("seed", range(3))
def test_ood_auroc_confidence_separates_flat_logits(seed):
    in_logits, out_logits = confident_and_flat(seed)
    got = ood_auroc(in_logits, out_logits, score="confidence")
    assert got > 0.9
    confidence_in = torch.softmax(in_logits, dim=1).amax(dim=1)
    confidence_out = torch.softmax(out_logits, dim=1).amax(dim=1)
    torch.testing.assert_close(
        got, pairwise_auroc(-confidence_in, -confidence_out), rtol=0, atol=1e-14
    )


@pytest.mark.parametrize("score", ["entropy", "confidence"])
def test_ood_auroc_from_probs_and_spatial_shapes(score):
    in_logits, out_logits = confident_and_flat(5, n_in=60, n_out=40, num_classes=4)
    expected = ood_auroc(in_logits, out_logits, score=score)
    in_probs, out_probs = torch.softmax(in_logits, 1), torch.softmax(out_logits, 1)
    torch.testing.assert_close(
        ood_auroc(in_probs, out_probs, score=score, from_probs=True), expected
    )
    # (N, C, d) with every position a sample: the same samples regrouped, in any order
    spatial_in = in_logits.reshape(20, 3, 4).transpose(1, 2)
    spatial_out = out_logits.reshape(10, 4, 4).transpose(1, 2)
    assert torch.equal(ood_auroc(spatial_in, spatial_out, score=score), expected)


# ---------------------------------------------------------------- FPR at 95 % TPR


def sklearn_fpr_at_tpr(in_scores, out_scores, tpr):
    """scikit-learn's ROC curve with the in-distribution samples positive and scored by the
    negated OOD score; the FPR of its first point whose TPR reaches ``tpr``."""
    labels = [1] * len(in_scores) + [0] * len(out_scores)
    scores = -torch.cat([in_scores, out_scores]).double().numpy()
    fpr, rates, _ = sklearn_roc_curve(labels, scores, drop_intermediate=False)
    return float(fpr[(rates >= tpr).argmax()])


def python_fpr_at_tpr(in_scores, out_scores, tpr):
    """The definition read literally: the smallest in-distribution score that keeps at least
    ``tpr`` of them, and the fraction of OOD scores at or below it."""
    for threshold in sorted(in_scores):
        if sum(s <= threshold for s in in_scores) / len(in_scores) >= tpr:
            return sum(s <= threshold for s in out_scores) / len(out_scores)
    raise AssertionError("unreachable: the largest score keeps every sample")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("tpr", [0.95, 0.5, 0.01, 1.0])
@pytest.mark.parametrize(("n_in", "n_out"), [(500, 300), (20, 7), (1, 3), (999, 10)])
def test_fpr_at_tpr_equals_sklearn(kind, seed, tpr, n_in, n_out):
    in_scores, out_scores = score_sets(kind, seed, n_in, n_out)
    got = fpr_at_tpr(in_scores, out_scores, tpr)
    assert got.dtype == torch.float64 and got.dim() == 0
    assert float(got) == sklearn_fpr_at_tpr(in_scores, out_scores, tpr)
    float_scores = (in_scores.float(), out_scores.float())
    assert float(fpr_at_tpr(*float_scores, tpr)) == sklearn_fpr_at_tpr(*float_scores, tpr)


@settings(max_examples=200, deadline=None)
@given(score_lists, score_lists, st.sampled_from([0.95, 0.9, 0.3, 1.0]))
def test_fpr_at_tpr_equals_the_definition_on_any_finite_scores(in_list, out_list, tpr):
    in_scores = torch.tensor(in_list, dtype=torch.float64)
    out_scores = torch.tensor(out_list, dtype=torch.float64)
    expected = python_fpr_at_tpr(in_list, out_list, tpr)
    assert float(fpr_at_tpr(in_scores, out_scores, tpr)) == expected


def test_fpr_at_95_tpr_at_the_edges():
    in_scores = torch.arange(20.0)  # 19 of 20 kept is exactly 95 %: the threshold is 18
    assert float(fpr_at_tpr(in_scores, torch.tensor([18.0, 18.5, 25.0, 30.0]))) == 0.25
    assert float(fpr_at_tpr(in_scores, torch.tensor([18.5, 19.0]))) == 0.0  # above it: caught
    # 21 samples: 19 / 21 < 95 % <= 20 / 21, so the 20th smallest (19) is the threshold
    assert float(fpr_at_tpr(torch.arange(21.0), torch.tensor([19.0, 19.5]))) == 0.5
    # ties count against the detector: an OOD sample tied with the threshold is a false positive
    assert float(fpr_at_tpr(torch.zeros(10), torch.zeros(4))) == 1.0
    assert float(fpr_at_tpr(torch.zeros(10), torch.full((4,), 1e-9))) == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_ood_fpr_at_tpr_by_entropy_and_by_confidence(seed):
    in_logits, out_logits = confident_and_flat(seed)
    in_entropy = torch.distributions.Categorical(logits=in_logits).entropy()
    out_entropy = torch.distributions.Categorical(logits=out_logits).entropy()
    got = ood_fpr_at_tpr(in_logits, out_logits)
    assert float(got) == sklearn_fpr_at_tpr(in_entropy, out_entropy, 0.95)
    assert got < 0.5  # the flat logits are mostly caught
    in_confidence = torch.softmax(in_logits, dim=1).amax(dim=1)
    out_confidence = torch.softmax(out_logits, dim=1).amax(dim=1)
    got = ood_fpr_at_tpr(in_logits, out_logits, score="confidence", tpr=0.9)
    assert float(got) == sklearn_fpr_at_tpr(-in_confidence, -out_confidence, 0.9)
    probs = (torch.softmax(in_logits, 1), torch.softmax(out_logits, 1))
    assert torch.equal(ood_fpr_at_tpr(*probs, score="confidence", tpr=0.9, from_probs=True), got)


# ---------------------------------------------------------------- bad input

X = torch.rand(5)
Z = torch.randn(5, 3)


def with_value(tensor, index, value):
    tensor = tensor.clone()
    tensor[index] = value
    return tensor


BAD = {
    "auroc empty in": (lambda: auroc(torch.empty(0), X), "in_scores is empty"),
    "auroc empty out": (lambda: auroc(X, torch.empty(0)), "out_scores is empty"),
    "roc empty": (lambda: roc_curve(torch.empty(0), X), "in_scores is empty"),
    "auroc nan": (lambda: auroc(with_value(X, 1, math.nan), X), "in_scores hold 1 NaN"),
    "auroc inf": (lambda: auroc(X, with_value(X, 0, math.inf)), "out_scores hold 0 NaN and 1 inf"),
    "roc nan": (lambda: roc_curve(X, with_value(X, 2, math.nan)), "out_scores hold 1 NaN"),
    "auroc 2-D": (lambda: auroc(Z, X), r"in_scores must be 1-D .* got shape \(5, 3\)"),
    "auroc 0-d": (lambda: auroc(X, X[0]), r"out_scores must be 1-D .* got shape \(\)"),
    "auroc integers": (lambda: auroc(X, torch.arange(3)), "out_scores must be a floating-point"),
    "auroc list of integers": (
        lambda: auroc([1, 2], X),
        "in_scores must be a floating-point tensor, got torch.int64",
    ),
    "auroc strings": (lambda: auroc("ab", X), "in_scores must be a tensor or an array of numbers"),
    "auroc devices": (
        lambda: auroc(X, torch.rand(4, device="meta")),
        "in_scores are on cpu but out_scores are on meta",
    ),
    "entropy 1-D": (lambda: entropy(X), r"scores must have shape \(N, C\)"),
    "confidence 1-D": (lambda: max_confidence(X), r"scores must have shape \(N, C\)"),
    "entropy empty": (lambda: entropy(torch.empty(0, 3)), "empty"),
    "entropy no classes": (lambda: entropy(torch.empty(4, 0)), "no classes"),
    "entropy nan": (lambda: entropy(with_value(Z, (0, 1), math.nan)), "1 NaN"),
    "entropy inf": (lambda: entropy(with_value(Z, (0, 1), -math.inf)), "1 infinite"),
    "entropy not probs": (lambda: entropy(Z, from_probs=True), r"must lie in \[0, 1\]"),
    "entropy integers": (lambda: entropy(torch.ones(2, 3, dtype=torch.long)), "floating-point"),
    "ood classes": (
        lambda: ood_auroc(Z, torch.randn(4, 5)),
        "in_logits have 3 classes but out_logits have 5",
    ),
    "ood 1-D": (lambda: ood_auroc(X, Z), r"in_logits: scores must have shape \(N, C\)"),
    "ood score": (
        lambda: ood_auroc(Z, Z, score="energy"),
        r"score must be one of \['confidence', 'entropy'\], got 'energy'",
    ),
    "ood devices": (
        lambda: ood_auroc(Z, torch.randn(5, 3, device="meta")),
        "in_logits are on cpu but out_logits are on meta",
    ),
    "ood empty": (lambda: ood_auroc(Z, torch.empty(0, 3)), "out_logits: the input is empty"),
    "ood nan": (lambda: ood_auroc(with_value(Z, (2, 0), math.nan), Z), "in_logits: .*1 NaN"),
    "ood inf": (lambda: ood_auroc(Z, with_value(Z, (2, 0), math.inf)), "out_logits: .*1 infinite"),
    "ood probs": (
        lambda: ood_auroc(Z.softmax(1), Z.softmax(1) * 2, from_probs=True),
        "out_logits: probabilities must",
    ),
    "ood probs as logits": (
        lambda: ood_auroc(Z, Z.softmax(1)),
        "out_logits: scores look like probabilities.*from_probs=True",
    ),
    "entropy probs as logits": (lambda: entropy(Z.softmax(1)), "look like probabilities"),
    "fpr empty": (lambda: fpr_at_tpr(X, torch.empty(0)), "out_scores is empty"),
    "fpr nan": (lambda: fpr_at_tpr(with_value(X, 1, math.nan), X), "in_scores hold 1 NaN"),
    "fpr tpr 0": (lambda: fpr_at_tpr(X, X, 0.0), r"tpr must be a number in \(0, 1\], got 0.0"),
    "fpr tpr above 1": (lambda: fpr_at_tpr(X, X, 95), r"tpr must be .* got 95"),
    "fpr tpr nan": (lambda: fpr_at_tpr(X, X, math.nan), "tpr must be .* got nan"),
    "fpr tpr bool": (lambda: ood_fpr_at_tpr(Z, Z, tpr=True), "tpr must be .* got True"),
    "ood fpr score": (lambda: ood_fpr_at_tpr(Z, Z, score="energy"), "score must be one of"),
    "ood fpr classes": (
        lambda: ood_fpr_at_tpr(Z, torch.randn(4, 5)),
        "in_logits have 3 classes but out_logits have 5",
    ),
    "confidence probs as logits": (lambda: max_confidence(Z.softmax(1)), "look like probab"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_raises_value_error_naming_the_problem(case):
    call, match = BAD[case]
    with pytest.raises(ValueError, match=match):
        call()
