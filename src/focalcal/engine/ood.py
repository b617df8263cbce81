"""The OOD sets a run is evaluated against, named by specs:

- a dataset name: that dataset's test split, e.g. ``"svhn"`` for CIFAR models, ``"digits"``
  (scikit-learn's 8×8 handwritten digits) for Fashion-MNIST ones;
- ``"corruption:<name>:<severity>"``: the run's own test split under a
  :mod:`focalcal.data.corruptions` corruption, e.g. ``"corruption:gaussian_noise:5"``;
- ``"heldout"``: the test images of the classes the run's ``classes`` leaves out (a near-OOD
  set: the same kind of images, classes the model never saw). The name is reserved: a dataset
  registered as ``heldout`` cannot serve as an OOD set.

Every OOD set is normalised with the in-distribution mean and std: the model only ever saw
inputs normalised that way, and the paper feeds SVHN to CIFAR models exactly so. Images of
another size or channel count are made like the run's test images first
(:func:`~focalcal.data.resize.resize_images`: bilinear, grey repeated to colour, colour
averaged to grey), on the 0–255 scale they are stored on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import Tensor

from focalcal._checks import unknown_name
from focalcal.data import CORRUPTIONS, Dataset, dataset_kind, dataset_names, load_dataset
from focalcal.data.resize import resize_images
from focalcal.engine.config import TrainConfig

HELDOUT = "heldout"
NOISE = "corruption:gaussian_noise:5"
# A real OOD set for a dataset where one makes sense: handwritten digits against clothes,
# both grey, the digits brought from 8×8 to 28×28.
NATURAL_OOD = {"fashion-mnist": "digits"}


class OODSource(NamedTuple):
    """Where an OOD set comes from: a dataset's test split (``dataset``), the run's test split
    (``dataset`` None) under ``corruption`` at ``severity``, or (``heldout``) the run's test
    images of the classes it left out."""

    dataset: str | None
    corruption: str | None = None
    severity: int = 5
    heldout: bool = False


def parse_ood(spec: str) -> OODSource:
    """Check an OOD spec without loading any data; unknown names are a ``ValueError``.

    Example:
        >>> parse_ood("svhn")
        OODSource(dataset='svhn', corruption=None, severity=5, heldout=False)
        >>> parse_ood("corruption:gaussian_noise:3")
        OODSource(dataset=None, corruption='gaussian_noise', severity=3, heldout=False)
        >>> parse_ood("heldout").heldout
        True
    """
    if spec == HELDOUT:
        return OODSource(None, heldout=True)
    kind, _, rest = spec.partition(":")
    if kind != "corruption":
        if spec not in dataset_names():
            raise unknown_name(
                "OOD set", spec, [*dataset_names(), "corruption:<name>:<severity>", HELDOUT]
            )
        return OODSource(spec)
    name, _, severity = rest.partition(":")
    if name not in CORRUPTIONS:
        raise ValueError(f"OOD set {spec!r}: {unknown_name('corruption', name, CORRUPTIONS)}")
    if severity not in ("1", "2", "3", "4", "5"):
        raise ValueError(f"OOD set {spec!r}: severity must be 1 to 5, got {severity!r}")
    return OODSource(None, name, int(severity))


def check_ood(spec: str, config: TrainConfig) -> None:
    """:func:`parse_ood`, and whether ``spec`` fits the run of ``config``: ``"heldout"`` needs
    a run whose ``classes`` leave at least one class out (it reads the dataset's test split,
    which is cached, to count them). ``ValueError`` naming the problem.

    Example:
        >>> check_ood("heldout", TrainConfig(dataset="digits", classes=[0, 1, 2]))
        >>> check_ood("heldout", TrainConfig(dataset="digits"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: OOD set 'heldout' scores the classes a run leaves out, but this run keeps ...
    """
    if parse_ood(spec).heldout:
        _heldout_classes(config)


def ood_dataset(spec: str, config: TrainConfig, reference: Dataset) -> Dataset:
    """The OOD set ``spec`` names (see the module docstring), normalised like ``reference``
    (the run's in-distribution test split): its mean and std, and images of its shape
    (resized and their channels matched where they differ). Signals or token ids of another
    shape are a ``ValueError``.

    Example:
        >>> import torch
        >>> colour = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)  # a run's 32×32 RGB test split
        >>> test = Dataset(colour, torch.tensor([0, 1]), ("a", "b"), (0.5,) * 3, (0.25,) * 3)
        >>> digits = ood_dataset("digits", TrainConfig(dataset="cifar10"), test)
        >>> len(digits), tuple(digits.inputs.shape[1:]), digits.mean == test.mean
        (359, (3, 32, 32), True)
    """
    source = parse_ood(spec)
    if reference.vocabulary is not None:  # token ids of another vocabulary would mean nothing
        raise ValueError(f"OOD set {spec!r}: OOD evaluation needs image or signal inputs")
    name = source.dataset or config.dataset
    # the run's own dataset is read as the run reads it; another with its own defaults
    options = config.dataset_options if name == config.dataset else {}
    classes = _heldout_classes(config) if source.heldout else None
    if source.corruption is not None:
        classes = config.classes  # the run's own test split, corrupted
    try:
        data = load_dataset(
            name, config.root, "test", corruption=source.corruption, severity=source.severity,
            classes=classes, **options,
        )  # fmt: skip
    except ValueError as error:  # e.g. a corruption of inputs that are not images
        raise ValueError(f"OOD set {spec!r}: {error}") from error
    inputs, shape = data.inputs, tuple(reference.inputs.shape[1:])
    if tuple(inputs.shape[1:]) != shape:
        if not _images(inputs) or not _images(reference.inputs):
            raise ValueError(
                f"OOD set {spec!r} has inputs of shape {tuple(inputs.shape[1:])}, the model "
                f"takes {shape}"
            )
        try:
            inputs = resize_images(inputs, shape[0], (shape[1], shape[2]))
        except ValueError as error:
            raise ValueError(f"OOD set {spec!r}: {error}") from None
    return dataclasses.replace(data, inputs=inputs, mean=reference.mean, std=reference.std)


def default_ood(configs: Iterable[TrainConfig]) -> list[str]:
    """The OOD sets ``focalcal reproduce`` scores when none are named: Gaussian noise at
    severity 5 (the paper's CIFAR-10-C set) where every run's data are images, plus a real
    OOD dataset where every run's dataset has the same one (:data:`NATURAL_OOD`: the digits
    for Fashion-MNIST); none where some data are signals or text.

    Example:
        >>> default_ood([TrainConfig(dataset="fashion-mnist")])
        ['corruption:gaussian_noise:5', 'digits']
        >>> default_ood([TrainConfig(dataset="digits")])
        ['corruption:gaussian_noise:5']
        >>> default_ood([TrainConfig(dataset="mnist1d")])
        []
    """
    datasets = {config.dataset for config in configs}
    if not all(dataset_kind(dataset) == "images" for dataset in datasets):
        return []
    natural = {NATURAL_OOD.get(dataset, "") for dataset in datasets}
    return [NOISE, *(natural if len(natural) == 1 and "" not in natural else ())]


def _images(inputs: Tensor) -> bool:
    return inputs.dtype == torch.uint8 and inputs.dim() == 4


def _heldout_classes(config: TrainConfig) -> list[int]:
    """The class indices of the run's dataset that ``config.classes`` leaves out."""
    hint = "set its classes (e.g. --set 'classes=[0,1,2,3,4]')"
    if config.classes is None:
        raise ValueError(
            f"OOD set {HELDOUT!r} scores the classes a run leaves out, but this run keeps "
            f"every class: {hint}"
        )
    test = load_dataset(config.dataset, config.root, "test", **config.dataset_options)
    left_out = [c for c in range(len(test.classes)) if c not in config.classes]
    if not left_out:
        raise ValueError(
            f"OOD set {HELDOUT!r} scores the classes a run leaves out, but this run's classes "
            f"{config.classes} are all {len(test.classes)} classes of {config.dataset!r}: {hint}"
        )
    return left_out
