"""The command line: ``focalcal train | evaluate | reproduce | calibrate | gamma | list``.

Exit status: 0 on success, 2 for bad arguments (argparse's convention), 1 when a run fails; an
error is one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from focalcal._io import tomllib
from focalcal._parser import parser
from focalcal.engine.config import TrainConfig, check_names, load_config_file


class UsageError(ValueError):
    """A bad argument value: exit status 2."""


def _overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs, each value in TOML syntax (``lr=0.05``, ``milestones=[10, 20]``,
    ``loss="fl-3"``; a bare word is a string; ``none`` unsets an optional field)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects key=value, got {pair!r}")
        if text.strip().lower() in ("none", "null"):
            values[key.strip()] = None
            continue
        try:
            values[key.strip()] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            values[key.strip()] = text  # a bare word: a string
    return values


def _config(args: argparse.Namespace) -> TrainConfig:
    return _config_and_grid(args)[0]


def _config_and_grid(args: argparse.Namespace) -> tuple[TrainConfig, dict[str, Any]]:
    """The run's config (preset or file, then flags, then --set) and the file's [grid] table."""
    from focalcal.experiments.presets import preset

    try:
        config, table = load_config_file(args.config) if args.config else (preset(args.preset), {})
        if table and args.command != "reproduce":
            raise ValueError(f"{args.config}: its [grid] table is for focalcal reproduce")
        overrides = _overrides(args.set)
        # the preset's subset and model options are its dataset's and model's only
        config = config.retarget(args.dataset, args.model, _explicit(args))
        if args.epochs is not None and "milestones" not in overrides:  # same run fractions
            config = config.with_epochs(args.epochs)
        names = ("dataset", "model", "loss", "epochs", "subset", "seed", "device")
        flags = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
        config = config.replace(**flags, **overrides)
        check_names(config)  # before a run directory is made
        return config, table
    except (ValueError, TypeError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None


def _explicit(args: argparse.Namespace) -> set[str]:
    """The config fields the command line sets by name (a flag or ``--set``)."""
    flags = {"subset"} if args.subset is not None else set()
    return flags | set(_overrides(args.set))


def _train(args: argparse.Namespace) -> None:
    import torch
    import torch.distributed as dist

    from focalcal.engine.train import distributed, train

    config = _config(args)
    _check_fit([config])
    # Under torchrun (WORLD_SIZE > 1): one process per device, DistributedDataParallel inside
    # train(); NCCL between GPUs, gloo on CPUs; rendezvous from torchrun's environment.
    started = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
    if started:
        cuda = torch.cuda.is_available() and config.device in ("auto", "cuda")
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = distributed()[0]
    try:
        result = train(config, args.run_dir, resume=args.resume, progress=not args.quiet)
    finally:
        if started:
            dist.destroy_process_group()
    if rank == 0:
        print(json.dumps(result, indent=2))
        print(f"next: focalcal evaluate {args.run_dir}", file=sys.stderr)


def _evaluate(args: argparse.Namespace) -> None:
    from focalcal.engine.config import check_device
    from focalcal.engine.evaluate import evaluate
    from focalcal.engine.ood import check_ood, parse_ood

    stored = Path(args.run_dir) / "config.toml"
    try:
        check_device(args.device)
        for spec in args.ood:  # a bad name, or heldout for a run that keeps every class
            check_ood(spec, TrainConfig.load(stored)) if stored.is_file() else parse_ood(spec)
    except ValueError as error:
        raise UsageError(str(error)) from None
    evaluate(args.run_dir, checkpoint=args.checkpoint, objective=args.objective, ood=args.ood,
             bootstrap_samples=args.bootstrap, device=args.device)  # fmt: skip
    print((Path(args.run_dir) / "evaluation.md").read_text(), end="")


def _reproduce(args: argparse.Namespace) -> None:
    from focalcal.engine.ood import check_ood, default_ood
    from focalcal.experiments.reproduce import DEFAULT_LOSSES, grid, reproduce

    base, table = _config_and_grid(args)  # the flags win over the file's [grid] table
    losses = args.losses or table.get("losses", DEFAULT_LOSSES)
    seeds = args.seeds if args.seeds is not None else table.get("seeds", 1)
    try:  # every name of the grid, as train checks its one (exit 2), before any run starts
        configs = grid(base, losses, args.models or table.get("models", ()),
                       args.datasets or table.get("datasets", ()), seeds,
                       sorted(_explicit(args)))  # fmt: skip
        for config in configs.values():
            check_names(config)
        _check_fit(configs.values())
        ood = args.ood if args.ood is not None else table.get("ood")
        ood = ood if ood is not None else default_ood(configs.values())
        for config in configs.values():
            for spec in ood:
                check_ood(spec, config)
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None
    out = args.out or Path("runs") / f"reproduce-{args.preset}"
    settings = {"ood": ood, "objective": args.objective, "bootstrap_samples": args.bootstrap}
    if args.shard:  # one process of a job array: its runs, no tables
        reproduce(configs, out, shard=_shard(args.shard), progress=not args.quiet, **settings)
        return
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:  # torchrun: one shard per process, one device each; then rank 0 tabulates
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        reproduce(configs, out, shard=(rank, world), progress=not args.quiet, **settings)
        _wait_for_every_process()
        if rank != 0:
            return
    reproduce(configs, out, progress=not args.quiet, **settings)  # finished runs are skipped
    print((out / "tables.md").read_text(), end="")
    print(f"\ntables, figures and runs in {out}/")


def _calibrate(args: argparse.Namespace) -> None:
    from focalcal import calibrate as cal

    if args.apply is not None:
        _apply_calibrator(args)
        return
    if args.val is None or args.test is None:
        raise UsageError("give --val and --test (or --apply CALIBRATOR --scores NEW)")
    if args.bootstrap < 0:
        raise UsageError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    try:
        val, test = cal.read_predictions(args.val), cal.read_predictions(args.test)
        for data in (val, test):
            print(f"{data.source}: {len(data.scores)} samples, {data.num_classes} classes; "
                  f"{'; '.join(data.notes)}", file=sys.stderr)  # fmt: skip
        result = cal.calibrate(val, test, args.method, num_bins=args.bins,
                               bootstrap_samples=args.bootstrap, seed=args.seed,
                               progress=not args.quiet)  # fmt: skip
    except ValueError as error:
        raise UsageError(str(error)) from None
    out = args.out or Path("runs") / "calibration"
    cal.write_calibration(out, result, test)
    print((out / "calibration.md").read_text(), end="")
    warning = cal.worse_warning(result)
    if warning:
        print(f"focalcal calibrate: warning: {warning}", file=sys.stderr)
    print(
        f"\nreport, diagrams and calibrators in {out}/; apply one to new scores with "
        f"focalcal calibrate --apply {out / 'calibrators' / 'METHOD.json'} --scores NEW"
    )


def _apply_calibrator(args: argparse.Namespace) -> None:
    from focalcal import calibrate as cal
    from focalcal.metrics import expected_calibration_error
    from focalcal.scaling import load_calibrator

    if args.scores is None:
        raise UsageError("--apply needs --scores: the predictions to calibrate")
    try:
        calibrator = load_calibrator(args.apply)
        data = cal.read_predictions(args.scores, labels=False)
        if data.num_classes != calibrator.num_classes:
            raise ValueError(f"{data.source} has {data.num_classes} classes, the calibrator "
                             f"{args.apply} {calibrator.num_classes}")  # fmt: skip
        first = Path(args.scores[0])
        output = args.output or first.with_name(f"{first.stem}.calibrated.npz")
        log_probs = calibrator.transform(data.scores)
        cal.write_scores(output, log_probs, data.labels)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    print(f"{data.source}: {len(log_probs)} samples calibrated by {calibrator.name} "
          f"({'; '.join(data.notes)}) -> {output}")  # fmt: skip
    if data.labels is not None:
        before = float(expected_calibration_error(data.scores, data.labels))
        after = float(expected_calibration_error(log_probs, data.labels))
        print(f"ECE {100 * before:.2f} % -> {100 * after:.2f} %")


def _check_fit(configs: Iterable[TrainConfig]) -> None:
    """Each distinct (data, model) of ``configs`` checked to fit before any run writes (exit 2
    where it does not; a missing data file stays a failed run, exit 1)."""
    from focalcal.engine.preflight import check_fit

    seen = set()
    for config in configs:
        key = (config.dataset, config.root, config.subset, str(config.dataset_options),
               str(config.classes), config.model, str(config.model_options))  # fmt: skip
        if key not in seen:
            seen.add(key)
            try:
                check_fit(config)
            except ValueError as error:
                raise UsageError(str(error)) from None


def _shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        shard = (-1, 0)
    if not sep or not 0 <= shard[0] < shard[1]:
        raise UsageError(f"--shard expects K/N with 0 <= K < N, got {text!r}")
    return shard


def _wait_for_every_process() -> None:
    """A barrier over torchrun's processes (gloo, no practical deadline: shards take as long
    as they take)."""
    from datetime import timedelta

    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=timedelta(days=30))
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _gamma(args: argparse.Namespace) -> None:
    from focalcal.losses import gamma_for_threshold

    try:
        print(f"{gamma_for_threshold(args.p0):.6g}")
    except ValueError as error:
        raise UsageError(str(error)) from None


def _list(args: argparse.Namespace) -> None:
    from focalcal.data import dataset_names
    from focalcal.experiments.presets import PRESETS
    from focalcal.losses import loss_names
    from focalcal.models import model_names
    from focalcal.scaling import calibrator_names

    for title, names in (("losses", loss_names()), ("models", model_names()),
                         ("datasets", dataset_names()), ("presets", list(PRESETS)),
                         ("calibrators", calibrator_names())):  # fmt: skip
        print(f"{title}: {', '.join(names)}")


HANDLERS = {"train": _train, "evaluate": _evaluate, "reproduce": _reproduce,
            "calibrate": _calibrate, "gamma": _gamma, "list": _list}  # fmt: skip


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's preemption, ``kill``): stopped as cleanly as by Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args, unknown = parser().parse_known_args(argv)
    handler = HANDLERS[args.command]
    if unknown:
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")  # exits 2
    main_thread = threading.current_thread() is threading.main_thread()  # where signals go
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        handler(args)
    except UsageError as error:
        print(f"focalcal {args.command}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        how = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
        again = {"train": "; the same command with --resume continues from the last checkpoint",
                 "reproduce": "; the same command continues where it stopped"}  # fmt: skip
        print(f"focalcal {args.command}: {how}{again.get(args.command, '')}", file=sys.stderr)
        return 1
    except Exception as error:  # a failed run: one clear line, not a traceback
        message = " ".join(str(error).split())  # e.g. load_state_dict's lines of missing keys
        print(f"focalcal {args.command}: error: {type(error).__name__}: {message}", file=sys.stderr)
        return 1
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0
