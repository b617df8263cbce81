"""Large inputs: the metrics work in chunks of rows, with the same bits and bounded memory."""

import json
import os
import subprocess
import sys

import pytest
import torch

import focalcal.metrics._inputs as inputs
from focalcal.metrics import (
    CalibrationAccumulator,
    brier_score,
    calibration_report,
    classwise_calibration_error,
    negative_log_likelihood,
)
from focalcal.metrics._inputs import row_chunks

MIB = 2**20


def data(shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(shape, generator=g)).to(dtype)
    labels = torch.randint(shape[1], (shape[0], *shape[2:]), generator=g)
    return logits, labels


def everything(scores, labels, from_probs=False):
    """Every chunked computation of ``(scores, labels)``, as plain values."""
    c = scores.shape[1]
    accumulator = CalibrationAccumulator(c, from_probs=from_probs, keep_samples=False)
    accumulator.update(scores, labels)
    temperature = None if from_probs else 1.7
    return {
        "classwise": classwise_calibration_error(scores, labels, 7, from_probs).item(),
        "nll": negative_log_likelihood(scores, labels, from_probs).item(),
        "brier": brier_score(scores, labels, from_probs).item(),
        "report": calibration_report(
            scores, labels, from_probs=from_probs, bootstrap_samples=20, temperature=temperature
        ).to_dict(),
        "sums only": accumulator.compute().to_dict(),
    }


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((501, 7), torch.float32),
        ((3, 5, 4, 4), torch.float64),
        ((40, 300), torch.float32),
        ((5, 40_000), torch.float32),  # a lone row's sum of 2^15 or more values is threaded
    ],
)
@pytest.mark.parametrize("from_probs", [False, True])
@pytest.mark.parametrize("chunk_elements", [1, 10, 1001])
def test_chunks_give_the_bits_of_one_pass(monkeypatch, shape, dtype, from_probs, chunk_elements):
    logits, labels = data(shape, dtype=dtype)
    scores = logits.softmax(1) if from_probs else logits
    assert scores.numel() <= inputs.CHUNK_ELEMENTS  # one chunk at the default
    one_pass = everything(scores, labels, from_probs)
    monkeypatch.setattr(inputs, "CHUNK_ELEMENTS", chunk_elements)  # two rows, a few, many
    assert everything(scores, labels, from_probs) == one_pass


@pytest.mark.parametrize(
    ("m", "c", "chunk_elements", "sizes"),
    [
        (10, 3, 1, [2] * 5),
        (11, 3, 1, [2] * 4 + [3]),  # never one row alone
        (10, 3, 9, [3, 3, 4]),
        (11, 3, 9, [3, 3, 3, 2]),
        (10, 3, 30, [10]),
        (1, 3, 1, [1]),
        (3, 100_000, 2**18, [3]),
    ],
)
def test_row_chunks_cover_every_row_once(monkeypatch, m, c, chunk_elements, sizes):
    monkeypatch.setattr(inputs, "CHUNK_ELEMENTS", chunk_elements)
    scores, labels = torch.zeros(m, c), torch.arange(m)
    chunks = list(row_chunks(scores, labels))
    assert [len(s) for s, _ in chunks] == [len(y) for _, y in chunks] == sizes
    assert torch.equal(torch.cat([y for _, y in chunks]), labels)


PEAK = """
import json, resource, sys, torch
from focalcal.metrics import calibration_report, classwise_ece
metric = {"calibration_report": calibration_report, "classwise_ece": classwise_ece}[sys.argv[1]]
n, c = int(sys.argv[2]), int(sys.argv[3])
metric(torch.randn(64, c), torch.randint(c, (64,)))  # torch's lazily made pools are not ours
logits = torch.empty(n, c).normal_(generator=torch.Generator().manual_seed(0)).mul_(3)
labels = torch.randint(c, (n,))
with open("/proc/self/statm") as statm:
    before = int(statm.read().split()[1]) * resource.getpagesize()
metric(logits, labels)
with open("/proc/self/status") as status:  # not ru_maxrss, which holds the parent's after vfork
    peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
print(json.dumps({"input": logits.nbytes, "extra": peak - before}))
"""
# A chunk's temporaries (its probabilities, bin indices, fixed-point values and float64 NLL and
# Brier terms: about 20 bytes per value of a chunk of 2^20, 20 MiB, which the thread's Scratch
# keeps between calls) plus torch's and glibc's bookkeeping (2 to 16 MiB measured for inputs of
# 80 KB to 80 MB with chunks of 2^18). The report at 2 000 000 x 10: 2.13x the input
# (1.73x before the Scratch kept its 20 MiB and AdaECE sorted integer keys).
ALLOWANCE = 32 * MIB


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("metric", ["calibration_report", "classwise_ece"])
def test_extra_memory_is_at_most_twice_the_input(metric):
    # glibc's heap keeps freed blocks below its mmap threshold (up to 32 MiB by default), and
    # how much of it fragments depends on the threads' timing; a fixed threshold of 1 MiB
    # returns every larger block when it is freed, so the peak RSS is the live memory's peak
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MIB)}
    n, c = 2_000_000, 10  # 80 MB of logits; before chunking: 7.3x (report), 5.1x (classwise)
    command = [sys.executable, "-c", PEAK, metric, str(n), str(c)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    measured = json.loads(out)
    assert measured["input"] == n * c * 4
    ratio = measured["extra"] / measured["input"]
    assert measured["extra"] <= 2 * measured["input"] + ALLOWANCE, f"{ratio:.2f}x the input"
