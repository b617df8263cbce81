"""Named training protocols: the paper's, and the default CPU experiment on Fashion-MNIST.

The CIFAR presets are the paper's protocol exactly (DESIGN.md): SGD with momentum 0.9, weight
decay 5e-4, lr 0.1 divided by 10 at epochs 150 and 250, 350 epochs, batch 128, the loss summed
over the batch, gradient norm clipped at 2, random crop (padding 4) and flip. Tiny-ImageNet
changes the model, the epochs (100), the milestones (40, 60) and the batch (64). For 20
Newsgroups and SST the paper states the model, optimiser, batch and epochs; the rest follows its
published code where we know it.
"""

from __future__ import annotations

from focalcal._checks import unknown_name
from focalcal.engine.config import TrainConfig

_CIFAR10 = TrainConfig(
    dataset="cifar10", model="resnet50", epochs=350, batch_size=128, optimizer="sgd", lr=0.1,
    momentum=0.9, weight_decay=5e-4, milestones=[150, 250], lr_decay=0.1, reduction="sum",
    grad_clip=2.0, augment=True,
)  # fmt: skip

PRESETS: dict[str, TrainConfig] = {
    # The default experiment: small enough for 6 losses in 5 minutes on 2 CPU cores, long enough
    # to over-fit 2 000 images (the regime where cross-entropy turns over-confident).
    "fashion-mnist": TrainConfig(
        dataset="fashion-mnist", subset=2000, val_subset=1000, model="small-cnn",
        model_options={"width": 24}, epochs=30, milestones=[15, 22], analysis_samples=500,
    ),
    # The longer CPU experiment of docs/results.md: the full training split (54 000 images) and
    # a ResNet; about 15 minutes per loss on one CPU thread.
    "fashion-mnist-resnet": TrainConfig(
        dataset="fashion-mnist", model="resnet8", epochs=6, milestones=[3, 5],
        analysis_samples=2000,
    ),
    "paper-cifar10": _CIFAR10,
    "paper-cifar100": _CIFAR10.replace(dataset="cifar100"),
    "paper-tiny-imagenet": _CIFAR10.replace(
        dataset="tiny-imagenet", model="resnet50-tiny", epochs=100, milestones=[40, 60],
        batch_size=64,
    ),
    "paper-20newsgroups": TrainConfig(
        dataset="20newsgroups", model="textcnn", optimizer="adam", lr=1e-3, weight_decay=0.0,
        batch_size=128, epochs=50, reduction="sum",
    ),
    "paper-sst": TrainConfig(
        dataset="sst", model="tree-lstm", optimizer="adagrad", lr=0.05, weight_decay=1e-4,
        batch_size=25, epochs=25, reduction="sum",
    ),
}  # fmt: skip


def preset(name: str) -> TrainConfig:
    """A copy of the named preset (``ValueError`` listing the names for an unknown one).

    >>> preset("paper-cifar10").milestones
    [150, 250]
    """
    if name not in PRESETS:
        raise unknown_name("preset", name, list(PRESETS))
    return PRESETS[name].replace()
