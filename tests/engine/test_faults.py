"""A training process killed with SIGKILL at random moments resumes to the same end."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from focalcal.engine.checkpoint import load_checkpoint
from focalcal.engine.config import TrainConfig
from focalcal.engine.train import train

CONFIG = TrainConfig(dataset="fashion-mnist", subset=512, val_subset=128, epochs=5, batch_size=64,
                     milestones=[3], analysis_samples=128, augment=True, device="cpu")  # fmt: skip


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same kernels, and so the same floats, as the subprocesses
    yield
    torch.set_num_threads(threads)


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_weights(
    tmp_path, one_thread
):
    start = time.perf_counter()
    train(CONFIG, tmp_path / "reference", progress=False)
    duration = time.perf_counter() - start
    reference = load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.pt")
    CONFIG.save(tmp_path / "config.toml")
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    moments, stopped_at = random.Random(0), []
    for trial in range(3):
        run = tmp_path / f"trial{trial}"
        command = [sys.executable, "-m", "focalcal", "train", str(run), "--config",
                   str(tmp_path / "config.toml"), "--quiet", "--resume"]  # fmt: skip
        process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL)
        while not (run / "config.toml").exists() and process.poll() is None:
            time.sleep(0.01)  # the process has imported torch and started the run
        time.sleep(moments.uniform(0.1, 0.9) * duration)
        process.send_signal(signal.SIGKILL)
        process.wait()
        last = run / "checkpoints" / "last.pt"
        # whatever the moment, the previous checkpoint is whole
        stopped_at.append(load_checkpoint(last)["epoch"] if last.exists() else 0)
        train(CONFIG, run, resume=True, progress=False)
        resumed = load_checkpoint(last)
        assert resumed["epoch"] == CONFIG.epochs
        for name, tensor in reference["model"].items():
            assert torch.equal(resumed["model"][name], tensor), (trial, name)
        assert [r["val_accuracy"] for r in resumed["history"]] == [
            r["val_accuracy"] for r in reference["history"]
        ]
    assert any(epoch < CONFIG.epochs for epoch in stopped_at), stopped_at  # really interrupted


def test_a_full_disk_fails_with_the_path_named_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    from focalcal.engine import checkpoint as checkpoint_module

    real_save, saves = checkpoint_module.torch.save, []

    def save_until_the_disk_is_full(state, file):
        saves.append(state["epoch"])
        if state["epoch"] == 2:  # half a file reaches the disk, then it is full
            file.write(b"\0" * 1000)
            raise OSError(28, "No space left on device")
        real_save(state, file)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_until_the_disk_is_full)
    last = tmp_path / "checkpoints" / "last.pt"
    message = rf"cannot write {last}: No space left on device; any earlier last\.pt is unchanged"
    with pytest.raises(OSError, match=message):
        train(CONFIG.replace(epochs=3, milestones=[]), tmp_path, progress=False)
    assert load_checkpoint(last)["epoch"] == 1
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_an_unwritable_run_directory_fails_before_any_data_is_read(tmp_path, monkeypatch):
    from focalcal.engine import train as train_module

    def no_data(config):
        raise AssertionError("data read before the run directory was checked")

    monkeypatch.setattr(train_module, "load_splits", no_data)
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a file where the run's parent directory should be
    with pytest.raises(OSError, match="a-file"):
        train(CONFIG, blocker / "run", progress=False)
