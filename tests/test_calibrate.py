"""``focalcal calibrate``: saved predictions in every format, the report, reusable calibrators,
and bad input refused naming the file (exit 2)."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from focalcal.calibrate import (
    Predictions,
    calibrate,
    calibration_markdown,
    read_predictions,
    write_calibration,
)
from focalcal.cli import main
from focalcal.metrics import calibration_report, expected_calibration_error
from focalcal.scaling import (
    calibrator_names,
    default_calibrators,
    fit_calibrator,
    load_calibrator,
)

C = 4


def over_confident(n, seed):
    """Logits whose softmax at T = 2.5 is the true distribution of the labels."""
    g = torch.Generator().manual_seed(seed)
    logits = 2.5 * torch.randn(n, C, generator=g, dtype=torch.float64)
    labels = torch.multinomial((logits / 2.5).softmax(1), 1, generator=g).squeeze(1)
    return logits, labels


@pytest.fixture
def files(tmp_path):
    val, test = over_confident(600, 0), over_confident(800, 1)
    for name, (logits, labels) in (("val", val), ("test", test)):
        np.savez(tmp_path / f"{name}.npz", logits=logits.numpy(), labels=labels.numpy())
    return tmp_path, val, test


def write_every_format(directory, logits, labels):
    """The same predictions as .npz (probs), .pt, .csv and an .npy pair."""
    probs = logits.softmax(1)
    np.savez(directory / "p.npz", probs=probs.numpy(), labels=labels.numpy())
    torch.save({"logits": logits, "labels": labels}, directory / "p.pt")
    np.save(directory / "scores.npy", logits.numpy())
    np.save(directory / "labels.npy", labels.numpy())
    with (directory / "p.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([*(f"class {k}" for k in range(C)), "label"])
        for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
            writer.writerow([repr(v) for v in row] + [label])
    return {
        "npz": [directory / "p.npz"],
        "pt": [directory / "p.pt"],
        "npy": [directory / "scores.npy", directory / "labels.npy"],
        "csv": [directory / "p.csv"],
    }


def test_every_format_reads_the_same_predictions(tmp_path):
    logits, labels = over_confident(50, 2)
    paths = write_every_format(tmp_path, logits, labels)
    notes = {}
    for kind, path in paths.items():
        data = read_predictions(path)
        assert data.labels.equal(labels), kind
        # probabilities come back as their log: the same softmax, to rounding
        torch.testing.assert_close(data.scores.softmax(1), logits.softmax(1), rtol=0, atol=1e-12)
        notes[kind] = "; ".join(data.notes)
    assert notes["npz"] == "arrays 'probs' and 'labels'; probabilities: read as their logarithm"
    assert notes["pt"] == "keys 'logits' and 'labels'"
    assert notes["csv"] == "columns class 0, class 1, class 2, class 3 as scores, 'label' as labels"
    assert notes["npy"] == "scores and labels from two .npy files"


def test_probabilities_under_the_logits_key_are_recognised(tmp_path):
    logits, labels = over_confident(30, 3)
    probs = logits.softmax(1)
    probs[0] = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # a zero: finite log
    np.savez(tmp_path / "p.npz", logits=probs.numpy(), labels=labels.numpy())
    data = read_predictions(tmp_path / "p.npz")
    assert "read as probabilities" in data.notes[-1]
    assert bool(data.scores.isfinite().all())
    # exp(log p) within |ln p| + 1 half-ulps relative (|ln p| <= 708 for a float64 normal)
    torch.testing.assert_close(data.scores.exp(), probs, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"logits": np.zeros((0, 3)), "labels": np.zeros(0, dtype=int)}, "holds no samples"),
        ({"logits": np.full((2, 3), np.nan), "labels": np.array([0, 1])}, "NaN or infinite"),
        ({"logits": np.zeros((2, 3)), "labels": np.array([0, 3])}, "label 3 is out of range"),
        ({"logits": np.zeros((2, 3)), "labels": np.array([-1, 0])}, "label -1 is out of range"),
        ({"logits": np.zeros((2, 3)), "labels": np.array([0.5, 1])}, "whole numbers"),
        ({"logits": np.zeros((2, 3)), "labels": np.array([0, 1, 2])}, r"shape \(2,\)"),
        ({"logits": np.zeros((2, 3), dtype=int), "labels": np.array([0, 1])}, "floating-point"),
        ({"logits": np.zeros((2, 3)), "probs": np.zeros((2, 3))}, "exactly one of"),
        ({"logits": np.zeros((2, 3))}, "no labels"),
        ({"probs": np.full((2, 3), 0.5), "labels": np.array([0, 1])}, "not distributions"),
    ],
)
def test_bad_files_are_refused_naming_the_file(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=rf"^{path}: .*{message}"):
        read_predictions(path)


class Unsafe:
    """Pickled by reference to this module: weights_only loading must refuse it unrun."""


def test_bad_paths_and_csv_are_refused_naming_the_file(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "ragged.csv").write_text("a,b,label\n0.1,0.2,0\n0.3,1\n")
    (tmp_path / "words.csv").write_text("a,b,label\n0.1,x,0\n")
    (tmp_path / "nolabel.csv").write_text("a,b\n0.1,0.2\n")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    (tmp_path / "x.txt").write_text("")
    torch.save({"logits": Unsafe(), "labels": torch.zeros(1)}, tmp_path / "code.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "code.pt").read_bytes()[:50])
    cases = {
        "empty.csv": "the file is empty",
        "ragged.csv": "line 3 has 2 fields, the header 3",
        "words.csv": "line 2 holds a field that is not a number",
        "nolabel.csv": "no label column",
        "junk.npz": "cannot be read",
        "x.txt": "unknown format '.txt'",
        "missing.npz": "no such file",
        "code.pt": "cannot be read: it holds objects other than tensors .* refused unrun",
        "cut.pt": "cannot be read: damaged or truncated",
    }
    for name, message in cases.items():
        with pytest.raises(ValueError, match=rf"{tmp_path / name}: {message}") as caught:
            read_predictions(tmp_path / name)
        assert "allow_pickle" not in str(caught.value) and "weights_only" not in str(caught.value)
    with pytest.raises(ValueError, match=r"give the labels' \.npy file after it"):
        np.save(tmp_path / "s.npy", np.zeros((2, 2)))
        read_predictions(tmp_path / "s.npy")


def test_calibrate_reports_each_method_against_the_metrics_computed_directly(files):
    _, (val_logits, val_labels), (test_logits, test_labels) = files
    val = Predictions(val_logits, val_labels, "val")
    test = Predictions(test_logits, test_labels, "test")
    result = calibrate(val, test, bootstrap_samples=20)
    summary = result.summary
    assert list(summary["methods"]) == calibrator_names()
    before = calibration_report(test_logits, test_labels, bootstrap_samples=20)
    assert summary["before"] == before.to_dict()
    for name, entry in summary["methods"].items():  # an independent fit gives the same map
        calibrator = fit_calibrator(name, val_logits, val_labels)
        expected = calibration_report(
            calibrator.transform(test_logits), test_labels, bootstrap_samples=20
        )
        assert {k: entry[k] for k in expected.to_dict()} == expected.to_dict(), name
        assert entry["parameters"] == calibrator.summary()
    assert summary["interval"] == {"method": "basic", "level": 0.95, "samples": 20}
    # T fits the over-confidence (2.5) and cuts the ECE; the worse list is exactly that
    assert 2.0 < summary["methods"]["temperature"]["parameters"]["T"] < 3.0
    assert summary["methods"]["temperature"]["ece"] < summary["before"]["ece"] / 2
    ece = {name: entry["ece"] for name, entry in summary["methods"].items()}
    assert result.worse == [name for name in ece if ece[name] > summary["before"]["ece"]]


def test_calibrate_refuses_mismatched_sets_and_unknown_methods(files):
    _, (val_logits, val_labels), (test_logits, test_labels) = files
    val = Predictions(val_logits, val_labels, "val.npz")
    with pytest.raises(ValueError, match=r"val.npz has 4 classes, test.npz 3"):
        calibrate(val, Predictions(test_logits[:, :3], test_labels.clamp(max=2), "test.npz"))
    with pytest.raises(ValueError, match="unknown method 'platt'"):
        calibrate(val, val, ["platt"])


def test_the_written_calibrators_reproduce_the_report(files, tmp_path):
    _, val, test = files
    result = calibrate(Predictions(*val, "val"), Predictions(*test, "test"), bootstrap_samples=0)
    out = tmp_path / "out"
    write_calibration(out, result, Predictions(*test, "test"))
    saved = json.loads((out / "calibration.json").read_text())
    assert saved["methods"].keys() == result.summary["methods"].keys()
    for name in calibrator_names():
        loaded = load_calibrator(out / "calibrators" / f"{name}.json")
        assert loaded.transform(test[0]).equal(result.calibrators[name].transform(test[0]))
        assert (out / "reliability" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "calibration.md").read_text()
    assert page == calibration_markdown(result.summary)
    assert "| uncalibrated |" in page and "No bootstrap intervals" in page


def test_the_markdown_names_the_interval_and_warns_where_ece_gets_worse(files):
    _, val, test = files
    # a calibrated test set: T fitted on over-confident validation logits makes it worse
    test_logits, test_labels = test[0] / 2.5, test[1]
    result = calibrate(
        Predictions(*val, "val"),
        Predictions(test_logits, test_labels, "test"),
        ["temperature"],
        bootstrap_samples=30,
        level=0.9,
    )
    assert result.worse == ["temperature"]
    page = calibration_markdown(result.summary)
    assert "90 % basic bootstrap intervals over 30 resamples" in page
    assert page.count("**Warning**: test ECE worse than before") == 1


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "focalcal", "calibrate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_command_line_end_to_end_and_apply(files):
    directory, _, (test_logits, test_labels) = files
    out = directory / "out"
    result = run_cli("--val", directory / "val.npz", "--test", directory / "test.npz",
                     "--method", "temperature", "isotonic", "--bootstrap", "10",
                     "--out", out, "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{directory / 'val.npz'}: 600 samples, 4 classes; arrays 'logits'" in result.stderr
    assert "| temperature |" in result.stdout and "| isotonic |" in result.stdout
    summary = json.loads((out / "calibration.json").read_text())
    assert list(summary["methods"]) == ["temperature", "isotonic"]
    # apply the saved map to new scores: a CSV of probabilities, written back as .npz
    new = directory / "new.csv"
    rows = test_logits.softmax(1).tolist()
    new.write_text("a,b,c,d\n" + "".join(",".join(map(repr, r)) + "\n" for r in rows))
    applied = run_cli("--apply", out / "calibrators" / "temperature.json", "--scores", new)
    assert applied.returncode == 0, applied.stderr
    output = np.load(directory / "new.calibrated.npz")
    expected = load_calibrator(out / "calibrators" / "temperature.json").transform(
        test_logits.softmax(1).log()
    )
    np.testing.assert_allclose(output["log_probs"], expected.numpy(), rtol=0, atol=1e-12)
    assert "labels" not in output
    # with labels, --apply prints the ECE before and after
    calibrator = out / "calibrators" / "temperature.json"
    with_labels = run_cli("--apply", calibrator, "--scores", directory / "test.npz",
                          "--output", directory / "t.csv")  # fmt: skip
    assert with_labels.returncode == 0, with_labels.stderr
    before = 100 * float(expected_calibration_error(test_logits, test_labels))
    assert f"ECE {before:.2f} % -> " in with_labels.stdout
    assert (directory / "t.csv").read_text().startswith("class_0,class_1,class_2,class_3,label")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--val", "VAL"], "give --val and --test"),
        (["--val", "VAL", "--test", "BAD"], "BAD: label 7 is out of range for 4 classes"),
        (["--val", "VAL", "--test", "THREE"], "VAL has 4 classes, THREE 3"),
        (["--val", "VAL", "--test", "VAL", "--method", "platt"], "unknown method 'platt'"),
        (["--val", "VAL", "--test", "VAL", "--bootstrap", "-1"], "--bootstrap must be >= 0"),
        (["--apply", "VAL"], "--apply needs --scores"),
        (["--apply", "VAL", "--scores", "VAL"], "VAL is not a focalcal calibrator"),
    ],
)
def test_the_command_line_refuses_bad_input_with_exit_2(files, capsys, args, message):
    directory, (logits, labels), _ = files
    bad_labels = labels.clone()
    bad_labels[3] = 7
    np.savez(directory / "bad.npz", logits=logits.numpy(), labels=bad_labels.numpy())
    np.savez(directory / "three.npz", logits=logits[:, :3].numpy(), labels=labels.clamp(max=2))
    names = {"VAL": "val.npz", "BAD": "bad.npz", "THREE": "three.npz"}
    argv = [str(directory / names[a]) if a in names else a for a in args]
    (directory / "VAL").write_text("")  # --apply reads a JSON calibrator
    if args[0] == "--apply":
        argv[1] = str(directory / "val.npz")
    assert main(["calibrate", *argv, "--quiet"]) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    for key, name in names.items():
        message = message.replace(key, str(directory / name))
    assert error.startswith("focalcal calibrate: error: ")
    assert message in error


def test_full_matrix_maps_are_fitted_by_default_only_up_to_100_classes():
    assert default_calibrators(100) == calibrator_names()
    many = default_calibrators(101)
    assert "matrix" not in many and "dirichlet" not in many
    assert many == [n for n in calibrator_names() if n not in ("matrix", "dirichlet")]
