"""Train a small CNN on real Fashion-MNIST with cross-entropy and with FLSD-53, side by side.

    python examples/train_fashion_mnist.py                      # CE vs FLSD-53, about 3 minutes
    python examples/train_fashion_mnist.py --losses fl-3 brier --epochs 10

Uses the original IDX files that Debian's ``dataset-fashion-mnist`` package installs in
/usr/share/datasets/fashion-mnist (or ``--data DIR``). It trains on a subset of the training
set long enough to over-fit (the regime where cross-entropy becomes over-confident), fits a
temperature on a held-out validation subset with the paper's ECE grid, and prints each loss's
test error, NLL, ECE, AdaECE and Classwise-ECE before and after temperature scaling. The
reliability diagrams (before | after T) go to ``--out``.
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from focalcal.losses import build_loss
from focalcal.metrics import calibration_report, reliability_bins
from focalcal.report import save_reliability_diagram
from focalcal.scaling import fit_temperature

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST training-set pixel statistics


def read_idx(path: Path) -> Tensor:
    """An IDX file (gzip-compressed) as a uint8 tensor; the header says the shape."""
    data = gzip.decompress(path.read_bytes())
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return torch.frombuffer(bytearray(data[4 + 4 * dims :]), dtype=torch.uint8).reshape(shape)


def load(root: Path, split: str) -> tuple[Tensor, Tensor]:
    prefix = "train" if split == "train" else "t10k"
    images = root / f"{prefix}-images-idx3-ubyte.gz"
    if not images.exists():
        raise SystemExit(
            f"{images} not found: run `apt-get install dataset-fashion-mnist` or pass --data DIR"
        )
    x = read_idx(images).unsqueeze(1).float().div_(255).sub_(MEAN).div_(STD)
    y = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz").long()
    return x, y


def small_cnn(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, num_classes),
    )  # fmt: skip


def train_model(loss_name: str, x: Tensor, y: Tensor, epochs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model, criterion = small_cnn(), build_loss(loss_name)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    milestones = [epochs // 2, (3 * epochs) // 4]
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    order = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        if hasattr(criterion, "set_epoch"):  # γ schedules such as FLSc-531
            criterion.set_epoch(epoch, epochs)
        model.train()
        for batch in torch.randperm(len(x), generator=order).split(128):
            optimizer.zero_grad(set_to_none=True)
            criterion(model(x[batch]), y[batch]).backward()
            optimizer.step()
        schedule.step()
    return model


@torch.no_grad()
def predict(model: nn.Module, x: Tensor) -> Tensor:
    model.eval()
    return torch.cat([model(batch) for batch in x.split(1000)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", nargs="+", default=["ce", "flsd-53"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validation-size", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=DEBIAN_DIR)
    parser.add_argument("--out", type=Path, default=Path("runs/fashion_mnist_example"))
    args = parser.parse_args()

    x, y = load(args.data, "train")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed))
    train = order[: args.train_size]
    validation = order[args.train_size : args.train_size + args.validation_size]
    x_test, y_test = load(args.data, "test")
    print(f"Fashion-MNIST: {len(train)} training, {len(validation)} validation and "
          f"{len(x_test)} test images, {args.epochs} epochs, small CNN, "
          f"{torch.get_num_threads()} CPU threads")  # fmt: skip

    rows = {}
    for name in args.losses:
        start = time.perf_counter()
        model = train_model(name, x[train], y[train], args.epochs, args.seed)
        temperature = fit_temperature(predict(model, x[validation]), y[validation])
        logits = predict(model, x_test)
        before = calibration_report(logits, y_test)
        after = calibration_report(logits, y_test, temperature=temperature)
        rows[name] = {
            "error %": 100 * before.error,
            "NLL": before.nll,
            "ECE %": 100 * before.ece,
            "AdaECE %": 100 * before.adaece,
            "Classwise-ECE %": 100 * before.classwise_ece,
            "T": temperature,
            "ECE (T) %": 100 * after.ece,
        }
        panels = {
            name: reliability_bins(logits, y_test),
            f"{name}, T = {temperature:.1f}": reliability_bins(logits / temperature, y_test),
        }
        path = save_reliability_diagram(panels, args.out / f"reliability_{name}.png")
        print(f"  trained {name} in {time.perf_counter() - start:.0f} s; diagram: {path}")
    columns = list(next(iter(rows.values())))
    print("\n| loss | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.2f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
