"""Post-hoc calibrators against netcal's and torch-uncertainty's version of the same method, on
the same saved logits, side by side in one process.

    source /tmp/benchv/bin/activate   # a venv with both libraries: docs/benchmarks.md
    python benchmarks/bench_calibrators.py [--run DIR] [--small]

Data: a focalcal run's validation (fit) and test logits (``--run DIR``; without it a small CNN
is trained on Fashion-MNIST for a few epochs into a temporary directory), and synthetic
over-confident logits, 100 000 x 1 000 (``--small``: 10 000 x 100), fitted on one half and
tested on the other. For every method and library: the fit time (float32 validation logits to a
fitted map), the transform time (test logits to the library's output) and the test ECE and NLL,
computed by focalcal.metrics on each library's probabilities, floored at ``FLOOR`` and
renormalised the same way for all. Calls faster than ``--paired-below`` seconds are timed in
paired rounds (see _timing.py; ratios are medians of per-round ratios); slower ones once each.
A call running past ``--limit`` seconds is stopped and reported as timed out. The goals are
checked at the end; the exit status is 1 if one is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import shutil
import signal
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from _anchors import load_by_path
from _timing import Goals, machine, paired_times
from torch import Tensor

from focalcal.metrics import expected_calibration_error, negative_log_likelihood
from focalcal.scaling import calibrator_names, fit_calibrator, odir_penalties

FLOOR = 1e-6  # every library's probabilities are floored here (and renormalised) before the NLL
ECE_TOLERANCE = 1e-3  # equal results: |ΔECE| <= 0.1 percentage point
NLL_TOLERANCE = 1e-3  # and |ΔNLL| <= 0.001 nats, where the definitions agree
NUM_BINS = 15
PINNED_BIAS = 1e12  # focalcal vector's bias penalty that holds b at ~0 (torch-uncertainty's map)
FOCALCAL, NETCAL, TU = "focalcal", "netcal", "torch-uncertainty"
BOTH, ECE = ("ece", "nll"), ("ece",)  # what must be equal where the definitions agree

# torch-uncertainty's package __init__ imports torchvision, which cannot be installed beside this
# torch. Its calibration modules need only torch, tqdm, numpy and scikit-learn, so they are loaded
# by file path under stub packages: `torch_uncertainty` and `torch_uncertainty.post_processing`
# (exposing PostProcessing from post_processing/abstract.py, loaded by path), and
# `torch_uncertainty.post_processing.calibration`, whose modules are loaded in this order so that
# their relative imports find each other in sys.modules. A module that fails to load makes
# torch-uncertainty unavailable for the methods that need it, not the benchmark fail.
TU_MODULES = (
    "scaler", "utils", "temperature_scaler", "vector_scaler", "matrix_scaler",
    "dirichlet_scaler", "histogram_binning", "isotonic_regression", "bbq",
)  # fmt: skip


def load_torch_uncertainty() -> tuple[dict[str, types.ModuleType], str]:
    """The calibration modules that loaded (by short name) and why the others did not."""
    try:  # any failure here: the library is unavailable
        load_by_path("torch_uncertainty", ["post_processing/abstract.py"])
    except Exception as error:
        return {}, f"post_processing/abstract.py: {type(error).__name__}: {error}"
    loaded, failed = {}, []
    for short in TU_MODULES:
        try:
            path = f"post_processing/calibration/{short}.py"
            loaded.update(load_by_path("torch_uncertainty", [path]))
        except Exception as error:
            failed.append(f"{short}.py: {type(error).__name__}: {error}")
    return loaded, "; ".join(failed)


def load_netcal() -> tuple[dict[str, Any], str]:
    try:
        from netcal.binning import HistogramBinning, IsotonicRegression
        from netcal.scaling import BetaCalibration, LogisticCalibration, TemperatureScaling
    except Exception as error:
        return {}, f"{type(error).__name__}: {error}"
    classes = (HistogramBinning, IsotonicRegression, BetaCalibration, LogisticCalibration)
    return {c.__name__: c for c in (*classes, TemperatureScaling)}, ""


# --- the candidates: one fit and one transform per library and method --------------------------


@dataclass
class Candidate:
    library: str
    label: str  # the call, with the options that matter
    fit: Callable[[Tensor, Tensor], Any]
    transform: Callable[[Any, Tensor], Any]
    probabilities: Callable[[Any], Tensor]  # the transform's output as float64 probabilities
    against: str | None = None  # the focalcal candidate (label) it is compared with
    equal: tuple[str, ...] = ()  # where the definitions agree: "ece", "nll" must be equal


@dataclass
class Method:
    name: str
    candidates: list[Candidate]
    differences: str
    absent: dict[str, str] = field(default_factory=dict)  # library -> why it has no row


def focalcal(name: str, label: str, inputs: Callable[[Tensor], Tensor] = lambda z: z, **options):
    return Candidate(
        FOCALCAL,
        label,
        lambda z, y: fit_calibrator(name, inputs(z), y, **options),
        lambda calibrator, z: calibrator.transform(inputs(z)),
        lambda log_p: log_p.exp(),
    )


def netcal(make: Callable[[], Any], label: str, against: str, equal: tuple[str, ...]) -> Candidate:
    """netcal takes numpy probabilities: the softmax (float64) is part of every call."""

    def probs(z: Tensor) -> Any:
        return torch.softmax(z.double(), dim=1).numpy()

    def fit(z: Tensor, y: Tensor) -> Any:
        return make().fit(probs(z), y.numpy())

    return Candidate(
        NETCAL, label, fit, lambda m, z: m.transform(probs(z)), torch.from_numpy, against, equal
    )


def tu(
    make: Callable[[], Any], label: str, against: str, equal: tuple[str, ...], logits: bool
) -> Candidate:
    """torch-uncertainty's ``fit`` iterates over (inputs, labels) batches through its model
    (none: the identity); one batch in a list costs nothing to load. Its scalers return logits,
    its binning methods log-probabilities."""

    def fit(z: Tensor, y: Tensor) -> Any:
        model = make()
        model.fit([(z, y)], progress=False)
        return model

    def probabilities(out: Tensor) -> Tensor:
        return torch.softmax(out.double(), dim=1) if logits else out.double().exp()

    return Candidate(TU, label, fit, lambda m, z: m(z), probabilities, against, equal)


@dataclass
class Libraries:
    netcal: dict[str, Any]  # class name -> class
    tu: dict[str, types.ModuleType]  # calibration module's short name -> module
    netcal_failed: str  # why netcal (some of torch-uncertainty) did not load, "" if it did
    tu_failed: str


def call(name: str, options: dict[str, Any]) -> str:
    shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in options.items() if k != "num_classes")  # fmt: skip
    return f"{name}({shown})"


def methods(num_classes: int, libraries: Libraries) -> list[Method]:
    """Every method with its candidates, and the libraries that offer none (and why)."""
    lam, mu = odir_penalties(num_classes)
    found: list[Method] = []

    def add(name: str, differences: str, *entries: Candidate | tuple[str, str], **absent: str):
        candidates = [e for e in entries if isinstance(e, Candidate)]
        absent = {TU if k == "tu" else k: v for k, v in absent.items()}
        absent.update(e for e in entries if isinstance(e, tuple))
        found.append(Method(name, candidates, differences, absent))

    def nc(cls: str, against: str, equal: tuple[str, ...], **options: Any) -> Any:
        if cls not in libraries.netcal:
            return NETCAL, f"{cls}: unavailable ({libraries.netcal_failed})"
        make = libraries.netcal[cls]
        return netcal(lambda: make(**options), call(cls, options), against, equal)

    def tu_(where: str, against: str, equal: tuple[str, ...], logits: bool = True, **options):
        short, cls = where.split(".")
        if short not in libraries.tu:
            return TU, f"{cls}: unavailable ({libraries.tu_failed})"
        make = getattr(libraries.tu[short], cls)
        return tu(lambda: make(**options), call(cls, options), against, equal, logits)

    c, no_penalty = num_classes, {"spread_penalty": 0.0, "bias_penalty": 0.0}
    log_probs = lambda z: torch.log_softmax(z.double(), dim=1)  # noqa: E731
    pinned, on_log_probs = (
        "vector, penalties 0, b pinned at 0",
        "vector on log_softmax(z), penalties 0",
    )
    add(
        "temperature",
        "All three minimise the validation NLL over one T. focalcal: safeguarded Newton steps in "
        "float64 to |ΔT| <= 1e-4. netcal TemperatureScaling('mle'): scipy L-BFGS-B with "
        "finite-difference gradients over 1/T on log(clip(softmax(z), 2.2e-16, 1 - 2.2e-16)) "
        "in float64 (the logits up to a per-row constant, except a logit more than 36 below "
        "its row's largest). torch-uncertainty TemperatureScaler: torch LBFGS (lr 0.1, 100 "
        "iterations, no line search) over 1/T in float32. Same definition.",
        focalcal("temperature", "temperature"),
        nc("TemperatureScaling", "temperature", BOTH),
        tu_("temperature_scaler.TemperatureScaler", "temperature", BOTH),
    )
    add(
        "vector",
        "focalcal 'vector' is w*z + b with ODIR-style penalties 0.1·C on the spread of w and "
        "on b by default (its first row). torch-uncertainty VectorScaler is w*z: no bias, no "
        "penalty, LBFGS (lr 0.1, 200 iterations, no line search) in float32; compared with "
        "focalcal with spread_penalty=0 and bias_penalty=1e12, which holds b at ~1e-12: the "
        "same map. netcal LogisticCalibration(temperature_only=False) is w*log(p) + b, vector "
        "scaling of the log-probabilities (clipped at 2.2e-16), not of the logits (the two "
        "differ unless every w_j is equal), unpenalised, by scipy L-BFGS-B with "
        "finite-difference gradients (2C + 1 NLL evaluations per gradient); compared with "
        "focalcal 'vector' fitted on log_softmax(z) with both penalties 0: the same map.",
        focalcal("vector", "vector (ODIR default)"),
        focalcal("vector", pinned, spread_penalty=0.0, bias_penalty=PINNED_BIAS),
        tu_("vector_scaler.VectorScaler", pinned, BOTH, num_classes=c),
        focalcal("vector", on_log_probs, log_probs, **no_penalty),
        nc("LogisticCalibration", on_log_probs, BOTH, temperature_only=False),
    )
    add(
        "matrix",
        "torch-uncertainty MatrixScaler is W z + b, unpenalised, LBFGS (lr 0.1, 200 "
        "iterations, no line search) in float32; compared with focalcal 'matrix' with both "
        "ODIR penalties 0 (focalcal's default adds ODIR: its first row). Without a penalty "
        "the minimiser is unique only up to directions that leave the softmax unchanged, and "
        "where a class is separable it does not exist: each optimiser stops somewhere else.",
        focalcal("matrix", "matrix (ODIR default)"),
        focalcal("matrix", "matrix, penalties 0", off_diagonal_penalty=0.0, bias_penalty=0.0),
        tu_("matrix_scaler.MatrixScaler", "matrix, penalties 0", BOTH, num_classes=c),
        netcal="no matrix scaling in netcal 1.4 (its LogisticCalibration is vector scaling)",
    )
    add(
        "dirichlet",
        "Both: W log_softmax(z) + b with the NLL + λ/(C(C-1)) Σ_{i≠j} W_ij² + μ·mean(b²) "
        "(torch-uncertainty's lambda_reg and mu_reg are normalised exactly as focalcal's "
        "penalties); torch-uncertainty is given focalcal's default λ, μ (its own default is "
        "no penalty). focalcal: L-BFGS with a strong-Wolfe line search in float64 to "
        "gradient 1e-6; torch-uncertainty: LBFGS (lr 0.1, 200 iterations, no line search) "
        "in float32. Same objective.",
        focalcal("dirichlet", "dirichlet (ODIR default)"),
        tu_("dirichlet_scaler.DirichletScaler", "dirichlet (ODIR default)", BOTH,
            num_classes=c, lambda_reg=lam, mu_reg=mu),
        netcal="no Dirichlet calibration in netcal 1.4",
    )  # fmt: skip
    floors = (
        "Floors: focalcal clamps every one-vs-rest q_k to [1e-6, 1 - 1e-6], then "
        "renormalises; torch-uncertainty renormalises, then clamps; netcal neither (q = 0 "
        "where a bin holds no y = k; a class absent from the validation labels gets 0), and "
        "the benchmark's floor (1e-6, then renormalised) acts as torch-uncertainty's. A sample "
        "whose class has q = 0 so costs -ln(1e-6 / Σ_k q_k) nats in focalcal against -ln 1e-6 "
        "in the others: the NLLs differ by definition, the ECE must agree."
    )
    add(
        "histogram",
        "All: one-vs-rest, 15 equal-width bins of p_k = softmax(z)_k, the bin's frequency of "
        "y = k (an empty bin: its centre), renormalised over the classes. Bins: focalcal "
        "(b/B, (b+1)/B] in float64 for fit and transform; torch-uncertainty the same bins by "
        "bucketize on float32 probabilities and edges; netcal fits with scipy's "
        "binned_statistic_dd, [b/B, (b+1)/B), and transforms with np.digitize(right=True), "
        "(b/B, (b+1)/B]: a p exactly on an edge is counted in one bin and read from the next. "
        "netcal's default is 10 bins (given 15). " + floors,
        focalcal("histogram", "histogram, 15 bins"),
        nc("HistogramBinning", "histogram, 15 bins", ECE, bins=NUM_BINS),
        tu_("histogram_binning.HistogramBinningScaler", "histogram, 15 bins", ECE, False,
            num_bins=NUM_BINS),
    )  # fmt: skip
    add(
        "top-label-histogram",
        "Gupta & Ramdas' top-label binning: neither library offers it.",
        focalcal("top-label-histogram", "top-label-histogram, 15 bins"),
        netcal="not offered",
        tu="not offered",
    )
    add(
        "isotonic",
        "All: one-vs-rest pool-adjacent-violators on (p_k, 1[y = k]), a new p_k clipped to the "
        "fitted range and interpolated linearly, renormalised. netcal and torch-uncertainty "
        "call scikit-learn's IsotonicRegression(y_min=0, y_max=1, out_of_bounds='clip'), "
        "which merges points closer than its dtype's resolution: 1e-15 for netcal's float64, "
        "but 1e-6 for the float32 probabilities torch-uncertainty passes (with many classes "
        "most p_k are below 1e-3, so many merge); focalcal merges exact ties only, in "
        "float64. " + floors,
        focalcal("isotonic", "isotonic"),
        nc("IsotonicRegression", "isotonic", ECE),
        tu_("isotonic_regression.IsotonicRegressionScaler", "isotonic", ECE, False),
    )
    add(
        "beta",
        "focalcal: one-vs-rest, a binary beta map σ(a ln p_k - b ln(1 - p_k) + c) per class, "
        "a, b >= 0, fitted to 1[y = k] by the binary NLL (Newton, all classes at once), "
        "renormalised. netcal BetaCalibration: multinomial, softmax_k(a_k ln p_k - "
        "b_k ln(1 - p_k) + c_k) with all 3C parameters fitted jointly by the multiclass NLL "
        "(scipy L-BFGS-B, finite differences: 3C + 1 NLL evaluations per gradient; a, b >= 0 "
        "by bounds, then a refit with the negative ones masked). Different maps: only the "
        "speed is compared.",
        focalcal("beta", "beta (one-vs-rest)"),
        nc("BetaCalibration", "beta (one-vs-rest)", ()),
        tu="not offered",
    )
    add(
        "ensemble-temperature",
        "Zhang et al.'s mixture of softmax(z/T), softmax(z) and the uniform: neither library "
        "offers it.",
        focalcal("ensemble-temperature", "ensemble-temperature"),
        netcal="not offered",
        tu="not offered",
    )
    add(
        "bbq",
        "focalcal does not offer BBQ, so it is not measured. netcal BBQ is a BIC-weighted "
        "average of equal-width histogram binnings (not Naeini et al.'s Bayesian score); "
        "torch-uncertainty BBQScaler averages equal-frequency binnings of 2 to 15 bins by "
        "their marginal likelihood (Naeini et al.); both one-vs-rest.",
        focalcal="not offered",
        netcal="BBQ() not measured",
        tu="BBQScaler() not measured",
    )
    return found


# --- measuring ----------------------------------------------------------------------------------


class Deadline(BaseException):  # not an Exception: a library's `except Exception` lets it pass
    pass


def clear_pyro_stacks() -> None:
    """Empty pyro's global plate and handler stacks (netcal's models run under pyro). A Deadline
    can land inside a ``pyro.plate``'s ``__enter__``, after the plate took its name, so that its
    ``__exit__`` never runs: every later netcal fit then fails with "duplicate plate 'data'".
    Between two calls no pyro context is open, so both stacks should be empty."""
    runtime = sys.modules.get("pyro.poutine.runtime")
    if runtime is not None:
        runtime._PYRO_STACK.clear()
        runtime._DIM_ALLOCATOR._stack.clear()


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`Deadline` in this (main) thread after ``seconds``: library code runs
    Python between its tensor and numpy calls, where the signal handler gets its turn."""

    def expire(signum: int, frame: object) -> None:
        raise Deadline

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except Deadline:
        clear_pyro_stacks()
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Result:
    candidate: Candidate
    status: str = "ok"  # or why there are no numbers
    fit: list[float] = field(default_factory=list)  # seconds, one per round (one: a single call)
    transform: list[float] = field(default_factory=list)
    ece: float = math.nan
    nll: float = math.nan
    fitted: Any = None  # while the transforms are timed
    limit: float = math.inf  # the seconds a call was allowed


def floored(probs: Tensor) -> Tensor:
    """The same floor for every library: no probability below FLOOR, rows summing to 1."""
    probs = probs.double().nan_to_num(nan=0.0).clamp(FLOOR, 1.0)
    return probs / probs.sum(dim=1, keepdim=True)


def timed(fn: Callable[[], Any], limit: float) -> tuple[Any, float]:
    with deadline(limit):
        start = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - start


def first_call(candidate: Candidate, data: Data, limit: float) -> Result:
    """One timed fit and transform, and the test ECE and NLL of the output."""
    result = Result(candidate, limit=limit)
    try:
        result.fitted, fit = timed(lambda: candidate.fit(data.val, data.val_labels), limit)
        out, transform = timed(lambda: candidate.transform(result.fitted, data.test), limit)
    except Deadline:
        result.status = f"stopped after {limit:g} s"
        return result
    except Exception as error:  # a library's failure is a result too
        result.status = f"failed: {type(error).__name__}: {str(error)[:120]}"
        return result
    result.fit, result.transform = [fit], [transform]
    probs = floored(candidate.probabilities(out))
    result.ece = float(expected_calibration_error(probs, data.test_labels, from_probs=True))
    result.nll = float(negative_log_likelihood(probs, data.test_labels, from_probs=True))
    return result


def measure(method: Method, data: Data, args: argparse.Namespace) -> list[Result]:
    """Every candidate's first call; then the fits, and the transforms, that took less than
    ``--paired-below`` seconds again in paired rounds."""
    results = [first_call(candidate, data, args.limit) for candidate in method.candidates]
    calls = {
        "fit": lambda r: lambda: r.candidate.fit(data.val, data.val_labels),
        "transform": lambda r: lambda: r.candidate.transform(r.fitted, data.test),
    }
    for part, call in calls.items():
        cheap = [r for r in results if r.status == "ok" and getattr(r, part)[0] < args.paired_below]
        if len(cheap) > 1 and args.rounds > 1:
            times = paired_times(
                {r.candidate.label: call(r) for r in cheap}, args.rounds, args.min_time
            )
            for r in cheap:
                setattr(r, part, times[r.candidate.label])
    for r in results:
        r.fitted = None  # free the fitted maps
    return results


def warm_up(data: Data, libraries: Libraries) -> None:
    """Fit and apply every candidate once on a few rows, so that no timed call pays for a
    library's first use (lazy imports, autograd's and scipy's start-up)."""
    rows = slice(0, 256)
    small = Data(
        "warm-up", data.val[rows], data.val_labels[rows], data.test[rows], data.test_labels[rows]
    )
    for method in methods(data.val.shape[1], libraries):
        for c in method.candidates:
            with contextlib.suppress(Exception, Deadline), deadline(2):
                c.transform(c.fit(small.val, small.val_labels), small.test)


def speedup(results: list[Result], r: Result, part: str) -> float:
    """How many times longer the library took than its focalcal counterpart (> 1: focalcal is
    faster): the median of per-round ratios where both ran in the same rounds; NaN where
    either has no time."""
    reference = counterpart(results, r)
    mine, theirs = getattr(reference, part), getattr(r, part)
    if not mine or not theirs:
        return math.nan
    if len(mine) == len(theirs) > 1:
        return statistics.median(b / a for a, b in zip(mine, theirs, strict=True))
    return statistics.median(theirs) / statistics.median(mine)


def counterpart(results: list[Result], r: Result) -> Result:
    return next(x for x in results if x.candidate.label == r.candidate.against)


def seconds(times: list[float]) -> str:
    if not times:
        return "—"
    t = statistics.median(times)
    text = f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"
    return text if len(times) > 1 else f"{text} (1 call)"


# --- data ---------------------------------------------------------------------------------------


@dataclass
class Data:
    name: str
    val: Tensor
    val_labels: Tensor
    test: Tensor
    test_labels: Tensor


def synthetic(n: int, c: int) -> Data:
    """Over-confident logits: a true logit vector u (a margin m ~ U(0.6, 1.5)·ln C on a random
    class, plus N(0, 1) noise), labels drawn from softmax(u), logits 2u (so T = 2 is exact).
    Fitted on the first half, tested on the second."""
    g = torch.Generator().manual_seed(0)
    u = torch.randn(n, c, generator=g)
    margin = (0.6 + 0.9 * torch.rand(n, generator=g)) * math.log(c)
    u[torch.arange(n), torch.randint(c, (n,), generator=g)] += margin
    gumbel = -torch.log(-torch.log(torch.rand(n, c, generator=g)))
    labels = (u + gumbel).argmax(dim=1)
    logits, half = 2 * u, n // 2
    name = f"synthetic {n:,} x {c:,}".replace(",", " ")
    return Data(name, logits[:half], labels[:half], logits[half:], labels[half:])


def run_data(run_dir: Path) -> Data:
    """A run's validation and test logits, computed the way ``evaluate`` computes them."""
    from focalcal.data import BatchLoader
    from focalcal.engine.runs import load_model, load_splits
    from focalcal.engine.train import predict

    model, config = load_model(run_dir, "last")
    splits = load_splits(config)
    logits = {
        split: predict(
            model, BatchLoader(splits[split], config.eval_batch_size, rank=0, world_size=1)
        )
        for split in ("val", "test")
    }
    name = f"{config.dataset} {config.model} run ({config.loss}, {config.epochs} epochs)"
    return Data(name, logits["val"], splits["val"].labels, logits["test"], splits["test"].labels)


def train_quick_run(run_dir: Path) -> None:
    """Cross-entropy on 4 000 Fashion-MNIST images (digits where it is not installed), 8
    epochs, into ``run_dir`` (which must not exist): the over-fitting regime where the network
    is over-confident."""
    from focalcal.engine.config import TrainConfig
    from focalcal.engine.train import train

    for dataset, subset in (("fashion-mnist", 4000), ("digits", None)):
        config = TrainConfig(
            dataset=dataset, subset=subset, epochs=8, device="cpu", seed=0, analysis_samples=0
        )
        try:
            train(config, run_dir, progress=False)
            return
        except OSError as error:  # the dataset's files are missing
            print(f"# {dataset} not trained ({type(error).__name__}: {error})")
            shutil.rmtree(run_dir, ignore_errors=True)
    raise RuntimeError("no dataset to train the quick run on")


# --- report -------------------------------------------------------------------------------------


def table(data: Data, found: list[Method], results: dict[str, list[Result]]) -> None:
    print(f"\n### {data.name}: fit on {len(data.val):,}, test on {len(data.test):,}\n")
    print(
        "| method | library: call | fit | transform | focalcal faster: fit, transform "
        "| test ECE % | test NLL |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for method in found:
        rows = results.get(method.name, [])
        for r in rows:
            c, ratio = r.candidate, "—"
            reference = counterpart(rows, r) if c.against is not None else None
            if r.status == "ok" and reference and reference.status.startswith("stopped"):
                # focalcal's fit was stopped at its limit: the library's fit over that limit
                ratio = f"<= {statistics.median(r.fit) / reference.limit:.2f}x, —"
            elif c.against is not None and r.status == "ok":
                ratio = f"{speedup(rows, r, 'fit'):.2f}x, {speedup(rows, r, 'transform'):.2f}x"
            elif c.against is not None and (bound := lower_bound(rows, r)):
                ratio = f">= {bound:.0f}x, —"
            if r.status != "ok":
                print(f"| {method.name} | {c.library}: {c.label} | {r.status} | | {ratio} | | |")
                continue
            print(
                f"| {method.name} | {c.library}: {c.label} | {seconds(r.fit)} | "
                f"{seconds(r.transform)} | {ratio} | {100 * r.ece:.3f} | {r.nll:.4f} |"
            )
        for library, why in method.absent.items():
            print(f"| {method.name} | {library}: {why} | | | | | |")


def lower_bound(results: list[Result], r: Result) -> float:
    """For a library stopped at the limit: the limit over focalcal's fit time (0 if none)."""
    reference = counterpart(results, r)
    if not r.status.startswith("stopped") or reference.status != "ok":
        return 0.0
    return r.limit / statistics.median(reference.fit)


def check_goals(goals: Goals, data: Data, results: dict[str, list[Result]]) -> None:
    for name, rows in results.items():
        for r in rows:
            c = r.candidate
            if c.against is None:
                continue
            reference, where = counterpart(rows, r), f"{data.name}, {name}, {c.library}"
            if reference.status != "ok":
                goals.check(False, f"{where}: focalcal's {c.against!r} {reference.status}")
            elif bound := lower_bound(rows, r):
                goals.check(
                    True,
                    f"{where}: focalcal's fit faster, >= {bound:.0f}x ({c.library} "
                    f"{r.status}; its transform not measured)",
                )
                if c.equal:
                    print(f"- (not checked) {where}: equal results ({c.library} {r.status})")
            elif r.status != "ok":
                print(f"- (not checked) {where}: {c.library} {r.status}")
            else:
                check_pair(goals, where, rows, r, reference)


def check_pair(goals: Goals, where: str, rows: list[Result], r: Result, reference: Result) -> None:
    d_ece, d_nll = abs(r.ece - reference.ece), abs(r.nll - reference.nll)
    if "ece" in r.candidate.equal:
        goals.check(
            d_ece <= ECE_TOLERANCE,
            f"{where}: equal ECE, |ΔECE| = {100 * d_ece:.3f} pp <= {100 * ECE_TOLERANCE:g}",
        )
    if "nll" in r.candidate.equal:
        goals.check(
            d_nll <= NLL_TOLERANCE, f"{where}: equal NLL, |ΔNLL| = {d_nll:.4f} <= {NLL_TOLERANCE:g}"
        )
    fit, transform = speedup(rows, r, "fit"), speedup(rows, r, "transform")
    goals.check(
        fit > 1 and transform > 1,
        f"{where}: focalcal faster, fit {fit:.2f}x, transform {transform:.2f}x",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run",
        type=Path,
        help="a focalcal run directory; one that does not exist is trained "
        "into (default: a quick run in a temporary directory)",
    )
    parser.add_argument("--small", action="store_true", help="synthetic 10 000 x 100")
    parser.add_argument("--rounds", type=int, default=None, help="5; --small: 3")
    parser.add_argument("--min-time", type=float, default=0.1)
    parser.add_argument("--paired-below", type=float, default=0.5, help="seconds per call")
    parser.add_argument("--limit", type=float, default=None, help="seconds per call")
    parser.add_argument("--max-matrix-classes", type=int, default=200)
    args = parser.parse_args()
    if args.rounds is None:
        args.rounds = 3 if args.small else 5
    if args.limit is None:
        args.limit = 10.0 if args.small else 60.0
    logging.disable(logging.WARNING)  # torch-uncertainty warns on every fit without a model
    print(machine("cpu"))
    print(f"# calls under {args.paired_below:g} s: median of {args.rounds} paired rounds; "
          f"others: one call; a call is stopped after {args.limit:g} s. ECE and NLL of every "
          f"library's probabilities floored at {FLOOR:g}, renormalised.")  # fmt: skip

    tum, tu_failed = load_torch_uncertainty()
    nc, nc_failed = load_netcal()
    libraries = Libraries(nc, tum, nc_failed, tu_failed)
    for library, failed in ((TU, tu_failed), (NETCAL, nc_failed)):
        if failed:
            print(f"# {library}: unavailable where it needs {failed}")
    registered = calibrator_names()

    datasets = []
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run or Path(tmp) / "run"
        if not run_dir.exists():
            start = time.perf_counter()
            train_quick_run(run_dir)
            print(f"# trained a quick run into {run_dir} in {time.perf_counter() - start:.0f} s")
        datasets.append(run_data(run_dir))
    datasets.append(synthetic(10_000, 100) if args.small else synthetic(100_000, 1_000))
    warm_up(datasets[0], libraries)

    goals = Goals()
    all_results = []
    for data in datasets:
        found = methods(data.val.shape[1], libraries)
        results: dict[str, list[Result]] = {}
        for method in found:
            if method.candidates and method.name not in registered:
                print(f"# {method.name}: not registered in focalcal yet, skipped")
                continue
            too_many = data.val.shape[1] > args.max_matrix_classes
            if method.name in ("matrix", "dirichlet") and too_many:
                skipped = (
                    f"skipped above {args.max_matrix_classes} classes (--max-matrix-"
                    "classes): C² parameters, a C × C product per evaluation"
                )
                method.absent = {"every library": skipped, **method.absent}
                continue
            start = time.perf_counter()
            results[method.name] = measure(method, data, args)
            print(
                f"# {data.name}: {method.name} in {time.perf_counter() - start:.0f} s", flush=True
            )
        table(data, found, results)
        all_results.append((data, found, results))

    print("\n### Differences in definition\n")
    for method in all_results[0][1]:
        print(f"- **{method.name}**: {method.differences}")
    print("\n### Goals\n")
    for data, _, results in all_results:
        check_goals(goals, data, results)
    return 1 if goals.missed else 0


if __name__ == "__main__":
    sys.exit(main())
