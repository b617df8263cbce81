"""The README's example runs on the real Fashion-MNIST files (installed by scripts/setup.sh)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_fashion_mnist_example_trains_and_reports():
    command = [sys.executable, str(ROOT / "examples" / "train_fashion_mnist.py")]
    command += ["--losses", "ce", "flsd-53", "flsc-531", "--epochs", "3", "--train-size", "1024"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    assert "1024 training images, 10000 test images" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in rows] == ["loss", "ce", "flsd-53", "flsc-531"]
    for row in rows[1:]:
        error = float(row.split("|")[2])
        assert 5.0 < error < 60.0  # learned in 3 epochs: far from chance (90 %)
