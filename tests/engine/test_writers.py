"""One writer per run directory, with real processes: a second writer fails at once naming the
holder, a killed holder leaves no stale lock, N `reproduce` processes on one grid share its runs,
and nothing a run directory keeps is overwritten, lost or left half-written."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from focalcal.engine.checkpoint import load_checkpoint
from focalcal.engine.config import TrainConfig
from focalcal.engine.lock import LOCK_FILE, RunLockedError, hold
from focalcal.engine.train import read_history, train

TINY = TrainConfig(dataset="digits", subset=256, val_subset=128, epochs=2, analysis_samples=100,
                   device="cpu")  # fmt: skip
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1"}


def focalcal(*args, **kwargs):
    command = [sys.executable, "-m", "focalcal", *map(str, args)]
    return subprocess.Popen(command, env=ENVIRONMENT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)  # fmt: skip


def wait_for_the_lock(directory, process, timeout=120):
    """Until ``process`` holds ``directory`` (its PID is in the lock file)."""
    deadline = time.monotonic() + timeout
    lock = directory / LOCK_FILE
    while time.monotonic() < deadline:
        if lock.exists() and lock.read_text().strip() == str(process.pid):
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    raise AssertionError(f"{process.pid} never took {lock}")


def hold_in_another_process(directory):
    code = textwrap.dedent(f"""
        import sys, time
        from focalcal.engine.lock import hold
        with hold({str(directory)!r}):
            print("held", flush=True)
            time.sleep(600)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "held\n"
    return process


def test_a_lock_held_by_another_process_is_refused_naming_it_and_freed_by_sigkill(tmp_path):
    holder = hold_in_another_process(tmp_path / "run")
    try:
        message = rf"{tmp_path / 'run'} is in use by process {holder.pid}: one writer per run"
        with pytest.raises(RunLockedError, match=message), hold(tmp_path / "run"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with hold(tmp_path / "run") as run:  # the kernel released the killed holder's lock
        assert (run / LOCK_FILE).read_text() == f"{os.getpid()}\n"


def test_holding_is_reentrant_within_a_process_and_released_after(tmp_path):
    with hold(tmp_path), hold(tmp_path / "." / ""):
        pass
    holder = hold_in_another_process(tmp_path)  # would block if this process still held it
    holder.send_signal(signal.SIGKILL)
    holder.wait()


def test_a_second_train_into_a_training_run_fails_at_once_and_the_first_is_unharmed(tmp_path):
    run, config = tmp_path / "run", TINY.replace(epochs=500)  # far longer than this test
    config.save(tmp_path / "config.toml")
    first = focalcal("train", run, "--config", tmp_path / "config.toml", "--quiet")
    try:
        wait_for_the_lock(run, first)
        start = time.monotonic()
        second = focalcal("train", run, "--config", tmp_path / "config.toml", "--set", "lr=0.05")
        _, error = second.communicate(timeout=120)
        assert second.returncode == 1
        assert error.splitlines() == [
            f"focalcal train: error: RunLockedError: {run} is in use by process {first.pid}: one "
            "writer per run directory; wait for it to finish, or use another directory"
        ]
        assert time.monotonic() - start < 60  # at once: no waiting for the first to finish
        assert first.poll() is None  # still training
        assert TrainConfig.load(run / "config.toml") == config
        while not (run / "log.jsonl").exists():  # one epoch logged
            time.sleep(0.02)
    finally:
        first.kill()
        first.communicate()
    history = read_history(run)
    assert history and load_checkpoint(run / "checkpoints" / "last.pt")["history"] == history


def test_sigkilled_training_leaves_no_stale_lock_and_resumes(tmp_path):
    run = tmp_path / "run"
    TINY.replace(epochs=3).save(tmp_path / "config.toml")
    first = focalcal("train", run, "--config", tmp_path / "config.toml", "--quiet")
    wait_for_the_lock(run, first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    train(TINY.replace(epochs=3), run, resume=True, progress=False)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 3


def test_sigterm_stops_training_cleanly_and_resume_continues(tmp_path):
    run = tmp_path / "run"
    config = TINY.replace(epochs=10)
    config.save(tmp_path / "config.toml")
    process = focalcal("train", run, "--config", tmp_path / "config.toml")
    assert process.stdout.readline().startswith("epoch 1/10")  # one checkpoint written
    process.send_signal(signal.SIGTERM)
    _, error = process.communicate(timeout=120)
    assert process.returncode == 1
    assert error.splitlines()[-1] == (
        "focalcal train: terminated (SIGTERM); the same command with --resume continues from "
        "the last checkpoint"
    )
    assert "Traceback" not in error
    epoch = load_checkpoint(run / "checkpoints" / "last.pt")["epoch"]
    assert 1 <= epoch < 10 and not list(run.rglob("*.tmp"))
    train(config, run, resume=True, progress=False)
    assert [r["epoch"] for r in read_history(run)] == list(range(1, 11))


def test_two_reproduce_processes_on_one_grid_train_every_run_once(tmp_path):
    out = tmp_path / "out"
    TINY.save(tmp_path / "base.toml")
    losses = ["ce", "fl-3", "flsd-53", "brier"]
    args = ("reproduce", "--config", tmp_path / "base.toml", "--losses", *losses, "--out", out,
            "--ood")  # fmt: skip
    processes = [focalcal(*args) for _ in range(2)]
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, error) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, error
    lines = "".join(output for output, _ in outputs)
    statuses = re.findall(r"\] digits/small-cnn/(\S+): (trained|skipped) in", lines)
    trained = sorted(loss for loss, status in statuses if status == "trained")
    assert trained == sorted(losses), lines  # each run trained by exactly one process
    assert sorted(loss for loss, status in statuses if status == "skipped") == sorted(losses)
    for loss in losses:
        assert len(read_history(out / "runs" / "digits" / "small-cnn" / loss)) == TINY.epochs
    assert all(f"tables, figures and runs in {out}/" in output for output, _ in outputs)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    train(TINY, run, progress=False)
    return run


@pytest.fixture
def copy(finished, tmp_path):
    return shutil.copytree(finished, tmp_path / "run")


@pytest.mark.parametrize("kept", ["log.jsonl", "result.json", "checkpoints/best.pt"])
def test_a_new_run_refuses_a_directory_holding_a_runs_files(copy, kept):
    for name in ("log.jsonl", "result.json", "checkpoints/best.pt", "checkpoints/last.pt"):
        if name != kept:
            (copy / name).unlink()
    before = (copy / kept).read_bytes()
    for resume in (False, True):
        with pytest.raises(ValueError, match=rf"holds {kept} but no checkpoints/last\.pt"):
            train(TINY, copy, resume=resume, progress=False)
    assert (copy / kept).read_bytes() == before


def test_a_new_run_refuses_another_runs_config(copy):
    for name in ("log.jsonl", "result.json", "checkpoints/best.pt", "checkpoints/last.pt"):
        (copy / name).unlink()
    with pytest.raises(ValueError, match=r"config\.toml was trained with another config "
                       r"\(differs in \['lr'\]\)"):  # fmt: skip
        train(TINY.replace(lr=0.05), copy, progress=False)
    train(TINY, copy, progress=False)  # its own config: a run killed in its first epoch restarts


def test_a_run_holding_a_checkpoint_says_how_to_resume(copy):
    with pytest.raises(ValueError, match="continue it with --resume"):
        train(TINY, copy, progress=False)


def test_resume_rebuilds_a_deleted_or_damaged_log_from_the_checkpoint(copy):
    log = (copy / "log.jsonl").read_text()
    (copy / "log.jsonl").unlink()
    train(TINY, copy, resume=True, progress=False)
    assert (copy / "log.jsonl").read_text() == log
    records = [json.loads(line) for line in log.splitlines()]
    first_line = log.splitlines(keepends=True)[0]
    # a damaged line; a log cut at a line's end, with or without its newline (each parses)
    for damaged in (log[:-20], first_line, first_line[:-1]):
        (copy / "log.jsonl").write_text(damaged)
        with hold(copy):
            assert read_history(copy) == records
        assert (copy / "log.jsonl").read_text() == log


def test_a_damaged_log_without_a_checkpoint_is_named(copy):
    (copy / "checkpoints" / "last.pt").unlink()
    for damaged in ('{"epoch": 1}\n{"epo', '{"epoch": 1}\n{"epoch": 2}'):  # cut: no newline
        (copy / "log.jsonl").write_text(damaged)
        with pytest.raises(ValueError, match=rf"{copy / 'log.jsonl'}: unreadable \(.*\) and no "):
            read_history(copy)
    (copy / "log.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    assert read_history(copy) == [{"epoch": 1}, {"epoch": 2}]


def test_taking_the_lock_removes_what_killed_writes_left(copy):
    orphans = [copy / "checkpoints" / ".last.pt.0123456789abcdef.tmp", copy / ".log.jsonl.00"
               "00000000000000.tmp"]  # fmt: skip
    for orphan in orphans:
        orphan.write_bytes(b"half a checkpoint")
    (copy / "notes.tmp").write_text("the user's")
    train(TINY, copy, resume=True, progress=False)
    assert not any(orphan.exists() for orphan in orphans)
    assert (copy / "notes.tmp").read_text() == "the user's"
