"""Train a small CNN on real Fashion-MNIST with cross-entropy and with FLSD-53, side by side.

    python examples/train_fashion_mnist.py                      # CE vs FLSD-53, about 2 minutes
    python examples/train_fashion_mnist.py --losses fl-3 brier --epochs 10

Uses the original IDX files that Debian's ``dataset-fashion-mnist`` package installs in
/usr/share/datasets/fashion-mnist (or ``--data DIR``). It trains on a subset of the training
set long enough to over-fit (the regime where cross-entropy becomes over-confident), then prints
each loss's test error, NLL, mean confidence and over-confidence (mean confidence − accuracy).
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from focalcal.losses import build_loss

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


def train(loss_name: str, x: Tensor, y: Tensor, epochs: int, seed: int) -> nn.Module:
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
def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, float]:
    model.eval()
    logits = torch.cat([model(batch) for batch in x.split(1000)])
    confidence, prediction = logits.softmax(1).max(1)
    accuracy = (prediction == y).float().mean().item()
    return {
        "error %": 100 * (1 - accuracy),
        "NLL": F.cross_entropy(logits, y).item(),
        "confidence %": 100 * confidence.mean().item(),
        "over-confidence %": 100 * (confidence.mean().item() - accuracy),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", nargs="+", default=["ce", "flsd-53"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DEBIAN_DIR)
    args = parser.parse_args()

    x_train, y_train = load(args.data, "train")
    subset = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(args.seed))
    subset = subset[: args.train_size]
    x_train, y_train = x_train[subset], y_train[subset]
    x_test, y_test = load(args.data, "test")
    print(f"Fashion-MNIST: {len(x_train)} training images, {len(x_test)} test images, "
          f"{args.epochs} epochs, small CNN, {torch.get_num_threads()} CPU threads")  # fmt: skip

    rows = {}
    for name in args.losses:
        start = time.perf_counter()
        model = train(name, x_train, y_train, args.epochs, args.seed)
        rows[name] = evaluate(model, x_test, y_test)
        print(f"  trained {name} in {time.perf_counter() - start:.0f} s")
    columns = list(next(iter(rows.values())))
    print("\n| loss | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
