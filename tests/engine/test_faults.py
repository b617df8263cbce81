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
