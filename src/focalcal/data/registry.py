"""One name per dataset: ``load_dataset("cifar10", split="val")`` gives tensors ready to batch."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from focalcal._checks import unknown_name
from focalcal.data import arrays, cifar, folder, idx, svhn, tiny_imagenet
from focalcal.data.dataset import Dataset
from focalcal.data.splits import SPLIT_SEED, VALIDATION_FRACTION, train_validation_indices

Root = str | os.PathLike[str] | None
SPLITS = ("train", "val", "test")
KINDS = ("images", "signals", "text")


@dataclass(frozen=True)
class DatasetEntry:
    """How to read a dataset's official splits; ``official_validation``: it has its own
    validation split (otherwise "val" is a seeded 10 % of the training set)."""

    read: Callable[..., Dataset]  # (root, split, download, **options) -> Dataset
    description: str
    official_validation: bool = False
    kind: str = "images"  # "images", "signals" or "text": what corruptions and OOD sets fit


def _fashion_mnist(root: Root, split: str, download: bool) -> Dataset:
    x, y = idx.load_fashion_mnist(root, split, download=download)
    return Dataset(x, y, idx.CLASSES, idx.MEAN, idx.STD)


def _cifar(name: str, mean: tuple[float, ...], std: tuple[float, ...]) -> Callable[..., Dataset]:
    def read(root: Root, split: str, download: bool) -> Dataset:
        x, y, classes = cifar.load_cifar(name, root, split, download=download)
        return Dataset(x, y, classes, mean, std)

    return read


def _cifar10_c(
    root: Root, split: str, download: bool, corruption: str = "gaussian_noise", severity: int = 5
) -> Dataset:
    if split != "test":
        raise ValueError(f"CIFAR-10-C has only a test split, got split={split!r}")
    x, y = cifar.load_cifar10_c(corruption, severity, root, download=download)
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck")  # fmt: skip
    return Dataset(x, y, classes, cifar.CIFAR10_MEAN, cifar.CIFAR10_STD)


def _svhn(root: Root, split: str, download: bool) -> Dataset:
    x, y = svhn.load_svhn(root, split, download=download)
    return Dataset(x, y, svhn.CLASSES, svhn.MEAN, svhn.STD)


def _tiny_imagenet(root: Root, split: str, download: bool) -> Dataset:
    x, y, classes = tiny_imagenet.load_tiny_imagenet(root, split, download=download)
    return Dataset(x, y, classes, tiny_imagenet.MEAN, tiny_imagenet.STD)


def _mnist1d(root: Root, split: str, download: bool, seed: int = 42) -> Dataset:
    from focalcal.data.mnist1d import CLASSES, generate_mnist1d

    x, y = generate_mnist1d(split, seed)
    return Dataset(x, y, CLASSES, (0.0,), (1.0,))  # generated standardised


def _digits(root: Root, split: str, download: bool) -> Dataset:
    from focalcal.data.digits import CLASSES, load_digits

    x, y = load_digits(split)
    return Dataset(x, y, CLASSES, (0.3056,), (0.3761,))  # training-split pixel statistics


def _newsgroups(root: Root, split: str, download: bool, **options: Any) -> Dataset:
    from focalcal.data.newsgroups import load_20newsgroups

    return load_20newsgroups(root, split, download, **options)


def _sst(root: Root, split: str, download: bool, **options: Any) -> Dataset:
    from focalcal.data.sst import load_sst

    return load_sst(root, split, download, **options)


DATASETS: dict[str, DatasetEntry] = {
    "fashion-mnist": DatasetEntry(
        _fashion_mnist, "Fashion-MNIST, 28×28 grey, 10 classes, 60 000 + 10 000 (IDX files; "
        "found in /usr/share/datasets/fashion-mnist where Debian installs them)"),
    "cifar10": DatasetEntry(
        _cifar("cifar10", cifar.CIFAR10_MEAN, cifar.CIFAR10_STD),
        "CIFAR-10, 32×32 colour, 10 classes, 50 000 + 10 000 (python pickle archive)"),
    "cifar100": DatasetEntry(
        _cifar("cifar100", cifar.CIFAR100_MEAN, cifar.CIFAR100_STD),
        "CIFAR-100, 32×32 colour, 100 fine classes, 50 000 + 10 000 (python pickle archive)"),
    "cifar10-c": DatasetEntry(
        _cifar10_c, "CIFAR-10-C test images under one corruption (options corruption=, "
        "severity= 1–5; default gaussian_noise at 5, the paper's OOD set)"),
    "svhn": DatasetEntry(
        _svhn, "SVHN cropped digits, 32×32 colour, 73 257 + 26 032 (.mat files)"),
    "tiny-imagenet": DatasetEntry(
        _tiny_imagenet, "Tiny-ImageNet-200, 64×64 colour, 200 classes, 100 000 + 10 000 "
        "(the official validation set as test)"),
    "mnist1d": DatasetEntry(
        _mnist1d, "MNIST-1D, 40-point signals, 10 classes, 4 000 + 1 000 (generated, no files)",
        kind="signals"),
    "digits": DatasetEntry(
        _digits, "scikit-learn's digits, 8×8 grey, 10 classes, 1 438 + 359 (bundled file)"),
    "20newsgroups": DatasetEntry(
        _newsgroups, "20 Newsgroups (bydate), token ids, 20 classes, 11 314 + 7 532",
        kind="text"),
    "sst": DatasetEntry(
        _sst, "Stanford Sentiment Treebank, binary, trees as (N, M, 3) tensors; train/dev/test",
        official_validation=True, kind="text"),
}  # fmt: skip


@functools.lru_cache(maxsize=4)
def _read(name: str, root: str | None, split: str, download: bool, **options: Any) -> Dataset:
    # A run reads the training file for its train and val splits and again to size its model;
    # decoding (and checksumming) it once per process is what makes that cheap. Callers get
    # copies, so the cached tensors are never handed out.
    return dataset_entry(name).read(root, split, download, **options)


def register_dataset(
    name: str,
    read: Callable[[str], Dataset],
    *,
    description: str = "",
    official_validation: bool = False,
    kind: str = "images",
) -> None:
    """Make ``read(split)`` loadable as ``name`` (lower case, not already taken), in this
    process: :func:`load_dataset`, the configs and the command line then take the name.
    ``read`` returns a :class:`~focalcal.data.dataset.Dataset` for ``"train"`` and ``"test"``
    (and ``"val"`` with ``official_validation``; otherwise the validation split is the seeded
    10 % of ``"train"``); ``kind`` is ``"images"``, ``"signals"`` or ``"text"``.

    Example:
        >>> import torch
        >>> from focalcal.data import Dataset
        >>> def read(split):
        ...     g = torch.Generator().manual_seed(0 if split == "train" else 1)
        ...     x = torch.randn(100, 1, 16, generator=g)
        ...     return Dataset(x, (x.mean((1, 2)) > 0).long(), ("neg", "pos"), (0.0,), (1.0,))
        >>> register_dataset("docs-signals", read, kind="signals")
        >>> len(load_dataset("docs-signals", split="val")), dataset_kind("docs-signals")
        (10, 'signals')
    """
    if not name or name != name.strip().lower() or ":" in name or arrays.is_array_file(name):
        raise ValueError(
            f"a dataset name is lower case, without ':' or a file suffix, got {name!r}"
        )
    if name in DATASETS:
        raise ValueError(f"a dataset named {name!r} is already registered")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not callable(read):
        raise ValueError(f"dataset {name!r}: read must be callable")
    DATASETS[name] = DatasetEntry(
        lambda root, split, download: read(split), description, official_validation, kind
    )


def dataset_entry(name: str) -> DatasetEntry:
    """How to read the dataset ``name``: a registered name, or the path of an arrays file
    (``.npz``, ``.pt``: :mod:`focalcal.data.arrays`). ``ValueError`` for anything else."""
    if name in DATASETS:
        return DATASETS[name]
    if arrays.is_array_file(name):
        if not Path(name).is_file():
            raise FileNotFoundError(f"dataset file {name} does not exist")
        return DatasetEntry(
            lambda root, split, download: arrays.read_arrays(name, split),
            f"arrays from {name}",
            official_validation=arrays.has_validation(name),
            kind=arrays.input_kind(name),
        )
    if folder.is_image_folder(name):
        return DatasetEntry(
            lambda root, split, download, image_size=None, channels=None: arrays.read_arrays(
                folder.cached_arrays(name, image_size, channels), split
            ),
            f"images from {name}",
            official_validation=folder.has_validation(name),
        )
    raise unknown_name("dataset", name, list(DATASETS))


def dataset_label(name: str) -> str:
    """A dataset's name in run names and tables: a registered name, an arrays file's stem or
    an image folder's name.

    >>> dataset_label("cifar10"), dataset_label("data/mine.npz"), dataset_label("data/pets/")
    ('cifar10', 'mine', 'pets')
    """
    if name in DATASETS:
        return name
    return Path(name).stem if arrays.is_array_file(name) else Path(name).name


def dataset_kind(name: str) -> str:
    """What a dataset holds: ``"images"``, ``"signals"`` or ``"text"``.

    >>> dataset_kind("cifar10"), dataset_kind("mnist1d"), dataset_kind("sst")
    ('images', 'signals', 'text')
    """
    return dataset_entry(name).kind


def dataset_names() -> list[str]:
    """The registered dataset names.

    >>> "cifar10" in dataset_names()
    True
    """
    return list(DATASETS)


def load_dataset(
    name: str,
    root: Root = None,
    split: str = "train",
    *,
    subset: int | None = None,
    seed: int = SPLIT_SEED,
    validation_fraction: float = VALIDATION_FRACTION,
    download: bool = False,
    corruption: str | None = None,
    severity: int = 5,
    classes: Sequence[int] | None = None,
    **options: Any,
) -> Dataset:
    """One split of a registered dataset as tensors.

    ``split``: ``"train"`` and ``"val"`` are the seeded split of the official training set
    (``validation_fraction`` held out, the same on every machine for a given ``seed``) unless the
    dataset has an official validation split; ``"test"`` is the official test set.
    ``classes``: keep only the samples of these classes (indices into the dataset's classes),
    relabelled 0, 1, … in the order given (:meth:`~focalcal.data.dataset.Dataset.keep_classes`;
    the training/validation split is drawn before, over every class). ``subset``: keep the
    first ``subset`` (kept) samples (of the shuffled training part, or of the official order).
    ``corruption``/``severity``: apply a CIFAR-10-C-style corruption
    (see :mod:`focalcal.data.corruptions`) to the images, seeded by ``seed``. ``root``: where
    the files are (default ``$FOCALCAL_DATA`` or ``~/.cache/focalcal``); ``download``: fetch
    missing files. ``options`` go to the dataset's reader (e.g. ``vocabulary_size``).

    >>> data = load_dataset("mnist1d", split="val")
    >>> len(data), data.inputs.dtype, data.classes[:3]
    (400, torch.float32, ('0', '1', '2'))
    """
    entry = dataset_entry(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}  # hashable
    try:
        inspect.signature(entry.read).bind(root, split, download, **options)
    except TypeError:
        takes = [p for p in inspect.signature(entry.read).parameters][3:]
        raise ValueError(
            f"dataset {name!r} takes no option {', '.join(sorted(set(options) - set(takes)))}"
            f"; its options: {', '.join(takes) or 'none'}"
        ) from None
    # a user's file or folder may change between calls: its own cache follows its contents
    read = _read if name in DATASETS else _read.__wrapped__
    root = None if root is None else os.fspath(root)  # hashable, for the cache
    if split == "test" or entry.official_validation:
        data = read(name, root, split, download, **options)
        data = data.select(torch.arange(len(data)))  # a copy: the cached tensors stay private
        source = "its file holds no sample"
    else:
        full = read(name, root, "train", download, **options)
        train, validation = train_validation_indices(len(full), validation_fraction, seed)
        data = full.select(train if split == "train" else validation)
        source = (
            f"{validation_fraction:g} of {len(full)} training samples held out"
            if len(full)
            else "its file holds no sample"
        )
    if not len(data):  # nothing downstream (a loader, a metric, T) can use an empty split
        raise ValueError(f"{name} {split} split is empty ({source})")
    if classes is not None:  # before subset: the subset counts the kept samples
        try:
            data = data.keep_classes(classes)
        except ValueError as error:
            raise ValueError(f"classes={list(classes)}: {error}") from None
        if not len(data):
            raise ValueError(f"{name} {split} split holds no sample of classes {list(classes)}")
    if subset is not None:
        if not 1 <= subset <= len(data):
            raise ValueError(
                f"subset must lie in [1, {len(data)}] for {name} {split}, got {subset}"
            )
        data = data.select(torch.arange(subset))
    if corruption is not None:
        from focalcal.data.corruptions import corrupt

        generator = torch.Generator().manual_seed(seed)
        data = Dataset(corrupt(data.inputs, corruption, severity, generator), data.labels,
                       data.classes, data.mean, data.std, data.vocabulary)  # fmt: skip
    return data
