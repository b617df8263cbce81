"""torchrun with two gloo processes trains the same weights as one process on the same batches."""

import os
import subprocess
import sys

import pytest
import torch

from focalcal.engine.checkpoint import load_checkpoint
from focalcal.engine.config import TrainConfig
from focalcal.engine.train import train

# No batch norm in small-cnn: with it, each process would normalise by its half of the batch.
# No clipping: a clipped step would hide a wrongly scaled gradient.
CONFIG = TrainConfig(dataset="fashion-mnist", subset=512, val_subset=128, epochs=2, batch_size=64,
                     milestones=[1], analysis_samples=128, augment=True, reduction="sum",
                     lr=0.002, device="cpu")  # fmt: skip


# The two processes sum each batch's gradient in another order than one process does, and
# training amplifies that rounding: in float32 the weights (of size 0.3) moved apart by 1e-5
# on an AMD EPYC (AVX2 kernels) and by 6.5e-5 on an Intel Xeon (AVX-512), so a float32
# tolerance holds on one kernel path only. Both runs train in float64 instead, where the same
# amplification of float64's rounding (2^-53, 5e8 times smaller) stays near 1e-13 (measured:
# 1.2e-16 with the default and the AVX2 kernels); an error in the sharding or in the scaling of
# the gradients is 1e8 times larger (the lr halved moves the weights by 0.1, the lr 1/64 larger
# by 0.04). The tolerance sits between the two, 1 000 times above the amplified rounding.
FLOAT64_TOLERANCE = 1e-10
FLOAT64_TRAIN = """
import sys
import torch
torch.set_default_dtype(torch.float64)  # the model's weights and the loader's batches
from focalcal.cli import main
sys.exit(main())
"""


def test_two_gloo_processes_match_one_process(tmp_path):
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    try:
        train(CONFIG, tmp_path / "single", progress=False)
    finally:
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
    CONFIG.save(tmp_path / "config.toml")
    (tmp_path / "train64.py").write_text(FLOAT64_TRAIN)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               "2", str(tmp_path / "train64.py"), "train", str(tmp_path / "pair"), "--config",
               str(tmp_path / "config.toml"), "--quiet"]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count('"best_epoch"') == 1  # only rank 0 reports (and writes)
    single = load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")
    pair = load_checkpoint(tmp_path / "pair" / "checkpoints" / "last.pt")
    for name, tensor in single["model"].items():
        assert tensor.dtype == pair["model"][name].dtype == torch.float64, name
        torch.testing.assert_close(
            pair["model"][name], tensor, rtol=FLOAT64_TOLERANCE, atol=FLOAT64_TOLERANCE
        )
    for a, b in zip(pair["history"], single["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=FLOAT64_TOLERANCE)
        assert a["val_accuracy"] == pytest.approx(b["val_accuracy"], abs=1 / 128 + 1e-9)


def test_torchrun_reproduce_spreads_a_grid_one_run_per_process(tmp_path):
    """Each process trains its own runs (no DDP inside), then rank 0 alone writes the tables."""
    out = tmp_path / "grid"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               "2", "-m", "focalcal", "reproduce", "--dataset", "digits", "--subset", "128",
               "--epochs", "1", "--losses", "ce", "fl-3", "--set", "val_subset=64", "--set",
               "analysis_samples=64", "--set", "milestones=[]", "--device", "cpu", "--ood",
               "--out", str(out)]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[1/1 of shard 0/2] digits/small-cnn/ce: trained" in result.stdout
    assert "[1/1 of shard 1/2] digits/small-cnn/fl-3: trained" in result.stdout
    assert result.stdout.count("skipped in") == 2  # rank 0's final pass only tabulates
    assert result.stdout.count("# Results") == 1
    for loss in ("ce", "fl-3"):
        assert (out / "runs" / "digits" / "small-cnn" / loss / "evaluation.json").is_file()
    assert (out / "tables.md").is_file()
