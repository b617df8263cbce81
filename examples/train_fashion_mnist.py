"""Train a small CNN on real Fashion-MNIST with cross-entropy and with FLSD-53, side by side.

    python examples/train_fashion_mnist.py                      # CE vs FLSD-53, about 3 minutes
    python examples/train_fashion_mnist.py --losses fl-3 brier --epochs 10
    python examples/train_fashion_mnist.py --losses ce --save-predictions runs/predictions

Uses the original IDX files that Debian's ``dataset-fashion-mnist`` package installs in
/usr/share/datasets/fashion-mnist (or ``--root DIR``), through ``focalcal.data``: the first
``--train-size`` images of the seeded 90 % training part and ``--validation-size`` of the 10 %
validation part. It trains the registry's ``small-cnn`` on them long enough to over-fit (the
regime where cross-entropy becomes over-confident), fits a temperature on the validation
images with the paper's ECE grid, and prints each loss's
test error, NLL, ECE, AdaECE and Classwise-ECE before and after temperature scaling. The
reliability diagrams (before | after T) go to ``--out``. With ``--save-predictions DIR``, each
loss's validation and test logits and labels go to ``DIR/LOSS/val.npz`` and ``test.npz``, the
files ``focalcal calibrate --val ... --test ...`` reads.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from focalcal.data import BatchLoader, Dataset, load_dataset
from focalcal.losses import EpochAware, EpochStart, build_loss, start_epoch
from focalcal.metrics import calibration_report, reliability_bins
from focalcal.models import build_model
from focalcal.report import save_reliability_diagram
from focalcal.scaling import fit_temperature


def train_model(
    loss_name: str, train: Dataset, validation: Dataset, epochs: int, seed: int
) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model("small-cnn", 10, in_channels=1, image_size=28)
    criterion = build_loss(loss_name)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    milestones = [epochs // 2, (3 * epochs) // 4]
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    batches = BatchLoader(train, batch_size=128, shuffle=True, seed=seed)
    val_logits = None
    for epoch in range(epochs):
        # the loss's per-epoch hook: FLSc-531's γ schedule, AdaFocal's γ per bin
        start_epoch(criterion, EpochStart(epoch, epochs, val_logits, validation.labels))
        batches.set_epoch(epoch)
        model.train()
        for x, y in batches:
            optimizer.zero_grad(set_to_none=True)
            criterion(model(x), y).backward()
            optimizer.step()
        schedule.step()
        if isinstance(criterion, EpochAware):
            val_logits = predict(model, validation)
    return model


@torch.no_grad()
def predict(model: nn.Module, data: Dataset) -> Tensor:
    model.eval()
    return torch.cat([model(x) for x, _ in BatchLoader(data, batch_size=1000)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", nargs="+", default=["ce", "flsd-53"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validation-size", type=int, default=1000)
    parser.add_argument("--root", type=Path, help="data folder (default: Debian's files)")
    parser.add_argument("--out", type=Path, default=Path("runs/fashion_mnist_example"))
    parser.add_argument("--save-predictions", type=Path, metavar="DIR",
                        help="write DIR/LOSS/val.npz and test.npz (logits, labels)")  # fmt: skip
    args = parser.parse_args()

    train = load_dataset("fashion-mnist", args.root, "train", subset=args.train_size)
    validation = load_dataset("fashion-mnist", args.root, "val", subset=args.validation_size)
    test = load_dataset("fashion-mnist", args.root, "test")
    print(f"Fashion-MNIST: {len(train)} training, {len(validation)} validation and "
          f"{len(test)} test images, {args.epochs} epochs, small CNN, "
          f"{torch.get_num_threads()} CPU threads")  # fmt: skip

    rows = {}
    for name in args.losses:
        start = time.perf_counter()
        model = train_model(name, train, validation, args.epochs, args.seed)
        val_logits = predict(model, validation)
        temperature = fit_temperature(val_logits, validation.labels)
        logits, y_test = predict(model, test), test.labels
        if args.save_predictions:
            folder = args.save_predictions / name
            folder.mkdir(parents=True, exist_ok=True)
            for split, split_logits, labels in (("val", val_logits, validation.labels),
                                                ("test", logits, y_test)):  # fmt: skip
                np.savez(
                    folder / f"{split}.npz", logits=split_logits.numpy(), labels=labels.numpy()
                )
            print(f"  predictions: {folder}/val.npz, {folder}/test.npz")
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
