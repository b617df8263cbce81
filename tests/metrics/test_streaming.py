"""The streaming accumulator: equal to the functional metrics, batch- and rank-invariant."""

import json
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from focalcal.metrics import (
    CalibrationAccumulator,
    adaptive_calibration_error,
    bootstrap_interval,
    brier_score,
    calibration_report,
    classwise_calibration_error,
    debiased_calibration_error,
    error_rate,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    signed_calibration_error,
    smooth_calibration_error,
)


def data(n=3000, c=7, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = (2.5 * torch.randn(n, c, generator=g)).to(dtype)
    labels = torch.randint(c, (n,), generator=g)
    return logits, labels


def test_report_equals_the_functional_metrics():
    logits, labels = data()
    report = calibration_report(logits, labels)
    exact = {
        "ece": expected_calibration_error,
        "mce": maximum_calibration_error,
        "adaece": adaptive_calibration_error,
        "classwise_ece": classwise_calibration_error,
        "signed_ece": signed_calibration_error,
        "debiased_ece": debiased_calibration_error,
        "smooth_ece": smooth_calibration_error,
    }
    for name, metric in exact.items():  # the same exact bins: equal to the last bit
        assert getattr(report, name) == metric(logits, labels).item(), name
    # NLL and Brier are summed in fixed point (2^-25 per sample), the functions in float64
    assert report.nll == pytest.approx(negative_log_likelihood(logits, labels).item(), abs=2**-25)
    assert report.brier == pytest.approx(brier_score(logits, labels).item(), abs=2**-25)
    assert report.error == pytest.approx(error_rate(logits, labels).item(), abs=1e-12)
    assert report.ece_over - report.ece_under == pytest.approx(report.signed_ece, abs=1e-12)
    assert report.ece_over + report.ece_under == pytest.approx(report.ece, abs=1e-12)


def test_batching_does_not_change_a_single_bit():
    logits, labels = data()
    whole = {
        method: calibration_report(logits, labels, bootstrap_samples=30, interval_method=method)
        for method in ("basic", "bca")  # BCa's jackknife groups follow the canonical order
    }
    for sizes in ([1000, 1000, 1000], [1, 2999], [17] * 176 + [8]):
        accumulator = CalibrationAccumulator(7)
        order = torch.randperm(3000, generator=torch.Generator().manual_seed(len(sizes)))
        for chunk in order.split(sizes):
            accumulator.update(logits[chunk], labels[chunk])
        for method, report in whole.items():
            assert accumulator.compute(30, interval_method=method).to_dict() == report.to_dict()


def test_segmentation_shaped_input_and_probabilities():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 5, 6, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(5, (4, 6, 6), generator=g)
    flat_logits = logits.movedim(1, -1).reshape(-1, 5)
    expected = calibration_report(flat_logits, labels.reshape(-1))
    assert calibration_report(logits, labels) == expected
    from_probs = calibration_report(logits.softmax(1), labels, from_probs=True)
    assert from_probs.ece == pytest.approx(expected.ece, abs=1e-12)
    assert from_probs.nll == pytest.approx(expected.nll, abs=1e-9)


def test_infinite_nll_from_a_zero_probability():
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    report = calibration_report(probs, torch.tensor([1, 0]), from_probs=True)
    assert math.isinf(report.nll)
    assert report.error == 0.5 and math.isfinite(report.ece)


def test_without_samples_and_json():
    logits, labels = data(200)
    accumulator = CalibrationAccumulator(7, keep_samples=False)
    accumulator.update(logits, labels)
    report = accumulator.compute(bootstrap_samples=20)
    assert report.adaece is None and report.smooth_ece is None and report.intervals == {}
    assert report.ece == calibration_report(logits, labels).ece
    assert json.loads(calibration_report(logits, labels).to_json())["num_samples"] == 200


def test_bad_use():
    accumulator = CalibrationAccumulator(3)
    with pytest.raises(ValueError, match="call update"):
        accumulator.compute()
    with pytest.raises(ValueError, match="scores have 4 classes, the accumulator 3"):
        accumulator.update(torch.randn(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"must be a floating-point tensor, got torch\.int64"):
        accumulator.update([[1, 2, 3]], torch.tensor([0]))
    with pytest.raises(ValueError, match="num_classes"):
        CalibrationAccumulator(0)
    with pytest.raises(ValueError, match="num_bins"):
        CalibrationAccumulator(3, num_bins=0)


def test_reset_and_sync_without_distributed():
    logits, labels = data(100)
    accumulator = CalibrationAccumulator(7)
    accumulator.update(logits, labels)
    accumulator.sync()  # not initialised: the local state is the global one
    accumulator.sync()
    assert accumulator.compute() == calibration_report(logits, labels)
    accumulator.reset()
    accumulator.update(logits[:10], labels[:10])
    assert accumulator.compute().num_samples == 10


def test_report_intervals_use_the_report_samples():
    logits, labels = data(300, seed=8)
    report = calibration_report(logits, labels, bootstrap_samples=100, seed=2)
    ece_interval = bootstrap_interval(
        expected_calibration_error, logits, labels, 100, seed=2, bounds=(0, 1)
    )
    # the report resamples its canonically ordered samples, the function the raw order:
    # different resamples, so compare only what both must satisfy
    for low, high in (report.intervals["ece"], ece_interval):
        assert low <= report.ece <= high
    assert set(report.intervals) == {"error", "nll", "brier", "ece", "adaece", "debiased_ece"}
    assert (report.interval_method, report.interval_level) == ("basic", 0.95)
    assert report.to_dict()["interval_method"] == "basic"
    assert calibration_report(logits, labels).interval_method is None


def test_report_basic_intervals_reflect_the_percentile_ones():
    """The same resamples (same seed): basic = (2θ̂ − high, 2θ̂ − low) of the percentile
    interval, clipped to the metric's range, with θ̂ the report's own value."""
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(400, 10, generator=g)
    labels = torch.multinomial((logits / 3).softmax(1), 1, generator=g).squeeze(1)
    basic, percentile = (  # calibrated at T = 3, so the basic intervals of the ECEs reach 0
        calibration_report(logits, labels, bootstrap_samples=50, temperature=3.0,
                           level=0.9, interval_method=m)
        for m in ("basic", "percentile")
    )  # fmt: skip
    ranges = {"error": 1, "nll": math.inf, "brier": 2, "ece": 1, "adaece": 1, "debiased_ece": 1}
    clipped = 0
    for name, (low, high) in percentile.intervals.items():
        theta, top = getattr(basic, name), ranges[name]
        expected = (min(max(2 * theta - high, 0), top), min(max(2 * theta - low, 0), top))
        # NLL, Brier and error: the report sums in fixed point, the resamples average
        assert basic.intervals[name] == pytest.approx(expected, abs=1e-7), name
        clipped += basic.intervals[name][0] == 0.0
    assert clipped >= 1 and percentile.interval_method == "percentile"


def test_an_unknown_interval_method_is_refused_even_without_resamples():
    logits, labels = data(50)
    with pytest.raises(ValueError, match="method must be one of basic, bca, percentile"):
        calibration_report(logits, labels, interval_method="student")  # type: ignore[arg-type]


def _distributed_worker(rank, world, init_file, logits, labels, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        accumulator = CalibrationAccumulator(logits.shape[1])
        shard = torch.arange(rank, len(labels), world)  # interleaved, like DistributedSampler
        for chunk in shard.split(97 + 50 * rank):  # different batch sizes on each rank
            accumulator.update(logits[chunk], labels[chunk])
        accumulator.sync()
        accumulator.sync()  # idempotent
        report = accumulator.compute(bootstrap_samples=25)
        (out_dir / f"rank{rank}.json").write_text(report.to_json())
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_give_exactly_the_single_process_report(tmp_path):
    logits, labels = data(1501, seed=6)
    mp.spawn(
        _distributed_worker,
        args=(2, tmp_path / "rendezvous", logits, labels, tmp_path),
        nprocs=2,
        join=True,
    )
    expected = json.loads(calibration_report(logits, labels, bootstrap_samples=25).to_json())
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == expected


def test_temperature_travels_with_the_report():
    logits, labels = data(500, seed=9)
    report = calibration_report(logits, labels, temperature=2.5)
    assert report.temperature == 2.5 and json.loads(report.to_json())["temperature"] == 2.5
    assert report.ece == expected_calibration_error(logits / 2.5, labels).item()
    assert calibration_report(logits, labels).temperature is None
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="temperature must be a finite float > 0"):
            calibration_report(logits, labels, temperature=bad)
    with pytest.raises(ValueError, match="from_probs"):
        calibration_report(logits.softmax(1), labels, from_probs=True, temperature=2.0)
