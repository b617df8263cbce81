"""Train with FLSD-53 in Lightning, logging ECE and AdaECE every validation epoch.

    pip install 'focalcal[lightning]'
    python examples/train_lightning.py                   # Fashion-MNIST, 4 000 images, 10 epochs
    python examples/train_lightning.py --smoke --epochs 3 --train-size 1024   # no files, 20 s
    python examples/train_lightning.py --devices 2 --strategy ddp   # the metric syncs the ranks

A ``LightningModule`` trains focalcal's ``small-cnn`` with the FLSD-53 focal loss on the first
``--train-size`` images of the seeded training part of Fashion-MNIST (Debian's IDX files in
/usr/share/datasets/fashion-mnist, or ``--root DIR``) and validates on ``--validation-size``
images of the validation part. ``focalcal.metrics.CalibrationMetric`` collects the validation
logits' exact sums; at the end of every validation epoch its report (synced across the ranks,
the same bits as ``calibration_report`` on all the validation logits) gives the logged
``val_error``, ``val_nll``, ``val_ece`` and ``val_adaece``, printed and written to
``--out``/metrics.csv. (Named ``train_lightning.py``: a script named ``lightning.py`` would be
imported by its own ``import lightning``.)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor

from focalcal.data import BatchLoader, Dataset, load_dataset
from focalcal.losses import build_loss
from focalcal.metrics import CalibrationMetric
from focalcal.models import build_model


class CalibratedClassifier(L.LightningModule):
    """The small CNN, the FLSD-53 loss, and the validation calibration report."""

    def __init__(self, train: Dataset, validation: Dataset, epochs: int, batch_size: int) -> None:
        super().__init__()
        self.train_data, self.validation_data = train, validation
        self.epochs, self.batch_size = epochs, batch_size
        self.model = build_model("small-cnn", len(train.classes), in_channels=1, image_size=28)
        self.loss = build_loss("flsd-53")
        # a submodule: Lightning moves its states to the device, torchmetrics syncs them
        self.calibration = CalibrationMetric(num_classes=len(train.classes))

    def train_dataloader(self) -> BatchLoader:
        # made after the process group starts, so each rank batches its share
        self.train_batches = BatchLoader(self.train_data, self.batch_size, shuffle=True)
        return self.train_batches

    def val_dataloader(self) -> BatchLoader:
        return BatchLoader(self.validation_data, batch_size=500)

    def on_train_epoch_start(self) -> None:
        self.train_batches.set_epoch(self.current_epoch)  # a new order every epoch

    def training_step(self, batch: tuple[Tensor, Tensor], batch_index: int) -> Tensor:
        images, labels = batch
        loss: Tensor = self.loss(self.model(images), labels)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_index: int) -> None:
        images, labels = batch
        self.calibration.update(self.model(images), labels)

    def on_validation_epoch_end(self) -> None:
        report = self.calibration.compute()  # every rank's batches, the same on every rank
        self.calibration.reset()
        error, nll, ece, adaece = report.error, report.nll, report.ece, report.adaece
        self.log_dict({"val_error": error, "val_nll": nll, "val_ece": ece, "val_adaece": adaece})
        if not self.trainer.sanity_checking:
            self.print(
                f"epoch {self.current_epoch}: val error {100 * error:.2f} %, NLL {nll:.4f}, "
                f"ECE {100 * ece:.2f} %, AdaECE {100 * adaece:.2f} % ({report.num_samples} images)"
            )

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        milestones = [self.epochs // 2, (3 * self.epochs) // 4]
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
        return {"optimizer": optimizer, "lr_scheduler": schedule}


def synthetic(size: int, seed: int) -> Dataset:
    """28×28 grey images whose class k is a faint band at rows 2k..2k+7, in noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(10, (size,), generator=g)
    images = 100 * torch.rand(size, 1, 28, 28, generator=g)
    rows = torch.arange(28)
    band = (rows >= 2 * labels[:, None]) & (rows < 2 * labels[:, None] + 8)
    images += 80 * band[:, None, :, None]
    return Dataset(images.to(torch.uint8), labels, tuple(map(str, range(10))), (0.4,), (0.3,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--validation-size", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--smoke", action="store_true", help="a synthetic set, no data files")
    parser.add_argument("--root", type=Path, help="data folder (default: Debian's files)")
    parser.add_argument("--out", type=Path, default=Path("runs/lightning_example"))
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--devices", default="auto")
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    L.seed_everything(args.seed, verbose=False)
    if args.smoke:
        train, validation = synthetic(args.train_size, 1), synthetic(args.validation_size, 2)
    else:
        train = load_dataset("fashion-mnist", args.root, "train", subset=args.train_size)
        validation = load_dataset("fashion-mnist", args.root, "val", subset=args.validation_size)
    module = CalibratedClassifier(train, validation, args.epochs, args.batch_size)
    trainer = L.Trainer(
        max_epochs=args.epochs,
        accelerator=args.accelerator,
        devices=args.devices,
        strategy=args.strategy,
        logger=CSVLogger(args.out, name="", version=""),
        default_root_dir=args.out,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,  # the epoch's line is the progress
    )
    trainer.fit(module)
    if trainer.is_global_zero:
        print(f"metrics: {args.out / 'metrics.csv'}")


if __name__ == "__main__":
    main()
