"""Tiny-ImageNet-200 from the published ``tiny-imagenet-200.zip``, its folder layout read in place.

Training images are ``train/<wnid>/images/*.JPEG``; the official validation images
(``val/images/*.JPEG``, labelled by ``val/val_annotations.txt``) serve as the test split, as in
the paper (the official test labels are not public). Classes are the sorted wnids, the order of
``ImageFolder``. Decoding 110 000 JPEGs takes a while, so each split is decoded once and cached
beside the archive (``tiny-imagenet-200.<split>.pt``, written atomically, tied to the archive's
checksum). Decoding needs Pillow (``pip install pillow``).
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from focalcal._io import atomic_write
from focalcal.data.download import RemoteFile, fetch

ARCHIVE = RemoteFile(
    "tiny-imagenet-200.zip",
    "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
    md5="90528d7ca1a48142e341f4ef8d21d0de",
)
MEAN, STD = (0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)
TOP = "tiny-imagenet-200"


def _decode(data: bytes, name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data)).convert("RGB")  # a few training images are greyscale
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{name}: not a readable image ({error})") from error
    if image.size != (64, 64):
        raise ValueError(f"{name}: expected 64×64 pixels, got {image.size}")
    return np.asarray(image)


def _read(path: Path, split: str) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    with zipfile.ZipFile(path) as archive:
        try:
            wnids = sorted(archive.read(f"{TOP}/wnids.txt").decode().split())
            words = dict(
                line.split("\t", 1)
                for line in archive.read(f"{TOP}/words.txt").decode().splitlines()
            )
            if split == "train":
                files = [
                    (name, name.split("/")[2]) for name in archive.namelist()
                    if name.startswith(f"{TOP}/train/") and name.endswith(".JPEG")
                ]  # fmt: skip
            else:
                annotations = archive.read(f"{TOP}/val/val_annotations.txt").decode().splitlines()
                files = [
                    (f"{TOP}/val/images/{line.split()[0]}", line.split()[1]) for line in annotations
                ]
        except KeyError as error:
            raise ValueError(f"{path}: missing {error} (not the published archive)") from None
        index = {wnid: i for i, wnid in enumerate(wnids)}
        unknown = {wnid for _, wnid in files} - index.keys()
        if unknown:
            raise ValueError(f"{path}: images of classes not in wnids.txt: {sorted(unknown)[:5]}")
        images = np.stack([
            _decode(archive.read(name), name)
            for name, _ in tqdm(files, desc=f"decoding Tiny-ImageNet {split}", disable=None)
        ])  # fmt: skip
    labels = torch.tensor([index[wnid] for _, wnid in files], dtype=torch.int64)
    classes = tuple(words.get(wnid, wnid).split(",")[0].strip() for wnid in wnids)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels, classes


def load_tiny_imagenet(
    root: str | os.PathLike[str] | None = None, split: str = "train", *, download: bool = False
) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """Images ``(N, 3, 64, 64)`` uint8, labels ``(N,)`` int64 and class names; ``split`` is
    ``"train"`` (100 000) or ``"test"`` (the official validation set, 10 000)."""
    path = fetch(ARCHIVE, root, download=download)
    cache = path.with_name(f"{TOP}.{split}.pt")
    if cache.exists():
        stored = torch.load(cache, weights_only=True)
        if stored.get("archive_md5") == ARCHIVE.md5:
            return stored["images"], stored["labels"], tuple(stored["classes"])
    images, labels, classes = _read(path, split)
    stored = {"images": images, "labels": labels, "classes": list(classes),
              "archive_md5": ARCHIVE.md5}  # fmt: skip
    atomic_write(cache, lambda file: torch.save(stored, file))
    return images, labels, classes
