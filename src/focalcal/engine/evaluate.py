"""Evaluate a trained run the paper's way: calibration before and after temperature scaling
(T fitted on the validation split), and OOD detection by AUROC; beyond the paper, calibration
after every other post-hoc map of :func:`~focalcal.scaling.calibrator_names` (vector and matrix
scaling with ODIR, histogram binning, isotonic regression, beta, ensemble temperature and
Dirichlet calibration), each fitted on the same validation logits.

``evaluate(run_dir)`` writes three files into the run directory, each atomically:

- ``evaluation.json``: the schema below, numbers as fractions (percentages only in tables);
- ``evaluation.md``: the same numbers as small Markdown tables;
- ``reliability.png``: reliability diagrams of the test split, before | after T.

``evaluation.json``::

    {
      "version": 1,
      "run": "/abs/path/to/run",          # the run directory
      "dataset": "fashion-mnist", "model": "small-cnn", "loss": "flsd-53",
      "checkpoint": "last",               # or "best"
      "epoch": 30,                        # the checkpoint's epoch
      "objective": "ece",                 # what T minimised on the validation split
      "temperature": 1.1,
      "val_samples": 1000,                # how many samples T was fitted on
      "test": {"before": {...}, "after": {...}},   # CalibrationReport.to_dict() of test logits
                                                   # and of test logits / T
      "post_hoc": {                       # the same, of the test logits under each other map
        "vector": {..., "parameters": {}, "spread_penalty": 1.0, "bias_penalty": 1.0},
        "matrix": {..., "parameters": {}, "off_diagonal_penalty": 9.0, "bias_penalty": 1.0},
        "isotonic": {..., "parameters": {...}},   # Calibrator.summary(): the fitted numbers
        ...                               # one per default_calibrators() but "temperature",
      },                                  #   each fitted on the validation split
      "ood": {                            # one entry per OOD set, keyed by its spec
        "svhn": {
          "num_samples": 26032,
          "entropy": {"before": 0.95, "after": 0.96},     # AUROC, OOD = positive class
          "confidence": {"before": 0.94, "after": 0.95},
          "fpr95": {                                      # FPR at 95 % TPR, in-distribution
            "entropy": {"before": 0.31, "after": 0.27},   #   = positive class (lower is
            "confidence": {"before": 0.33, "after": 0.29} #   better)
          }
        }
      }
    }

An OOD set is named by a spec (:mod:`focalcal.engine.ood`): a dataset name (its test split,
e.g. ``"svhn"``, ``"digits"``; images of another size or channel count resized to the run's),
``"corruption:<name>:<severity>"`` (the in-distribution test split under a
:mod:`focalcal.data.corruptions` corruption, e.g. ``"corruption:gaussian_noise:5"``) or
``"heldout"`` (the test images of the classes the run's ``classes`` leaves out). Its inputs
are normalised with the in-distribution mean and std: the model only ever saw inputs
normalised that way, and the paper feeds SVHN to CIFAR models exactly so.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from focalcal._io import atomic_write_text
from focalcal._machine import describe_machine
from focalcal.data import BatchLoader, Dataset, dataset_label
from focalcal.engine.checkpoint import load_checkpoint
from focalcal.engine.config import TrainConfig
from focalcal.engine.lock import hold
from focalcal.engine.ood import check_ood, ood_dataset, parse_ood
from focalcal.engine.runs import load_model, load_splits
from focalcal.engine.train import predict, resolve_device
from focalcal.metrics import auroc, calibration_report, fpr_at_tpr, ood_scores, reliability_bins
from focalcal.metrics.ood import OODScore
from focalcal.report.cells import loss_label
from focalcal.report.plots import save_reliability_diagram
from focalcal.report.tables import evaluation_markdown
from focalcal.scaling import (
    ODIR_RATE,
    Objective,
    default_calibrators,
    fit_calibrator,
    fit_temperature,
    odir_penalties,
)

CHECKPOINTS = ("last", "best")
OBJECTIVES = ("ece", "nll")
OOD_SCORES: tuple[OODScore, ...] = ("entropy", "confidence")
EVALUATION_FILES = ("evaluation.json", "evaluation.md", "reliability.png")


def evaluate(
    run_dir: str | os.PathLike[str],
    *,
    checkpoint: str = "last",
    objective: Objective = "ece",
    ood: Sequence[str] = (),
    bootstrap_samples: int = 0,
    device: str | torch.device = "cpu",
    write: bool = True,
) -> dict[str, Any]:
    """Evaluate the ``checkpoint`` (``"last"`` or ``"best"``) of the run in ``run_dir``.

    Fits T on the validation split by ``objective`` (``"ece"``: the paper's grid; ``"nll"``),
    reports every calibration metric of the test split before and after T (with
    ``bootstrap_samples`` resamples, 95 % intervals), and how well each ``ood`` set (see
    :mod:`focalcal.engine.ood`) is told from the test split by softmax entropy and by max
    confidence, before and after T: the AUROC (OOD the positive class) and the FPR at 95 % TPR
    (:func:`~focalcal.metrics.ood_fpr_at_tpr`, in-distribution the positive class). Also
    reports the test metrics after every other calibrator of
    :func:`~focalcal.scaling.calibrator_names` at its default options (vector scaling and
    matrix scaling with ODIR at :func:`~focalcal.scaling.odir_penalties`, …), each fitted on
    the validation logits by :func:`~focalcal.scaling.fit_calibrator`.
    Returns the evaluation (the module docstring's schema); with ``write``, also writes
    ``evaluation.json``, ``evaluation.md`` and (with matplotlib) ``reliability.png``.

    Raises ``FileNotFoundError`` for a missing run directory or checkpoint, ``ValueError`` for
    an unknown checkpoint, objective or OOD set, or one that does not fit the run (``heldout``
    for a run that keeps every class), before any prediction.

    Example:
        >>> import tempfile
        >>> from focalcal.engine.train import train
        >>> config = TrainConfig(dataset="digits", subset=256, epochs=1)
        >>> with tempfile.TemporaryDirectory() as run:
        ...     _ = train(config, run, progress=False)
        ...     result = evaluate(run, ood=["digits", "corruption:contrast:5"], write=False)
        >>> result["ood"]["digits"]["entropy"]["before"]  # the test split against itself
        0.5
        >>> sorted(result["test"]["after"])[:4]
        ['adaece', 'brier', 'classwise_ece', 'debiased_ece']
    """
    path = _checkpoint_path(run_dir, checkpoint)
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    for spec in ood:
        parse_ood(spec)  # fail before the (slow) predictions
    # A writer holds the run's lock throughout (it fails at once while the run trains).
    with hold(run_dir) if write else contextlib.nullcontext():
        return _evaluate(
            run_dir, path, checkpoint, objective, ood, bootstrap_samples, device, write
        )


def _evaluate(
    run_dir: str | os.PathLike[str],
    path: Path,
    checkpoint: str,
    objective: Objective,
    ood: Sequence[str],
    bootstrap_samples: int,
    device: str | torch.device,
    write: bool,
) -> dict[str, Any]:
    device = resolve_device(str(device))
    model, config = load_model(run_dir, checkpoint, device)
    for spec in ood:
        check_ood(spec, config)  # fail before the predictions
    splits = load_splits(config)
    logits = {split: _logits(model, splits[split], config, device) for split in ("val", "test")}
    labels = {split: splits[split].labels.to(device) for split in ("val", "test")}
    temperature = fit_temperature(logits["val"], labels["val"], objective)
    reports = {
        when: calibration_report(
            logits["test"], labels["test"], bootstrap_samples=bootstrap_samples, temperature=t
        ).to_dict()
        for when, t in (("before", None), ("after", temperature))
    }
    post_hoc = {}
    for name in default_calibrators(logits["val"].shape[1]):
        if name == "temperature":  # the "after" above, by the evaluation's objective
            continue
        calibrator = fit_calibrator(name, logits["val"], labels["val"])
        report = calibration_report(
            calibrator.transform(logits["test"]),
            labels["test"],
            bootstrap_samples=bootstrap_samples,
        )
        post_hoc[name] = {**report.to_dict(), "parameters": calibrator.summary()}
    off_diagonal, bias = odir_penalties(logits["val"].shape[1])  # fit_matrix_scaling's default
    if "matrix" in post_hoc:  # not above FULL_MATRIX_CLASSES classes
        post_hoc["matrix"].update(off_diagonal_penalty=off_diagonal, bias_penalty=bias)
    rate = ODIR_RATE * logits["val"].shape[1]  # fit_vector_scaling's default penalties
    post_hoc["vector"].update(spread_penalty=rate, bias_penalty=rate)
    state = load_checkpoint(path)
    evaluation: dict[str, Any] = {
        "version": 1,
        "run": str(Path(run_dir).resolve()),
        "dataset": config.dataset,
        "model": config.model,
        "loss": config.loss,
        "checkpoint": checkpoint,
        "epoch": int(state["epoch"]),
        "trained_on": list(state.get("machines", [])),  # empty in older checkpoints
        "evaluated_on": describe_machine(device),
        "objective": objective,
        "temperature": temperature,
        "val_samples": len(labels["val"]),
        "test": reports,
        "post_hoc": post_hoc,
        "ood": {},
    }
    for spec in ood:
        data = ood_dataset(spec, config, splits["test"])
        evaluation["ood"][spec] = _ood_entry(
            logits["test"], _logits(model, data, config, device), temperature
        )
    if write:
        write_evaluation(run_dir, evaluation, logits["test"], labels["test"])
    return evaluation


def write_evaluation(
    run_dir: str | os.PathLike[str], evaluation: dict[str, Any], logits: Tensor, labels: Tensor
) -> list[Path]:
    """Write ``evaluation.json``, ``evaluation.md`` and, when matplotlib is installed,
    ``reliability.png`` (test ``logits`` before | after the evaluation's T) into ``run_dir``,
    each atomically; returns the paths written.

    ``evaluation.json`` goes last, its old copy removed first: a run interrupted in between has
    none, so it counts as not evaluated (:func:`is_evaluated`) and is evaluated again."""
    run_dir = Path(run_dir)
    (run_dir / "evaluation.json").unlink(missing_ok=True)
    written = [atomic_write_text(run_dir / "evaluation.md", evaluation_markdown(evaluation))]
    # The numbers matter more than the picture: without the optional matplotlib, skip it.
    if _plots():
        temperature = evaluation["temperature"]
        panels = {
            "before T": reliability_bins(logits, labels),
            f"after T = {temperature:g}": reliability_bins(logits / temperature, labels),
        }
        name = "" if run_dir.name == evaluation["loss"] else f" ({run_dir.name})"  # seed-1
        title = (
            f"{dataset_label(evaluation['dataset'])} · {evaluation['model']} · "
            f"{loss_label(evaluation['loss'])}{name}, test split, "
            f"{evaluation['checkpoint']} checkpoint (epoch {evaluation['epoch']})"
        )
        written.append(save_reliability_diagram(panels, run_dir / "reliability.png", title=title))
    text = json.dumps(evaluation, indent=2) + "\n"
    return [*written, atomic_write_text(run_dir / "evaluation.json", text)]


def _plots() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def evaluation_files() -> tuple[str, ...]:
    """The files an evaluation writes into its run directory (``reliability.png`` only with
    matplotlib installed)."""
    return EVALUATION_FILES if _plots() else EVALUATION_FILES[:2]


def is_evaluated(
    run_dir: str | os.PathLike[str],
    *,
    checkpoint: str = "last",
    objective: str = "ece",
    ood: Sequence[str] = (),
) -> bool:
    """Whether ``run_dir`` holds every file of an evaluation (:func:`evaluation_files`), its
    ``evaluation.json`` made with these settings and from the checkpoint's current epoch (a run
    trained further since needs evaluating again)."""
    run_dir = Path(run_dir)
    if not all((run_dir / name).is_file() for name in evaluation_files()):
        return False
    try:
        evaluation = json.loads((run_dir / "evaluation.json").read_text())
        epoch = load_checkpoint(run_dir / "checkpoints" / f"{checkpoint}.pt")["epoch"]
    except (FileNotFoundError, ValueError):
        return False
    wanted = {"checkpoint": checkpoint, "objective": objective, "epoch": epoch}
    return (
        all(evaluation.get(k) == v for k, v in wanted.items())
        and set(evaluation.get("ood", {})) == set(ood)
        and "post_hoc" in evaluation  # older evaluations lack vector and matrix scaling
        and all("fpr95" in entry for entry in evaluation["ood"].values())  # and the FPR
    )


def _checkpoint_path(run_dir: str | os.PathLike[str], checkpoint: str) -> Path:
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {CHECKPOINTS}, got {checkpoint!r}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {str(run_dir)!r} does not exist")
    path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"run {str(run_dir)!r} has no {checkpoint!r} checkpoint ({path}); train it first"
        )
    return path


def _logits(model: nn.Module, data: Dataset, config: TrainConfig, device: torch.device) -> Tensor:
    # every sample, even in a torch.distributed process (evaluation runs in one process)
    loader = BatchLoader(data, config.eval_batch_size, device=device, rank=0, world_size=1)
    return predict(model, loader)


def _ood_entry(in_logits: Tensor, out_logits: Tensor, temperature: float) -> dict[str, Any]:
    entry: dict[str, Any] = {"num_samples": len(out_logits), "fpr95": {}}
    scalings = (("before", 1.0), ("after", temperature))
    for score in OOD_SCORES:
        entry[score], entry["fpr95"][score] = {}, {}
        for when, t in scalings:  # each set's scores once, for both measures
            pair = ood_scores(in_logits / t, out_logits / t, score=score)
            entry[score][when], entry["fpr95"][score][when] = (
                float(auroc(*pair)),
                float(fpr_at_tpr(*pair)),
            )
    return entry
