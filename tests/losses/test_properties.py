"""hypothesis properties of the losses on random shapes and logits."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from focalcal.losses import build_loss, focal_loss, loss_names

NAMES = [n for n in loss_names() if "<" not in n] + ["fl-2", "ls-0.1", "dual-focal-5"]


@st.composite
def batches(draw, max_scale=60.0):
    n = draw(st.integers(1, 12))
    c = draw(st.integers(2, 8))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.floats(0.0, max_scale))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    g = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(n, c, generator=g, dtype=torch.float64)).to(dtype)
    target = torch.randint(c, (n,), generator=g)
    return logits, target


@settings(max_examples=60, deadline=None)
@given(batches(), st.sampled_from(NAMES))
def test_loss_is_non_negative(batch, name):
    logits, target = batch
    assert (build_loss(name, reduction="none")(logits, target) >= 0).all()


@settings(max_examples=60, deadline=None)
@given(batches(), st.floats(0.0, 10.0))
def test_focal_at_most_cross_entropy_per_sample(batch, gamma):
    logits, target = batch
    ce = focal_loss(logits, target, 0.0, reduction="none")
    assert (focal_loss(logits, target, gamma, reduction="none") <= ce).all()


@settings(max_examples=60, deadline=None)
@given(batches(), st.floats(0.0, 10.0), st.floats(0.0, 10.0))
def test_focal_non_increasing_in_gamma(batch, gamma_a, gamma_b):
    logits, target = batch
    low, high = sorted((gamma_a, gamma_b))
    at_low = focal_loss(logits, target, low, reduction="none")
    # (1 - p)^γ and its product with -log p are each rounded (by ~2 ulps: γ = 3 is two
    # multiplications, 3.0001 one pow): the exact loss does not increase, the rounded one may
    # by a few ulps (float32 logits [5.3397, 3.2016, -1.7094, -3.5814], target 3: γ = 3
    # gives 9.030195, γ = 3.0001 gives 9.030196 with torch's AVX2 kernels)
    slack = 8 * torch.finfo(logits.dtype).eps
    assert (focal_loss(logits, target, high, reduction="none") <= at_low * (1 + slack)).all()
