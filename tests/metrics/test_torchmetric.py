"""CalibrationMetric: the accumulator's report, bit for bit, as a torchmetrics Metric."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchmetrics import Metric

from focalcal.metrics import CalibrationMetric, calibration_report


def data(n=2000, c=6, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = (2.5 * torch.randn(n, c, generator=g)).to(dtype)
    return logits, torch.randint(c, (n,), generator=g)


def fed(metric, logits, labels, sizes, seed=0):
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    for chunk in order.split(sizes):
        metric.update(logits[chunk], labels[chunk])
    return metric


@pytest.mark.parametrize("sizes", [[2000], [1000, 1000], [1, 1999], [37] * 54 + [2]])
def test_equals_calibration_report_bit_for_bit_on_any_batching(sizes):
    logits, labels = data()
    expected = calibration_report(logits, labels, bootstrap_samples=20, seed=3)
    metric = fed(CalibrationMetric(6, bootstrap_samples=20, seed=3), logits, labels, sizes)
    assert isinstance(metric, Metric)
    report = metric.compute()
    assert report == expected and report.to_dict() == expected.to_dict()
    assert metric.compute() is report  # cached until the next update


@pytest.mark.parametrize(
    "options",
    [
        {"num_bins": 7},
        {"keep_samples": False},
        {"temperature": 2.5},
        {"from_probs": True},
        {"dtype": torch.float64, "bootstrap_samples": 10},  # float64 bins' edges
    ],
    ids=str,
)
def test_the_accumulators_options(options):
    options = dict(options)
    logits, labels = data(600, dtype=options.pop("dtype", torch.float32))
    scores = logits.softmax(1) if options.get("from_probs") else logits
    keep = options.pop("keep_samples", True)
    metric = fed(CalibrationMetric(6, keep_samples=keep, **options), scores, labels, [250, 350])
    expected = calibration_report(scores, labels, **options)
    if not keep:  # the per-sample metrics are left out
        per_sample = ("adaece", "debiased_ece", "smooth_ece", "smooth_ece_bandwidth")
        expected = dataclasses.replace(expected, **dict.fromkeys(per_sample))
    assert metric.compute().to_dict() == expected.to_dict()


def test_segmentation_shaped_scores():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 4, 5, 5, generator=g)
    labels = torch.randint(4, (6, 5, 5), generator=g)
    metric = CalibrationMetric(4)
    metric.update(logits[:2], labels[:2])
    metric.update(logits[2:], labels[2:])
    assert metric.compute() == calibration_report(logits, labels)


def test_casts_and_moves_keep_the_float64_sums():
    logits, labels = data(500)
    expected = calibration_report(logits, labels)
    metric = fed(CalibrationMetric(6), logits, labels, [100, 400])
    for move in (
        lambda m: m.to(torch.float64),
        lambda m: m.to("cpu"),
        lambda m: m.to(torch.float16),  # would round the sums, were they cast
        lambda m: m.half(),
        lambda m: m.set_dtype(torch.bfloat16),
        lambda m: m.float(),
    ):
        assert move(metric) is metric
        assert metric.top_count.dtype == metric.totals.dtype == torch.float64
        assert all(block.dtype == torch.float64 for block in metric.samples)
        assert metric.compute() == expected
    metric.update(logits[:50], labels[:50])  # the moved states keep accumulating
    assert metric.compute() == calibration_report(torch.cat([logits, logits[:50]]),
                                                  torch.cat([labels, labels[:50]]))  # fmt: skip
    metric.reset()
    assert metric.top_count.dtype == torch.float64 and metric.samples == []


def test_reset_forward_and_clone():
    logits, labels = data(300)
    metric = fed(CalibrationMetric(6), logits, labels, [300])
    metric.reset()
    with pytest.raises(ValueError, match="no samples"), pytest.warns(UserWarning, match="before"):
        metric.compute()
    batch = metric(logits[:100], labels[:100])  # forward: this batch's report, and accumulate
    assert batch == calibration_report(logits[:100], labels[:100])
    metric.update(logits[100:], labels[100:])
    assert metric.compute() == calibration_report(logits, labels)
    assert metric.clone().compute() == metric.compute()


def test_bad_use():
    logits, labels = data(50)
    metric = CalibrationMetric(6)
    with pytest.raises(ValueError, match="scores have 5 classes"):
        metric.update(logits[:, :5], labels.clamp(max=4))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 6\)"):
        metric.update(logits, labels + 1)
    metric.update(logits, labels)
    metric.update(logits.double(), labels)  # one set of edges (the real b / B) for every dtype
    assert metric.compute().num_samples == 100
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1"):
        CalibrationMetric(0)
    with pytest.raises(ValueError, match="num_bins"):
        CalibrationMetric(3, num_bins=0)
    with pytest.raises(ValueError, match="temperature"):
        CalibrationMetric(3, temperature=-1.0)
    mixed = CalibrationMetric(6)
    mixed(logits, labels)  # forward() adds each batch to reset states: one set of edges
    mixed(logits.double(), labels)
    assert mixed.compute().num_samples == 100


def _distributed_worker(rank, world, init_file, logits, labels, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        metric = CalibrationMetric(logits.shape[1], bootstrap_samples=25)
        local = CalibrationMetric(logits.shape[1], sync_on_compute=False)
        shard = torch.arange(rank, len(labels) - 100, world)  # interleaved, like DistributedSampler
        for chunk in shard.split(97 + 50 * rank):  # different batch sizes on each rank
            metric.update(logits[chunk], labels[chunk])
            local.update(logits[chunk], labels[chunk])
        reports = {"synced": metric.compute().to_json(), "local": local.compute().to_json()}
        last = torch.arange(len(labels) - 100 + rank, len(labels), world)
        metric.update(logits[last], labels[last])  # compute() kept the rank's own states
        reports["more"] = metric.compute().to_json()
        (out_dir / f"rank{rank}.json").write_text(json.dumps(reports))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_give_exactly_the_single_process_report(tmp_path):
    logits, labels = data(1501, c=7, seed=6)
    mp.spawn(
        _distributed_worker,
        args=(2, tmp_path / "rendezvous", logits, labels, tmp_path),
        nprocs=2,
        join=True,
    )

    def report(index, bootstrap_samples=25):
        report = calibration_report(
            logits[index], labels[index], bootstrap_samples=bootstrap_samples
        )
        return json.loads(report.to_json())  # as the ranks wrote theirs

    head = torch.arange(len(labels) - 100)
    for rank in range(2):
        got = {
            k: json.loads(v)
            for k, v in json.loads((tmp_path / f"rank{rank}.json").read_text()).items()
        }
        assert got["synced"] == report(head)
        assert got["more"] == report(torch.arange(len(labels)))
        assert got["local"] == report(head[rank::2], bootstrap_samples=0)


MISSING_TORCHMETRICS = """
import sys
sys.modules["torchmetrics"] = None  # as if it were not installed: importing it fails
import focalcal.metrics as metrics
from focalcal.metrics import *  # noqa: F403
assert "CalibrationMetric" not in metrics.__all__ and "ece" in metrics.__all__
try:
    metrics.CalibrationMetric
except ImportError as error:
    print(error)
else:
    raise AssertionError("no ImportError")
"""


def test_the_core_needs_no_torchmetrics():
    result = subprocess.run(
        [sys.executable, "-c", MISSING_TORCHMETRICS], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'focalcal[lightning]'" in result.stdout
    lazy = "import sys, focalcal.metrics; print('torchmetrics' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", lazy], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "False"  # imported on first use of CalibrationMetric
