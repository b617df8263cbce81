"""The README's example runs on the real Fashion-MNIST files (installed by scripts/setup.sh)."""

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from focalcal.calibrate import read_predictions

ROOT = Path(__file__).resolve().parents[1]


def test_fashion_mnist_example_trains_and_reports(tmp_path):
    command = [sys.executable, str(ROOT / "examples" / "train_fashion_mnist.py")]
    command += ["--losses", "ce", "flsd-53", "flsc-531", "--epochs", "3", "--train-size", "1024"]
    command += ["--validation-size", "500", "--out", str(tmp_path)]
    command += ["--save-predictions", str(tmp_path / "predictions")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    assert "1024 training, 500 validation and 10000 test images" in result.stdout
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0]]
    assert header[:4] == ["loss", "error %", "NLL", "ECE %"] and "ECE (T) %" in header
    assert [row[0].strip() for row in rows[1:]] == ["ce", "flsd-53", "flsc-531"]
    for row in rows[1:]:
        values = dict(zip(header[1:], map(float, row[1:]), strict=True))
        assert 5.0 < values["error %"] < 60.0  # learned in 3 epochs: far from chance (90 %)
        assert 0.0 <= values["ECE (T) %"] <= 100.0 and 0.1 <= values["T"] <= 10.0
        assert (tmp_path / f"reliability_{row[0].strip()}.png").read_bytes()[:4] == b"\x89PNG"
    # what focalcal calibrate reads: each loss's validation and test logits and labels
    val = read_predictions(tmp_path / "predictions" / "flsd-53" / "val.npz")
    test = read_predictions(tmp_path / "predictions" / "flsd-53" / "test.npz")
    assert (len(val.labels), len(test.labels), test.num_classes) == (500, 10000, 10)


@pytest.mark.parametrize("data", ["fashion-mnist", "smoke"])
def test_lightning_example_logs_ece_and_adaece_every_validation_epoch(tmp_path, data):
    pytest.importorskip("lightning")
    command = [sys.executable, str(ROOT / "examples" / "train_lightning.py"), "--epochs", "2"]
    command += ["--train-size", "384", "--validation-size", "256", "--accelerator", "cpu"]
    command += ["--out", str(tmp_path), *(["--smoke"] if data == "smoke" else [])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    epochs = re.findall(r"^epoch (\d): val error .* ECE (\S+) %, AdaECE (\S+) % \(256 images\)$",
                        result.stdout, re.MULTILINE)  # fmt: skip
    assert [epoch for epoch, _, _ in epochs] == ["0", "1"]  # not the sanity check's
    with (tmp_path / "metrics.csv").open() as file:
        logged = [row for row in csv.DictReader(file) if row["val_ece"]]
    assert [row["epoch"] for row in logged] == ["0", "1"]
    for (_, ece, adaece), row in zip(epochs, logged, strict=True):
        assert 0.0 < float(row["val_ece"]) < 1.0 and 0.0 < float(row["val_adaece"]) < 1.0
        assert float(ece) == pytest.approx(100 * float(row["val_ece"]), abs=0.01)
        assert float(adaece) == pytest.approx(100 * float(row["val_adaece"]), abs=0.01)
        assert 0.0 <= float(row["val_error"]) < 0.9  # FLSD-53 learns: below chance
