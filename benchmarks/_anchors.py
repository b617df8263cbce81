"""The anchors of bench_metrics.py: other implementations of focalcal's calibration metrics and
temperature fits, each called from float32 logits and labels to a number (a metric or T).

- ``paper``: the paper's evaluation code, written here in its style (torrvision/focal_calibration,
  ``Metrics/metrics.py`` and ``temperature_scaling.py``; the NLL temperature as in Guo et al.'s
  ``temperature_scaling.py``): Python loops over the bins (and classes) with one host read per
  bin.
- ``torchmetrics`` 1.9, ``torch-uncertainty`` 0.13, ``netcal`` 1.4 and ``uncertainty-calibration``
  (Kumar et al., imported as ``calibration``): the libraries' own calls, where installed.

Each anchor lists, per task, the call and where its definition differs from focalcal's, and the
tasks it does not offer (left out of the comparison). A library's call includes turning the
logits into what it takes (a softmax, a numpy array): that is the cost its user pays.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn, optim
from torch.nn import functional as F

NUM_BINS = 15
ECE, MCE, ADAECE, CLASSWISE = "ECE", "MCE", "AdaECE", "Classwise-ECE"
T_NLL, T_GRID = "fit T, NLL", "fit T, ECE grid"
TASKS = (ECE, MCE, ADAECE, CLASSWISE, T_NLL, T_GRID)
EQUAL_MASS_MOVED = 2 * (NUM_BINS - 1)  # samples an equal-mass rule may bin otherwise: 2 per edge


@dataclass
class Entry:
    """One anchor's call for one task."""

    call: Callable[[Tensor, Tensor], float]  # (logits, labels) -> the metric, or T
    api: str  # the call, as its user writes it
    differences: str  # where its definition differs from focalcal's
    moved: int = 0  # samples its bins may hold otherwise than focalcal's, by definition
    expect_equal: bool = True  # False: its value differs by design (``differences`` says why)


@dataclass
class Anchor:
    name: str
    entries: dict[str, Entry] = field(default_factory=dict)
    absent: dict[str, str] = field(default_factory=dict)  # task -> why it has no entry
    unavailable: str = ""  # why the whole library is missing ("" if it loaded)
    version: str = ""


def numpy_probs(logits: Tensor, dtype: torch.dtype = torch.float32) -> np.ndarray:
    return torch.softmax(logits.to(dtype), dim=1).cpu().numpy()


# --- the paper's evaluation code, in its style --------------------------------------------------


def _bin_gaps(
    confidences: Tensor, hits: Tensor, lowers: Sequence[float], uppers: Sequence[float]
) -> Iterator[tuple[Tensor, Tensor]]:
    """(|mean confidence - mean hit|, share of the samples) of every non-empty bin (lo, hi], one
    bin at a time with a host read per bin, as the paper's ``ECELoss`` loop does."""
    for lower, upper in zip(lowers, uppers, strict=True):
        in_bin = confidences.gt(lower) * confidences.le(upper)
        prop_in_bin = in_bin.float().mean()
        if prop_in_bin.item() > 0:
            gap = torch.abs(confidences[in_bin].mean() - hits[in_bin].float().mean())
            yield gap, prop_in_bin


def _equal_width(num_bins: int) -> tuple[list[float], list[float]]:
    edges = torch.linspace(0, 1, num_bins + 1)  # float32, read back with .item() as the paper
    return [e.item() for e in edges[:-1]], [e.item() for e in edges[1:]]


def paper_ece(logits: Tensor, labels: Tensor, num_bins: int = NUM_BINS) -> float:
    confidences, predictions = torch.max(F.softmax(logits, dim=1), 1)
    ece = torch.zeros(1, device=logits.device)
    for gap, prop in _bin_gaps(confidences, predictions.eq(labels), *_equal_width(num_bins)):
        ece += gap * prop
    return ece.item()


def paper_mce(logits: Tensor, labels: Tensor, num_bins: int = NUM_BINS) -> float:
    confidences, predictions = torch.max(F.softmax(logits, dim=1), 1)
    gaps = _bin_gaps(confidences, predictions.eq(labels), *_equal_width(num_bins))
    return max((gap.item() for gap, _ in gaps), default=0.0)


def paper_adaece(logits: Tensor, labels: Tensor, num_bins: int = NUM_BINS) -> float:
    confidences, predictions = torch.max(F.softmax(logits, dim=1), 1)
    on_host = confidences.cpu().numpy()
    n = len(on_host)
    edges = np.interp(np.linspace(0, n, num_bins + 1), np.arange(n), np.sort(on_host))
    _, edges = np.histogram(on_host, edges)  # the paper's code takes its edges from here
    ece = torch.zeros(1, device=logits.device)
    lowers, uppers = [float(e) for e in edges[:-1]], [float(e) for e in edges[1:]]
    for gap, prop in _bin_gaps(confidences, predictions.eq(labels), lowers, uppers):
        ece += gap * prop
    return ece.item()


def paper_classwise_ece(logits: Tensor, labels: Tensor, num_bins: int = NUM_BINS) -> float:
    """Classwise-ECE the way the paper's evaluation code computes it: Python loops over the
    classes and the bins, reading every bin's share back to the host."""
    softmaxes = F.softmax(logits, dim=1)
    lowers, uppers = _equal_width(num_bins)
    per_class = []
    for k in range(logits.shape[1]):
        class_sce = torch.zeros(1, device=logits.device)
        for gap, prop in _bin_gaps(softmaxes[:, k], labels.eq(k), lowers, uppers):
            class_sce += gap * prop
        per_class.append(class_sce)
    return torch.cat(per_class).mean().item()


def paper_temperature_grid(logits: Tensor, labels: Tensor, num_bins: int = NUM_BINS) -> float:
    """The paper's ``set_temperature``: T = 0.1, 0.2, ... 10.0 (by repeated += 0.1), the first T
    with the lowest ECE of softmax(logits / T) (the repo also computes each T's NLL: left out)."""
    best_ece, best_t, t = math.inf, 1.0, 0.1
    for _ in range(100):
        ece = paper_ece(logits / t, labels, num_bins)
        if best_ece > ece:
            best_ece, best_t = ece, t
        t += 0.1
    return best_t


def guo_temperature_nll(logits: Tensor, labels: Tensor) -> float:
    """Guo et al.'s ``ModelWithTemperature.set_temperature``: T from 1.5, one LBFGS step
    (lr 0.01, at most 50 iterations) on the cross-entropy of logits / T."""
    temperature = nn.Parameter(torch.ones(1, device=logits.device) * 1.5)
    nll_criterion = nn.CrossEntropyLoss()
    optimizer = optim.LBFGS([temperature], lr=0.01, max_iter=50)

    def closure() -> Tensor:
        optimizer.zero_grad()
        scaled = logits / temperature.unsqueeze(1).expand(logits.size(0), logits.size(1))
        loss = nll_criterion(scaled, labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return temperature.item()


def paper() -> Anchor:
    float32_edges = (
        "edges are float32 linspace(0, 1, 16) values, not the real b/15 (a confidence between "
        "the two goes to the other bin); float32 means; prediction = argmax of the "
        "probabilities (focalcal: of the logits; they differ only where rounded "
        "probabilities tie)"
    )
    anchor = Anchor("paper", version="torrvision/focal_calibration, in its style")
    anchor.entries = {
        ECE: Entry(paper_ece, "ECELoss(n_bins=15) loop", f"Same bins (lo, hi]; {float32_edges}."),
        MCE: Entry(
            paper_mce,
            "the ECELoss loop, max over its bins",
            f"Same bins; {float32_edges}. The repo's own maximum_calibration_error bins "
            "sample by sample in Python (slower still); the anchor is the per-bin loop.",
        ),
        ADAECE: Entry(
            paper_adaece,
            "AdaptiveECELoss(n_bins=15)",
            "Same edges (np.interp of the sorted confidences at linspace(0, N, 16)), but every "
            "bin is (lo, hi], the first too: the smallest confidence is in no bin (its weight "
            "is lost); float32 means; an np.histogram whose counts are discarded (kept: the "
            "repo's cost).",
            moved=1,
        ),
        CLASSWISE: Entry(
            paper_classwise_ece,
            "ClasswiseECELoss(n_bins=15)",
            "Same bins; " + float32_edges.split(";")[0] + ". The repo takes the number of "
            "classes from max(labels) + 1; the anchor from the logits' shape (equal whenever "
            "the last class occurs, as at every benchmark size).",
        ),
        T_NLL: Entry(
            guo_temperature_nll,
            "Guo et al.: LBFGS(lr=0.01, max_iter=50) from T = 1.5",
            "Same objective (the NLL of logits / T), but with lr 0.01 each quasi-Newton step "
            "goes 1 % of the way, so 50 iterations stop short of the minimum; focalcal "
            "reaches |ΔT| <= 1e-4. (The focal_calibration repo itself takes the NLL's T from "
            "the 0.1 grid.)",
            expect_equal=False,
        ),
        T_GRID: Entry(
            paper_temperature_grid,
            "set_temperature(cross_validate='ece')",
            "Same grid and rule (the first T of lowest ECE); T accumulates 0.1 steps "
            "(0.30000000000000004, ...); each T's ECE by the ECELoss loop (float32 edges); "
            "the repo also computes each T's NLL, which the anchor leaves out.",
        ),
    }
    return anchor


# --- libraries ----------------------------------------------------------------------------------


def version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(distribution)
    except PackageNotFoundError:
        return "?"


def torchmetrics_anchor() -> Anchor:
    anchor = Anchor("torchmetrics")
    try:
        from torchmetrics.functional.classification import multiclass_calibration_error
    except Exception as error:
        anchor.unavailable = f"not installed ({type(error).__name__})"
        return anchor
    anchor.version = version("torchmetrics")
    bins = (
        "bins by bucketize(confidence, linspace(0, 1, 16) in float32, right=True) - 1: "
        "[lo, hi), and a 16th bin of its own for a confidence of exactly 1; float32 sums; "
        "prediction = argmax of the probabilities; inputs validated (validate_args=True)"
    )

    def call(norm: str) -> Callable[[Tensor, Tensor], float]:
        def fn(logits: Tensor, labels: Tensor) -> float:
            c = logits.shape[1]
            return float(multiclass_calibration_error(logits, labels, c, NUM_BINS, norm))

        return fn

    api = "multiclass_calibration_error(logits, labels, C, n_bins=15, norm={!r})"
    anchor.entries = {
        ECE: Entry(call("l1"), api.format("l1"), f"Softmax applied to logits; {bins}."),
        MCE: Entry(call("max"), api.format("max"), "As its ECE; empty bins count as 0 in the max."),
    }
    anchor.absent = {
        ADAECE: "not offered",
        CLASSWISE: "not offered",
        T_NLL: "not offered",
        T_GRID: "not offered",
    }
    return anchor


# torch-uncertainty's package __init__ imports torchvision, which must never be installed beside
# this torch (see bench_calibrators.py): the modules needed are loaded by file path under stub
# packages, in an order in which their imports (relative or absolute) find each other.
TU_FILES = (
    "post_processing/abstract.py",
    "post_processing/calibration/scaler.py",
    "post_processing/calibration/temperature_scaler.py",
    "metrics/classification/calibration/adaptive_calibration_error.py",
    "metrics/classification/calibration/calibration_error.py",
    "metrics/classification/calibration/classwise_calibration_error.py",
)


_ROOTS: dict[str, Path] = {}


def load_by_path(package: str, files: Sequence[str]) -> dict[str, types.ModuleType]:
    """``files`` (paths inside ``package``'s folder) as modules, under stub packages that hold
    nothing but what is loaded into them (each module's classes are also set on its package,
    as the package's ``__init__`` would); the package's own ``__init__`` files never run.
    Raises what a file's import raises (ModuleNotFoundError if ``package`` is not installed)."""
    if package not in _ROOTS:  # found before its stub hides it; several calls may load more
        spec = importlib.util.find_spec(package)  # locates the folder, runs nothing
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(f"{package} is not installed")
        _ROOTS[package] = Path(next(iter(spec.submodule_search_locations)))
    root = _ROOTS[package]
    loaded = {}
    for file in files:
        parts = file.removesuffix(".py").split("/")
        for depth in range(len(parts)):  # the stub packages above the module
            name = ".".join([package, *parts[:depth]])
            if name not in sys.modules:
                stub = types.ModuleType(name)
                stub.__path__ = []
                sys.modules[name] = stub
        name = ".".join([package, *parts])
        file_spec = importlib.util.spec_from_file_location(name, root / file)
        assert file_spec is not None and file_spec.loader is not None
        module = importlib.util.module_from_spec(file_spec)
        sys.modules[name] = module
        try:
            file_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        loaded[parts[-1]] = module
        parent = sys.modules[name.rpartition(".")[0]]
        for attribute, value in vars(module).items():  # re-exported, as an __init__ would
            if isinstance(value, type) and value.__module__ == name:  # (PostProcessing)
                setattr(parent, attribute, value)
    return loaded


def torch_uncertainty_anchor() -> Anchor:
    anchor = Anchor("torch-uncertainty")
    try:
        tu = load_by_path("torch_uncertainty", TU_FILES)
    except Exception as error:
        anchor.unavailable = f"not installed or not loadable ({type(error).__name__}: {error})"
        return anchor
    anchor.version = version("torch-uncertainty")
    calibration_error = tu["calibration_error"].CalibrationError
    adaptive = tu["adaptive_calibration_error"].AdaptiveCalibrationError
    classwise = tu["classwise_calibration_error"].ClasswiseCalibrationError
    scaler = tu["temperature_scaler"].TemperatureScaler

    def metric(make: Callable[[int], Any], probs: bool) -> Callable[[Tensor, Tensor], float]:
        def fn(logits: Tensor, labels: Tensor) -> float:
            m = make(logits.shape[1])
            m.update(torch.softmax(logits, dim=1) if probs else logits, labels)
            return float(m.compute())

        return fn

    def temperature(logits: Tensor, labels: Tensor) -> float:
        fitted = scaler(device=logits.device)
        fitted.fit([(logits, labels)], progress=False)  # one batch; its model: the identity
        return float(fitted.temperature[0].detach())

    def top(norm: str) -> Callable[[int], Any]:
        return lambda c: calibration_error("multiclass", num_bins=NUM_BINS, norm=norm,
                                           num_classes=c)  # fmt: skip

    same_as_torchmetrics = (
        "torchmetrics' MulticlassCalibrationError (update, compute) under another name: "
        "the same bins and float32 sums as the torchmetrics column."
    )
    anchor.entries = {
        ECE: Entry(
            metric(top("l1"), probs=False),
            "CalibrationError('multiclass', num_bins=15, norm='l1', num_classes=C)",
            same_as_torchmetrics,
        ),
        MCE: Entry(
            metric(top("max"), probs=False),
            "CalibrationError('multiclass', num_bins=15, norm='max', num_classes=C)",
            same_as_torchmetrics,
        ),
        ADAECE: Entry(
            metric(
                lambda c: adaptive("multiclass", num_bins=NUM_BINS, norm="l1", num_classes=c),
                probs=True,
            ),
            "AdaptiveCalibrationError('multiclass', num_bins=15, norm='l1', num_classes=C) "
            "on softmax probabilities",
            "Equal-count bins: the sorted confidences split by tensor_split into 15 parts of "
            "ceil(N/15) or floor(N/15) (focalcal: edges at the interpolated quantiles k·N/15, "
            "bins (lo, hi]): each edge up to a sample apart; ties split across bins, not "
            "merged; float32 sums.",
            moved=EQUAL_MASS_MOVED,
        ),
        CLASSWISE: Entry(
            metric(lambda c: classwise(c, num_bins=NUM_BINS, norm="l1"), probs=True),
            "ClasswiseCalibrationError(C, num_bins=15, norm='l1') on softmax probabilities",
            "Per class torchmetrics' binary calibration error of (p_k, 1[y = k]): bins "
            "[lo, hi) with float32 edges, float32 sums; the mean over the C classes.",
        ),
        T_NLL: Entry(
            temperature,
            "TemperatureScaler(device=...).fit([(logits, labels)])",
            "Same objective; torch LBFGS (lr 0.1, 100 iterations, no line search) over 1/T "
            "from T = 1, in float32 (focalcal: to |ΔT| <= 1e-4, in float64).",
        ),
    }
    anchor.absent = {T_GRID: "not offered"}
    return anchor


def netcal_anchor() -> Anchor:
    anchor = Anchor("netcal")
    try:
        from netcal.metrics import ECE as NetcalECE
        from netcal.metrics import MCE as NetcalMCE
        from netcal.scaling import TemperatureScaling
    except Exception as error:
        anchor.unavailable = f"not installed ({type(error).__name__})"
        return anchor
    anchor.version = version("netcal")

    def metric(make: Callable[[], Any]) -> Callable[[Tensor, Tensor], float]:
        return lambda z, y: float(make().measure(numpy_probs(z), y.cpu().numpy()))

    def temperature(logits: Tensor, labels: Tensor) -> float:
        fitted = TemperatureScaling().fit(numpy_probs(logits, torch.float64), labels.cpu().numpy())
        return 1.0 / float(np.asarray(fitted.temperature).reshape(-1)[0])  # it keeps 1/T

    bins = (
        "bins by numpy's histogramdd and binned_statistic_dd: [lo, hi), the last [lo, 1]; "
        "confidences clipped to [eps, 1 - eps] (float32 eps); float64 means; prediction = "
        "argmax of the probabilities"
    )
    anchor.entries = {
        ECE: Entry(
            metric(lambda: NetcalECE(bins=NUM_BINS)),
            "ECE(bins=15).measure(softmax probabilities, labels)",
            f"On float32 softmax probabilities (numpy); {bins}.",
        ),
        MCE: Entry(
            metric(lambda: NetcalMCE(bins=NUM_BINS)),
            "MCE(bins=15).measure(softmax probabilities, labels)",
            "As its ECE.",
        ),
        ADAECE: Entry(
            metric(lambda: NetcalECE(bins=NUM_BINS, equal_intervals=False)),
            "ECE(bins=15, equal_intervals=False).measure(...)",
            "Equal-mass edges np.quantile(c, linspace(0, 1, 16)) (positions k(N-1)/15, "
            "focalcal: k·N/15), the first and last replaced by 0 and 1, bins [lo, hi): each "
            "edge up to a sample apart; otherwise as its ECE. netcal's ACE is the unweighted "
            "mean over bins, another quantity, and is not used.",
            moved=EQUAL_MASS_MOVED,
        ),
        T_NLL: Entry(
            temperature,
            "TemperatureScaling().fit(float64 softmax probabilities, labels)",
            "Same objective: scipy L-BFGS-B with finite-difference gradients over 1/T on "
            "log(clip(softmax(z), 2.2e-16, 1 - 2.2e-16)) in float64.",
        ),
    }
    anchor.absent = {CLASSWISE: "not offered", T_GRID: "not offered"}
    return anchor


def kumar_anchor() -> Anchor:
    anchor = Anchor("uncertainty-calibration")
    try:
        calibration = importlib.import_module("calibration")
        get_ece, get_ece_em = calibration.get_ece, calibration.get_ece_em
    except Exception as error:
        anchor.unavailable = f"not installed ({type(error).__name__})"
        return anchor
    anchor.version = version("uncertainty-calibration")

    def metric(fn: Callable[..., float], **options: Any) -> Callable[[Tensor, Tensor], float]:
        return lambda z, y: float(fn(numpy_probs(z), y.cpu().numpy(), num_bins=NUM_BINS,
                                     **options))  # fmt: skip

    through_lists = "the data go through a Python list of (p, y) tuples, then a float64 array"
    anchor.entries = {
        ECE: Entry(
            metric(get_ece),
            "calibration.get_ece(probs, labels, num_bins=15)",
            "Same bins (lo, hi] (np.searchsorted on edges i/15 in float64: for float32 "
            f"confidences the real edges); float64 means; prediction = argmax of the "
            f"probabilities; {through_lists}.",
        ),
        ADAECE: Entry(
            metric(get_ece_em),
            "calibration.get_ece_em(probs, labels, num_bins=15)",
            "Equal-mass bins: the sorted confidences split by np.array_split into 15 parts, "
            "edges midway between neighbouring parts, bins (lo, hi]: each edge up to a sample "
            f"from focalcal's interpolated quantiles; {through_lists}.",
            moved=EQUAL_MASS_MOVED,
        ),
        CLASSWISE: Entry(
            metric(get_ece, mode="marginal"),
            "calibration.get_ece(probs, labels, num_bins=15, mode='marginal')",
            "The mean over classes of the ECE of (p_k, 1[y = k]) with its ECE's bins; "
            f"{through_lists}, class by class.",
        ),
    }
    anchor.absent = {
        MCE: "not offered (l_p errors, p < ∞)",
        T_NLL: "not offered",
        T_GRID: "not offered",
    }
    return anchor


ANCHORS: dict[str, Callable[[], Anchor]] = {
    "paper": paper,
    "torchmetrics": torchmetrics_anchor,
    "torch-uncertainty": torch_uncertainty_anchor,
    "netcal": netcal_anchor,
    "uncertainty-calibration": kumar_anchor,
}


def load_anchors(names: Sequence[str]) -> list[Anchor]:
    """The named anchors, in ``ANCHORS``' order; a library that is missing stays as a column
    whose ``unavailable`` says why."""
    return [make() for name, make in ANCHORS.items() if name in names]
