"""The arguments of the ``focalcal`` command: every subcommand, option, help text and
default (:mod:`focalcal.cli` runs them)."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = "Train, evaluate and calibrate classifiers whose confidence matches their accuracy."
REPRODUCE_EXAMPLES = """examples:
  focalcal reproduce                                   # the default experiment, ~3-5 min on 2 cores
  focalcal reproduce --dataset mnist1d --model cnn1d --losses ce flsd-53 --epochs 3
  focalcal reproduce --config grid.toml --seeds 3      # a [grid] table; flags win over it
"""


def _add_config_flags(parser: argparse.ArgumentParser, default_preset: str) -> None:
    parser.add_argument(
        "--preset",
        default=default_preset,
        help=f"a named protocol (default {default_preset}; see `focalcal list`)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="a TOML or YAML TrainConfig (replaces --preset); for reproduce, with a [grid] table "
        "(default: none)",
    )
    parser.add_argument(
        "--dataset",
        help="a registered dataset (focalcal list), an .npz/.pt/.csv file or an image folder "
        "(default: the preset's, fashion-mnist)",
    )
    parser.add_argument(
        "--model",
        help="a registered model (focalcal list) or module.path:callable (default: the "
        "preset's, small-cnn)",
    )
    parser.add_argument("--loss", help="the loss of this run: ce, fl-3, flsd-53, ... (default: ce)")
    parser.add_argument(
        "--epochs",
        type=int,
        help="epochs to train; the lr milestones move in proportion (default: the preset's, 30)",
    )
    parser.add_argument(
        "--subset", type=int, help="training samples to keep (default: the preset's, 2000)"
    )
    parser.add_argument(
        "--seed", type=int, help="of the split, the weights and the batches (default 0)"
    )
    parser.add_argument("--device", help="auto (default: CUDA if present), cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any TrainConfig field, its value in TOML syntax (repeatable; default: none)",
    )


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``focalcal`` command."""
    main = argparse.ArgumentParser(prog="focalcal", description=DESCRIPTION)
    commands = main.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one run into RUN_DIR")
    train.add_argument("run_dir", type=Path, help="the run's folder (made if missing)")
    _add_config_flags(train, "fashion-mnist")
    train.add_argument(
        "--resume", action="store_true", help="continue RUN_DIR's last checkpoint (default: no)"
    )
    train.add_argument(
        "--quiet", action="store_true", help="no progress bar or epoch lines (default: shown)"
    )

    evaluate = commands.add_parser("evaluate", help="calibration before and after T of a run")
    evaluate.add_argument("run_dir", type=Path, help="a folder focalcal train wrote")
    evaluate.add_argument("--checkpoint", choices=("last", "best"), default="last",
                          help="the last checkpoint (default) or the best one")  # fmt: skip
    evaluate.add_argument("--objective", choices=("ece", "nll"), default="ece",
                          help="fit T by the paper's ECE grid (default) or by NLL")  # fmt: skip
    evaluate.add_argument("--ood", nargs="*", default=[],
                          help="OOD sets: dataset names (e.g. digits), corruption:NAME:SEVERITY "
                          "or heldout (the classes the run's classes leave out; default: "
                          "none)")  # fmt: skip
    evaluate.add_argument("--bootstrap", type=int, default=0,
                          help="bootstrap resamples of the test set for intervals "
                          "(default 0: none)")  # fmt: skip
    evaluate.add_argument("--device", default="cpu", help="where to predict (default cpu)")

    reproduce = commands.add_parser(
        "reproduce",
        help="the paper's comparison: a grid of runs",
        description="Train and evaluate a grid of runs (losses x models x datasets x seeds) and "
        "write the paper's tables and figures.",
        epilog=REPRODUCE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_flags(reproduce, "fashion-mnist")
    reproduce.add_argument(
        "--losses",
        nargs="+",
        help="the grid's losses (default: ce brier mmce ls-0.05 fl-3 flsd-53); --loss is one run's",
    )
    reproduce.add_argument(
        "--models", nargs="+", help="the grid's models (default: the one of --model or the preset)"
    )
    reproduce.add_argument(
        "--datasets", nargs="+",
        help="the grid's datasets (default: the one of --dataset or the preset)",
    )  # fmt: skip
    reproduce.add_argument(
        "--ood", nargs="*",
        help="OOD sets: dataset names, corruption:NAME:SEVERITY or heldout (default: "
        "corruption:gaussian_noise:5 for images, and digits for fashion-mnist; none for signals "
        "or text)",
    )  # fmt: skip
    reproduce.add_argument("--objective", choices=("ece", "nll"), default="ece",
                           help="fit T by the paper's ECE grid (default) or by NLL")  # fmt: skip
    reproduce.add_argument(
        "--seeds", type=int,
        help="runs of each configuration, seeds SEED, SEED+1, ... (tables: mean ± std; "
        "default 1)",
    )  # fmt: skip
    reproduce.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        help="bootstrap resamples of the test set for intervals (default 0: none)",
    )
    reproduce.add_argument(
        "--shard", metavar="K/N",
        help="only runs K, K+N, K+2N, ... and no tables (one process of a job array); under "
        "torchrun each process takes its RANK/WORLD_SIZE shard and rank 0 writes the tables "
        "(default: every run)",
    )  # fmt: skip
    reproduce.add_argument(
        "--out",
        type=Path,
        help="where runs, tables and figures go (default: runs/reproduce-PRESET)",
    )
    reproduce.add_argument(
        "--quiet", action="store_true", help="no progress bars or lines (default: shown)"
    )

    calibrate = commands.add_parser(
        "calibrate",
        help="calibrate saved predictions: fit post-hoc maps on VAL, report them on TEST",
        description="Fit post-hoc calibration maps on validation predictions, report every "
        "metric on test predictions before and after each, and save each fitted map; or, with "
        "--apply, calibrate new predictions with a saved map. A predictions file is .npz "
        "(arrays logits or probs, and labels), .pt/.pth (a dict of tensors with those keys), "
        ".csv (a column per class and a label column) or two .npy files (scores, labels).",
        epilog="example: focalcal calibrate --val val.npz --test test.npz --out runs/cal",
    )
    calibrate.add_argument(
        "--val",
        nargs="+",
        metavar="FILE",
        help="validation predictions: what the maps are fitted on (required unless --apply)",
    )
    calibrate.add_argument(
        "--test",
        nargs="+",
        metavar="FILE",
        help="test predictions: what the report measures (required unless --apply)",
    )
    calibrate.add_argument(
        "--method",
        nargs="+",
        metavar="NAME",
        help="post-hoc maps to fit (default: all; matrix and dirichlet only up to 100 classes)",
    )
    calibrate.add_argument("--bins", type=int, default=15, help="bins of the metrics (default 15)")
    calibrate.add_argument(
        "--bootstrap",
        type=int,
        default=200,
        help="bootstrap resamples of the test set for intervals (default 200; 0: none)",
    )
    calibrate.add_argument("--seed", type=int, default=0, help="of the bootstrap (default 0)")
    calibrate.add_argument(
        "--out", type=Path, help="where the report and calibrators go (default: runs/calibration)"
    )
    calibrate.add_argument(
        "--apply",
        type=Path,
        metavar="CALIBRATOR",
        help="a saved calibrator (calibrators/METHOD.json) to apply (default: none, fit)",
    )
    calibrate.add_argument(
        "--scores",
        nargs="+",
        metavar="FILE",
        help="with --apply: the predictions to calibrate (labels optional)",
    )
    calibrate.add_argument(
        "--output", type=Path, help="with --apply: .npz (default NAME.calibrated.npz), .pt or .csv"
    )
    calibrate.add_argument("--quiet", action="store_true", help="no progress bar (default: shown)")

    gamma = commands.add_parser("gamma", help="the Lambert-W γ for a probability threshold")
    gamma.add_argument(
        "--p0", type=float, required=True, help="threshold in (0, 0.5), required (FLSD-53's is 0.2)"
    )

    commands.add_parser("list", help="registered losses, models, datasets, presets")
    for command in commands.choices.values():  # a bad flag is refused with its command's usage
        command.set_defaults(command_parser=command)
    return main
