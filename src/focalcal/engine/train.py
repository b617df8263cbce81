"""The training loop: tensor-resident batches, the step, the schedules, per-epoch validation
and analysis, atomic checkpoints, exact resumption.

A run directory holds ``config.toml``, ``log.jsonl`` (one JSON record per epoch),
``checkpoints/last.pt`` (every epoch), ``checkpoints/best.pt`` (best validation accuracy) and,
once finished, ``result.json``. Each checkpoint carries the model, the optimiser, the schedule,
the RNG state and the log so far, so ``resume=True`` continues a killed run from its last
epoch and ends with the same weights as an uninterrupted run (on deterministic CPU kernels, on
the same machine). Checkpoints and ``result.json`` name the machines a run trained on
(:func:`focalcal._machine.describe_machine`): another CPU or thread count gives other weights.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from focalcal._io import atomic_write_text
from focalcal._machine import describe_machine
from focalcal.data import BatchLoader
from focalcal.engine.checkpoint import load_checkpoint, save_checkpoint
from focalcal.engine.config import TrainConfig
from focalcal.engine.lock import hold
from focalcal.engine.protocol import apply_protocol, lr_schedule
from focalcal.engine.runs import check_same_run, load_splits, load_weights, model_for
from focalcal.losses import build_loss
from focalcal.losses.hooks import EpochAware, EpochStart, start_epoch

# What a run leaves besides its config and last checkpoint: a new run must not overwrite them.
KEPT = ("log.jsonl", "result.json", "checkpoints/best.pt")


def distributed() -> tuple[int, int]:
    """This process's rank and the number of processes (``(0, 1)`` outside torch.distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available (under torchrun, the process's ``LOCAL_RANK`` GPU),
    else the CPU; any other name as given."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(name)


@torch.no_grad()
def predict(model: nn.Module, batches: BatchLoader) -> Tensor:
    """The model's logits for every batch, concatenated, in float32."""
    was_training = model.training
    model.eval()
    logits = torch.cat([model(x).float() for x, _ in batches])
    model.train(was_training)
    return logits


def _optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    parameters, decay = model.parameters(), config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, config.lr, momentum=config.momentum, weight_decay=decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, config.lr, weight_decay=decay)
    return torch.optim.Adagrad(parameters, config.lr, weight_decay=decay)


def _classifier_norm(model: nn.Module) -> float:
    """The norm of the last linear layer's weight (the paper's Figure 5)."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return float(layers[-1].weight.detach().norm()) if layers else math.nan


def analysis(logits: Tensor, labels: Tensor) -> dict[str, float]:
    """Accuracy, NLL, NLL of the right and of the wrong predictions, mean entropy."""
    log_probs = logits.log_softmax(1)
    nll = F.nll_loss(log_probs, labels, reduction="none")
    right = log_probs.argmax(1) == labels
    entropy = -(log_probs.exp() * log_probs).sum(1)
    return {
        "accuracy": float(right.double().mean()),
        "nll": float(nll.double().mean()),
        "nll_correct": float(nll[right].double().mean()) if right.any() else math.nan,
        "nll_incorrect": float(nll[~right].double().mean()) if (~right).any() else math.nan,
        "entropy": float(entropy.double().mean()),
    }


class NonFiniteLossError(FloatingPointError):
    """The training loss was NaN or infinite (the message names the step and the batch)."""


def _describe(x: Tensor, y: Tensor) -> str:
    values = x.float()
    return (
        f"{len(y)} samples, inputs min {float(values.min()):.4g} max {float(values.max()):.4g} "
        f"mean {float(values.mean()):.4g}, all finite: {bool(values.isfinite().all())}, "
        f"labels {int(y.min())}..{int(y.max())}"
    )


def train_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[Tensor, Tensor]],
    config: TrainConfig,
    autocast: contextlib.AbstractContextManager[Any] | None = None,
) -> tuple[Tensor, int]:
    """One pass over ``batches``: forward, loss, backward, clipping, step. Returns the summed
    loss over the samples as a 0-d tensor on the device, and the number of skipped steps.

    A NaN or infinite loss, or NaN or infinite logits (a NaN pixel, weights gone bad), raise
    :class:`NonFiniteLossError` naming the step and the batch's statistics, before the step can
    spoil the weights; with ``config.skip_nonfinite`` the step is skipped (the model's buffers,
    BatchNorm's statistics, restored) and counted instead.
    The loss sees the logits with non-finite values zeroed, so that its own input check (a
    ``ValueError``, on CUDA a device assertion) never pre-empts this one. (Checking costs one
    host sync per step: on a GPU, a few microseconds against a step of milliseconds.) Under
    DistributedDataParallel the gradients are averaged over the processes: a summed loss is
    scaled by their number so that the step is the one of the whole (global) batch, and the
    processes agree on skipping."""
    world = distributed()[1]
    scale = world if config.reduction == "sum" else 1
    model.train()
    total = torch.zeros((), device=next(model.parameters()).device)
    skipped = 0
    # A skipped step must leave no trace: the forward pass has already moved BatchNorm's
    # running statistics (to NaN, for a NaN input), so they are put back as they were.
    buffers = list(model.buffers()) if config.skip_nonfinite else []
    for step, (x, y) in enumerate(batches, 1):
        kept = [buffer.clone() for buffer in buffers]
        with autocast or contextlib.nullcontext():
            logits = model(x)
            finite = logits.detach().isfinite().all()
            loss = criterion(logits.nan_to_num(0.0, 0.0, 0.0), y)
        bad = (~(finite & loss.detach().isfinite())).int()
        if world > 1:
            dist.all_reduce(bad, dist.ReduceOp.MAX)
        if bad.item():
            if not config.skip_nonfinite:
                what = f"the loss is {float(loss.detach())}"
                if not finite:
                    what = "the logits hold NaN or infinite values"
                raise NonFiniteLossError(
                    f"step {step} of the epoch: {what}; the batch: {_describe(x, y)}"
                )
            with torch.no_grad():
                for buffer, value in zip(buffers, kept, strict=True):
                    buffer.copy_(value)
            skipped += 1
            continue
        optimizer.zero_grad(set_to_none=True)
        (loss * scale if scale != 1 else loss).backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        total += loss.detach() * (1 if config.reduction == "sum" else len(y))
    return total, skipped


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("tensorboard=True needs `pip install tensorboard`") from None
    return SummaryWriter(str(run_dir / "tensorboard"))


def train(
    config: TrainConfig, run_dir: str | os.PathLike[str], *, resume: bool = False,
    progress: bool = True, on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train ``config`` into ``run_dir``; returns (and writes to ``result.json``) a summary.

    ``progress``: a bar over each epoch's batches on a terminal, and one line per epoch.
    ``on_epoch``: called (in the writing process) with each epoch's log record once the
    epoch's checkpoint is written.

    ``resume``: continue from ``checkpoints/last.pt`` if there is one (the config must be
    the same). Without it, a directory that already holds a checkpoint is an error, and so is
    one holding another run's files: nothing a run directory keeps is overwritten silently.
    The writing process holds the directory's lock (:mod:`focalcal.engine.lock`) throughout:
    a second writer fails at once with :class:`~focalcal.engine.lock.RunLockedError`.
    """
    run_dir = Path(run_dir)
    rank, world = distributed()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must divide among {world} processes")
    if rank != 0:  # under torch.distributed only rank 0 writes files
        return _train(config, run_dir, resume, progress, None)
    with hold(run_dir):
        return _train(config, run_dir, resume, progress, on_epoch or (lambda record: None))


def _resume_state(config: TrainConfig, run_dir: Path, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to continue from (``None``: start afresh), after refusing a directory
    whose files belong to another run or would be overwritten."""
    last = run_dir / "checkpoints" / "last.pt"
    if last.exists():
        if not resume:
            raise ValueError(
                f"{run_dir} already holds a run: continue it with --resume (resume=True), or "
                "train into another directory"
            )
        state = load_checkpoint(last)
        check_same_run(config, state["config"], last)
        return state
    stored = run_dir / "config.toml"
    if stored.exists():  # a run killed in its first epoch restarts; another run's is refused
        check_same_run(config, TrainConfig.load(stored).to_dict(), stored)
    kept = [name for name in KEPT if (run_dir / name).exists()]
    if kept:
        raise ValueError(
            f"{run_dir} holds {', '.join(kept)} but no checkpoints/last.pt: nothing to resume, "
            "and a new run would overwrite them; train into another directory or remove them"
        )
    return None


def _log_text(history: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(record) + "\n" for record in history)


def write_log(run_dir: str | os.PathLike[str], history: list[dict[str, Any]]) -> Path:
    """Write ``history`` (one record per epoch) to ``run_dir/log.jsonl``, atomically."""
    return atomic_write_text(Path(run_dir) / "log.jsonl", _log_text(history))


def read_history(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The per-epoch records of the run in ``run_dir``. ``checkpoints/last.pt`` carries the
    history, so where it exists it decides: a log that is missing, damaged or differs from it
    (cut at a line's end, say) is rewritten from it (call this holding the run's lock).
    Without that checkpoint the log is read, and a damaged one is a ``ValueError`` naming it."""
    path = Path(run_dir) / "log.jsonl"
    last = Path(run_dir) / "checkpoints" / "last.pt"
    if last.exists():
        history: list[dict[str, Any]] = load_checkpoint(last)["history"]
        try:
            same = path.read_text() == _log_text(history)
        except (OSError, UnicodeDecodeError):
            same = False
        if not same:
            write_log(run_dir, history)
        return history
    try:
        text = path.read_text()
        if text and not text.endswith("\n"):  # every record ends its line: a cut write
            raise ValueError("its last line is cut off")
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError included
        raise ValueError(f"{path}: unreadable ({error}) and no {last} to rebuild it from") from None


def check_run(config: TrainConfig, run_dir: str | os.PathLike[str]) -> None:
    """``ValueError`` unless ``run_dir``'s ``config.toml`` and checkpoints are ``config``'s
    (a run trained with another config, or checkpoints swapped between runs)."""
    run_dir = Path(run_dir)
    if (run_dir / "config.toml").exists():
        stored = TrainConfig.load(run_dir / "config.toml")
        check_same_run(config, stored.to_dict(), run_dir / "config.toml")
    for which in ("last", "best"):
        path = run_dir / "checkpoints" / f"{which}.pt"
        if path.exists():
            check_same_run(config, load_checkpoint(path)["config"], path)


def _train(
    config: TrainConfig,
    run_dir: Path,
    resume: bool,
    progress: bool,
    on_epoch: Callable[[dict[str, Any]], None] | None,  # None: not the writing process
) -> dict[str, Any]:
    writer = on_epoch is not None
    world = distributed()[1]
    last, best = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "best.pt"
    state = _resume_state(config, run_dir, resume)
    if writer:
        config.save(run_dir / "config.toml")
        if state is not None:  # the checkpoint's history rebuilds a deleted or damaged log
            write_log(run_dir, state["history"])

    device = resolve_device(config.device)
    data = load_splits(config)
    torch.manual_seed(config.seed)
    model = model_for(config, data["train"]).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    used = apply_protocol(config)  # config.protocol's reduction, grad clip and loss options
    criterion = build_loss(used.loss, reduction=used.reduction, **used.loss_options)
    criterion = criterion.to(device)  # buffers: class weights, AdaFocal's γ per bin
    optimizer = _optimizer(config, model)
    schedule = lr_schedule(config, optimizer)
    history: list[dict[str, Any]] = []
    best_accuracy = -1.0
    machines: list[str] = []
    if state is not None:
        load_weights(model, state["model"], last)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["rng"])
        if cuda and "cuda_rng" in state:  # dropout on the GPU draws from the CUDA generators
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        history, best_accuracy = state["history"], state["best_accuracy"]
        machines = list(state.get("machines", []))
        criterion.load_state_dict(state.get("criterion", {}))  # AdaFocal's γ per bin

    # Each process takes batch_size / world of every global batch (the loader splits by rank),
    # so the lr is the one of batch_size whatever the number of processes; every process
    # scores the whole validation and analysis sets (cheap beside training, and no gathering).
    batches = BatchLoader(data["train"], config.batch_size // world, shuffle=True,
                          augment=config.augment, seed=config.seed, device=device,
                          channels_last=cuda)  # fmt: skip
    validation = BatchLoader(data["val"], config.eval_batch_size, device=device, rank=0,
                             world_size=1)  # fmt: skip
    samples = len(data["test"]) if config.analysis_samples is None else config.analysis_samples
    probe = data["test"].select(torch.arange(min(samples, len(data["test"]))))
    test = (
        BatchLoader(probe, config.eval_batch_size, device=device, rank=0, world_size=1)
        if len(probe) else None
    )  # fmt: skip
    step_model: nn.Module = model
    if world > 1:
        step_model = nn.parallel.DistributedDataParallel(model, [device] if cuda else None)
    if config.compile and cuda:
        step_model = torch.compile(step_model)  # type: ignore[assignment]
    bf16 = config.precision == "bf16" or (config.precision == "auto" and cuda)
    autocast = torch.autocast(device.type, torch.bfloat16) if bf16 else contextlib.nullcontext()

    here = describe_machine(device) + (f", {world} processes" if world > 1 else "")
    if len(history) < config.epochs and here not in machines:  # a resumed run may have moved
        machines.append(here)
    board = _tensorboard(run_dir) if config.tensorboard and writer else None
    # The loss's hook (γ schedules, AdaFocal) sees the validation logits of the model so far.
    val_logits = (
        predict(model, validation) if history and isinstance(criterion, EpochAware) else None
    )
    for epoch in range(len(history), config.epochs):
        start = time.perf_counter()
        start_epoch(criterion, EpochStart(epoch, config.epochs, val_logits, validation.labels))
        batches.set_epoch(epoch)
        steps = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                     disable=not progress or None)  # fmt: skip
        try:
            total, skipped = train_epoch(step_model, criterion, optimizer, steps, used, autocast)
        except NonFiniteLossError as error:
            raise NonFiniteLossError(
                f"epoch {epoch + 1}, {error}; the last good checkpoint is "
                f"{last if last.exists() else 'none (the first epoch)'}"
            ) from None
        if world > 1:
            dist.all_reduce(total)
        lr = optimizer.param_groups[0]["lr"]
        schedule.step()
        val_logits = predict(model, validation)
        val = analysis(val_logits, validation.labels)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": float(total) / len(data["train"]),
            "skipped_steps": skipped,
            **{f"val_{k}": v for k, v in val.items() if k in ("accuracy", "nll")},
        }
        if test is not None:
            record |= {
                f"test_{k}": v for k, v in analysis(predict(model, test), test.labels).items()
            }
        record |= {"weight_norm": _classifier_norm(model), "seconds": time.perf_counter() - start}
        history.append(record)
        if board is not None:
            for key, value in record.items():
                board.add_scalar(key, value, record["epoch"])
            board.flush()
        improved = val["accuracy"] > best_accuracy
        best_accuracy = max(best_accuracy, val["accuracy"])
        checkpoint = {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(), "rng": torch.get_rng_state(),
            "config": config.to_dict(), "history": history, "best_accuracy": best_accuracy,
            "epoch": epoch + 1, "criterion": criterion.state_dict(), "machines": machines,
        }  # fmt: skip
        if cuda:
            checkpoint["cuda_rng"] = torch.cuda.get_rng_state_all()
        if writer:
            save_checkpoint(last, checkpoint)
            if improved:
                save_checkpoint(best, checkpoint)
            write_log(run_dir, history)
        if progress and writer:  # above any bars on a terminal, a plain line when piped
            tqdm.write(f"epoch {epoch + 1}/{config.epochs}: loss {record['train_loss']:.4f}, "
                       f"val acc {val['accuracy']:.4f}, {record['seconds']:.1f} s")  # fmt: skip
        if on_epoch is not None:
            on_epoch(record)

    if board is not None:
        board.close()
    best_epoch = max(history, key=lambda r: r["val_accuracy"])["epoch"]
    result = {
        "epochs": config.epochs, "best_epoch": best_epoch, "best_val_accuracy": best_accuracy,
        "final_val_accuracy": history[-1]["val_accuracy"],
        "seconds": sum(r["seconds"] for r in history), "device": str(device),
        "machines": machines,
    }  # fmt: skip
    if writer:
        atomic_write_text(run_dir / "result.json", json.dumps(result, indent=2))
    return result
