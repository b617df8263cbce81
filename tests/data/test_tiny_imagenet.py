"""Tiny-ImageNet's zip layout (JPEGs, wnids, val_annotations) against a small fixture zip."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from focalcal.data import tiny_imagenet
from focalcal.data.dataset import Dataset
from tests.data.fixtures import install

# --------------------------------------------------------------------------------------------
# Tiny-ImageNet

TOP = "tiny-imagenet-200"
WNIDS = ("n02124075", "n01443537", "n09246464")  # wnids.txt is not sorted
WORDS = {
    "n00001740": "entity",
    "n01443537": "goldfish, Carassius auratus",
    "n02124075": "Egyptian cat",
    "n09246464": "cliff, drop, drop-off",
}
CLASSES = ("goldfish", "Egyptian cat", "cliff")  # the sorted wnids' first names
TRAIN = {  # wnid -> flat colours; an int is a greyscale ("L") JPEG, as some real ones are
    "n02124075": [(200, 30, 30), 90],
    "n01443537": [(30, 200, 30), (30, 30, 200)],
    "n09246464": [(220, 220, 40), (40, 220, 220)],
}
VAL = [("n09246464", (150, 60, 200)), ("n02124075", (240, 240, 240)), ("n01443537", 20)]


def _jpeg(colour: tuple[int, int, int] | int) -> bytes:
    buffer = io.BytesIO()
    mode = "L" if isinstance(colour, int) else "RGB"
    Image.new(mode, (64, 64), colour).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _tiny_imagenet_zip(root: Path, val: list[tuple[str, object]] = VAL) -> Path:
    path = root / tiny_imagenet.ARCHIVE.filename
    words = "".join(f"{wnid}\t{names}\n" for wnid, names in WORDS.items())
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder in ("", "train/", "val/", "val/images/", "test/", "test/images/"):
            archive.writestr(f"{TOP}/{folder}", b"")
        archive.writestr(f"{TOP}/wnids.txt", "".join(f"{wnid}\n" for wnid in WNIDS))
        archive.writestr(f"{TOP}/words.txt", words)
        for wnid, colours in TRAIN.items():
            archive.writestr(f"{TOP}/train/{wnid}/", b"")
            archive.writestr(f"{TOP}/train/{wnid}/images/", b"")
            boxes = "".join(f"{wnid}_{k}.JPEG\t0\t0\t63\t63\n" for k in range(len(colours)))
            archive.writestr(f"{TOP}/train/{wnid}/{wnid}_boxes.txt", boxes)
            for k, colour in enumerate(colours):
                archive.writestr(f"{TOP}/train/{wnid}/images/{wnid}_{k}.JPEG", _jpeg(colour))
        lines = []
        for k, (wnid, colour) in enumerate(val):
            archive.writestr(f"{TOP}/val/images/val_{k}.JPEG", _jpeg(colour))
            lines.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63\n")
        archive.writestr(f"{TOP}/val/val_annotations.txt", "".join(lines))
        archive.writestr(f"{TOP}/test/images/test_0.JPEG", _jpeg((1, 2, 3)))  # unlabelled
    return path


def _rgb(colour: tuple[int, int, int] | int) -> np.ndarray:
    return np.array([colour] * 3 if isinstance(colour, int) else colour)


def _check_tiny(images, labels, expected: list[tuple[str, object]]) -> None:
    """``images``/``labels`` are ``expected`` (wnid, flat colour) pairs, in any order."""
    assert images.dtype == torch.uint8 and images.shape == (len(expected), 3, 64, 64)
    assert labels.dtype == torch.int64
    order = sorted(WNIDS)
    matched = []
    for image, label in zip(images.numpy().astype(int), labels.tolist(), strict=True):
        distances = [np.abs(image.mean((1, 2)) - _rgb(colour)).max() for _, colour in expected]
        k = int(np.argmin(distances))
        matched.append(k)
        assert np.abs(image - _rgb(expected[k][1])[:, None, None]).max() <= 4  # flat, JPEG
        assert order[label] == expected[k][0]
    assert sorted(matched) == list(range(len(expected)))


def test_tiny_imagenet_round_trip_and_cache(tmp_path, monkeypatch):
    path = _tiny_imagenet_zip(tmp_path)
    install(monkeypatch, tiny_imagenet, "ARCHIVE", path)
    train = [(wnid, colour) for wnid, colours in TRAIN.items() for colour in colours]

    for split, expected in (("train", train), ("test", VAL)):
        images, labels, classes = tiny_imagenet.load_tiny_imagenet(tmp_path, split)
        assert classes == CLASSES
        _check_tiny(images, labels, expected)
        Dataset(images, labels, classes)
    assert (tmp_path / f"{TOP}.train.pt").is_file() and (tmp_path / f"{TOP}.test.pt").is_file()
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically

    def fail(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(tiny_imagenet, "_read", fail)
    for split, expected in (("train", train), ("test", VAL)):
        images, labels, classes = tiny_imagenet.load_tiny_imagenet(tmp_path, split)
        assert classes == CLASSES
        _check_tiny(images, labels, expected)


def test_tiny_imagenet_interrupted_cache_write_leaves_no_cache(tmp_path, monkeypatch):
    install(monkeypatch, tiny_imagenet, "ARCHIVE", _tiny_imagenet_zip(tmp_path))

    def crash(obj, file, *args, **kwargs):
        file.write(b"half a cache")
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", crash)
        with pytest.raises(OSError, match="disk full"):
            tiny_imagenet.load_tiny_imagenet(tmp_path, "test")
    assert not (tmp_path / f"{TOP}.test.pt").exists()
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file is removed too
    images, labels, _ = tiny_imagenet.load_tiny_imagenet(tmp_path, "test")
    _check_tiny(images, labels, VAL)
    assert (tmp_path / f"{TOP}.test.pt").is_file() and not list(tmp_path.glob(".*.tmp"))


def test_tiny_imagenet_cache_is_tied_to_the_archive(tmp_path, monkeypatch):
    install(monkeypatch, tiny_imagenet, "ARCHIVE", _tiny_imagenet_zip(tmp_path))
    tiny_imagenet.load_tiny_imagenet(tmp_path, "test")
    other = [("n01443537", (10, 100, 250))]  # another archive under the same name
    install(monkeypatch, tiny_imagenet, "ARCHIVE", _tiny_imagenet_zip(tmp_path, other))
    images, labels, _ = tiny_imagenet.load_tiny_imagenet(tmp_path, "test")
    _check_tiny(images, labels, other)


def test_tiny_imagenet_unknown_wnid(tmp_path, monkeypatch):
    path = _tiny_imagenet_zip(tmp_path, [*VAL, ("n99999999", (0, 0, 0))])
    install(monkeypatch, tiny_imagenet, "ARCHIVE", path)
    message = f"{path}: images of classes not in wnids.txt: ['n99999999']"
    with pytest.raises(ValueError, match=re.escape(message)):
        tiny_imagenet.load_tiny_imagenet(tmp_path, "test")
    assert not list(tmp_path.glob("*.pt*"))
