"""The dataset readers against small fixtures written in exactly the published file formats.

The real archives cannot be downloaded here, so each test writes a few images in the official
layout (CIFAR's Python 2 pickles inside a tar.gz, CIFAR-10-C's ``.npy`` files in a plain tar,
SVHN's MATLAB files, Tiny-ImageNet's zip, Fashion-MNIST's gzip IDX files), points the module's
``RemoteFile`` at it with the fixture's own checksum and reads it back through the public loader.
Every pixel is compared with the index arithmetic of the format (channel ``c``, row ``i``,
column ``j``), which catches any transposition of HWC, CHW or planar layouts.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import io
import os
import pickle
import pickletools
import re
import struct
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from focalcal.data import cifar, idx, svhn, tiny_imagenet
from focalcal.data.dataset import Dataset
from focalcal.data.digits import load_digits
from focalcal.data.download import RemoteFile
from focalcal.data.mnist1d import generate_mnist1d, templates

UNUSED_URL = "http://127.0.0.1/unused"


# --------------------------------------------------------------------------------------------
# helpers


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _install(monkeypatch: pytest.MonkeyPatch, module: object, attribute: str, path: Path) -> None:
    """Point ``module.attribute`` (a ``RemoteFile``) at the fixture ``path`` and its checksum."""
    remote = getattr(module, attribute)
    assert path.name == remote.filename  # the fixture carries the published file name
    monkeypatch.setattr(module, attribute, RemoteFile(remote.filename, UNUSED_URL, md5=_md5(path)))


def _py2_pickle(obj: object) -> bytes:
    """``obj`` pickled the way Python 2's cPickle wrote the CIFAR batches (protocol 2).

    Python 2 strings are byte strings (``SHORT_BINSTRING``/``BINSTRING``, read back as ``str``
    with ``encoding="latin1"``), and a uint8 array is ``numpy.core.multiarray._reconstruct``
    of ``numpy.ndarray`` with its state ``(1, shape, dtype('u1'), False, raw bytes)``. (The
    original also memoises objects with ``BINPUT``, which changes nothing on loading.)
    """
    out = bytearray(b"\x80\x02")  # PROTO 2

    def string(value: str | bytes) -> None:
        raw = value.encode("latin1") if isinstance(value, str) else value
        if len(raw) < 256:
            out.extend(b"U" + bytes([len(raw)]) + raw)  # SHORT_BINSTRING
        else:
            out.extend(b"T" + struct.pack("<i", len(raw)) + raw)  # BINSTRING

    def save(value: object) -> None:
        if value is None:
            out.extend(b"N")
        elif isinstance(value, bool):
            out.extend(b"\x88" if value else b"\x89")
        elif isinstance(value, int) and 0 <= value < 256:
            out.extend(b"K" + bytes([value]))
        elif isinstance(value, int) and 0 <= value < 65536:
            out.extend(b"M" + struct.pack("<H", value))
        elif isinstance(value, int):
            out.extend(b"J" + struct.pack("<i", value))
        elif isinstance(value, str | bytes):
            string(value)
        elif isinstance(value, tuple) and len(value) <= 3:
            for item in value:
                save(item)
            out.extend([b")", b"\x85", b"\x86", b"\x87"][len(value)])  # EMPTY_TUPLE, TUPLE1..3
        elif isinstance(value, tuple):
            out.extend(b"(")
            for item in value:
                save(item)
            out.extend(b"t")
        elif isinstance(value, list):
            out.extend(b"](")
            for item in value:
                save(item)
            out.extend(b"e")
        elif isinstance(value, dict):
            out.extend(b"}(")
            for key, item in value.items():
                save(key)
                save(item)
            out.extend(b"u")
        elif isinstance(value, np.ndarray):
            assert value.dtype == np.uint8 and value.flags.c_contiguous
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            save((0,))
            save("b")
            out.extend(b"\x87R(")  # TUPLE3 REDUCE, then MARK the state tuple
            save(1)
            save(value.shape)
            out.extend(b"cnumpy\ndtype\n")
            save(("u1", 0, 1))
            out.extend(b"R")
            save((3, "|", None, None, None, -1, -1, 0))
            out.extend(b"b")  # BUILD the dtype
            save(False)  # not Fortran order
            string(value.tobytes())
            out.extend(b"tb")  # the state tuple, BUILD the array
        else:
            raise TypeError(type(value))

    save(obj)
    return bytes(out + b".")


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    """A tar (gzip-compressed if ``path`` ends in .gz) of ``members``, with its folder entries."""
    mode = "w:gz" if path.suffix == ".gz" else "w"
    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT) as archive:
        for folder in sorted({name.split("/")[0] for name in members}):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    return path


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _planes() -> np.ndarray:
    """A 32×32 RGB image whose every value tells its place: R = row, G = column + 64,
    B = (32·row + column) mod 256, as (3, 32, 32)."""
    i, j = np.indices((32, 32))
    return np.stack([i, j + 64, (32 * i + j) % 256]).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]  # fmt: skip


def _cifar_batches(name: str) -> tuple[dict[str, dict[str, object]], list[str]]:
    """The batches (member name → dict) and class names of a small CIFAR archive."""
    rng = np.random.default_rng(0 if name == "cifar10" else 1)

    def data(n: int, first: bool = False) -> np.ndarray:
        rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        if first:  # planar: 1024 red values row by row, then 1024 green, then 1024 blue
            rows[0] = np.concatenate([plane.ravel() for plane in _planes()])
        return rows

    if name == "cifar10":
        batches: dict[str, dict[str, object]] = {}
        for k, n in enumerate((2, 2, 3, 2, 2), start=1):
            batches[f"data_batch_{k}"] = {
                "batch_label": f"training batch {k} of 5",
                "labels": rng.integers(0, 10, n).tolist(),
                "data": data(n, first=k == 1),
                "filenames": [f"image_{k}_{m}.png" for m in range(n)],
            }
        batches["test_batch"] = {
            "batch_label": "testing batch 1 of 1",
            "labels": [9, 0, 3],
            "data": data(3),
            "filenames": ["a.png", "b.png", "c.png"],
        }
        batches["batches.meta"] = {
            "num_cases_per_batch": 10000,
            "label_names": CIFAR10_NAMES,
            "num_vis": 3072,
        }
        return batches, CIFAR10_NAMES
    names = [f"fine_{k:02d}" for k in range(100)]
    batches = {}
    for member, n in (("train", 4), ("test", 3)):
        fine = rng.integers(0, 100, n).tolist()
        batches[member] = {
            "filenames": [f"{member}_{m}.png" for m in range(n)],
            "batch_label": f"{member}ing batch 1 of 1",
            "fine_labels": fine,
            "coarse_labels": [label // 5 for label in fine],  # differ from the fine labels
            "data": data(n, first=member == "train"),
        }
    batches["meta"] = {
        "fine_label_names": names,
        "coarse_label_names": [f"coarse_{k:02d}" for k in range(20)],
    }
    return batches, names


def _cifar_archive(
    root: Path, name: str, batches: dict[str, dict[str, object]], **raw: bytes
) -> Path:
    """The archive of ``batches`` (each a Python 2 pickle) plus ``raw`` members as given."""
    prefix = cifar.LAYOUT[name][0]
    members = {f"{prefix}/{member}": _py2_pickle(batch) for member, batch in batches.items()}
    members |= {f"{prefix}/{member}": data for member, data in raw.items()}
    filename = (cifar.CIFAR10 if name == "cifar10" else cifar.CIFAR100).filename
    return _tar(root / filename, members)


def _use_cifar(monkeypatch: pytest.MonkeyPatch, name: str, path: Path) -> None:
    _install(monkeypatch, cifar, "CIFAR10" if name == "cifar10" else "CIFAR100", path)


def test_py2_pickle_is_what_python_2_wrote():
    stream = _py2_pickle({"data": np.arange(6, dtype=np.uint8).reshape(2, 3), "labels": [1, 2]})
    opcodes = {op.name for op, _, _ in pickletools.genops(stream)}
    assert {"SHORT_BINSTRING", "GLOBAL", "REDUCE", "BUILD"} <= opcodes
    assert not opcodes & {"BINUNICODE", "SHORT_BINBYTES", "BINBYTES"}  # no Python 3 types
    batch = pickle.loads(stream, encoding="latin1")
    assert batch["labels"] == [1, 2]
    np.testing.assert_array_equal(batch["data"], np.arange(6).reshape(2, 3))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar_round_trip(tmp_path, monkeypatch, name, split):
    batches, names = _cifar_batches(name)
    _use_cifar(monkeypatch, name, _cifar_archive(tmp_path, name, batches))
    members = cifar.LAYOUT[name][1 if split == "train" else 2]
    label_key = "labels" if name == "cifar10" else "fine_labels"
    data = np.concatenate([batches[member]["data"] for member in members])
    labels = [label for member in members for label in batches[member][label_key]]

    images, targets, classes = cifar.load_cifar(name, tmp_path, split)

    assert images.dtype == torch.uint8 and images.shape == (len(data), 3, 32, 32)
    assert targets.dtype == torch.int64 and targets.tolist() == labels
    assert classes == tuple(names)
    n, c, i, j = np.indices(images.shape)
    np.testing.assert_array_equal(images.numpy(), data[n, c * 1024 + i * 32 + j])
    if split == "train":
        np.testing.assert_array_equal(images[0].numpy(), _planes())  # R = row, G = column + 64
    Dataset(images, targets, classes)  # labels within the classes


def test_cifar_checksum_mismatch_names_the_path(tmp_path, monkeypatch):
    batches, _ = _cifar_batches("cifar10")
    path = _cifar_archive(tmp_path, "cifar10", batches)
    _use_cifar(monkeypatch, "cifar10", path)
    cifar.load_cifar("cifar10", tmp_path, "test")  # verified once: a stamp now stands beside it
    path.write_bytes(path.read_bytes()[:-100])  # truncated afterwards
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": checksum"):
        cifar.load_cifar("cifar10", tmp_path, "test")


@pytest.mark.parametrize(
    ("name", "missing"), [("cifar10", "data_batch_3"), ("cifar100", "meta")]
)  # fmt: skip
def test_cifar_missing_member(tmp_path, monkeypatch, name, missing):
    batches, _ = _cifar_batches(name)
    del batches[missing]
    path = _cifar_archive(tmp_path, name, batches)
    _use_cifar(monkeypatch, name, path)
    prefix = cifar.LAYOUT[name][0]
    with pytest.raises(ValueError, match=re.escape(f"{path}: no member '{prefix}/{missing}'")):
        cifar.load_cifar(name, tmp_path, "train")


def test_cifar_batch_without_labels(tmp_path, monkeypatch):
    batches, _ = _cifar_batches("cifar10")
    del batches["test_batch"]["labels"]
    path = _cifar_archive(tmp_path, "cifar10", batches)
    _use_cifar(monkeypatch, "cifar10", path)
    with pytest.raises(
        ValueError, match=re.escape(f"{path}: 'cifar-10-batches-py/test_batch' has no 'labels'")
    ):
        cifar.load_cifar("cifar10", tmp_path, "test")


class _Command:
    """Unpickles as ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


def _system_payload(marker: Path) -> bytes:
    return pickle.dumps({"data": _Command(f"touch {marker}"), "labels": [0]}, protocol=2)


def _eval_payload(marker: Path) -> bytes:  # Python 2's __builtin__.eval, written by hand
    code = f"open({str(marker)!r}, 'w').close()".encode()
    return b"\x80\x02c__builtin__\neval\nU" + bytes([len(code)]) + code + b"\x85R."


@pytest.mark.parametrize("payload", [_system_payload, _eval_payload])
def test_cifar_refuses_a_pickle_that_runs_code(tmp_path, monkeypatch, payload):
    marker = tmp_path / "pwned"
    stream = payload(marker)
    globals_ = [arg for op, arg, _ in pickletools.genops(stream) if op.name == "GLOBAL"]
    assert globals_ in (["posix system"], ["__builtin__ eval"])  # a live payload, no numpy
    batches, _ = _cifar_batches("cifar10")
    del batches["data_batch_1"]
    path = _cifar_archive(tmp_path, "cifar10", batches, data_batch_1=stream)
    _use_cifar(monkeypatch, "cifar10", path)
    with pytest.raises(ValueError, match=r"'cifar-10-batches-py/data_batch_1'.*refusing to load"):
        cifar.load_cifar("cifar10", tmp_path, "train")
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# CIFAR-10-C

CORRUPTIONS = ("gaussian_noise", "fog")
PER_SEVERITY = 3


def _cifar10_c_archive(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    arrays = {
        corruption: rng.integers(0, 256, (5 * PER_SEVERITY, 32, 32, 3), dtype=np.uint8)
        for corruption in CORRUPTIONS
    }
    arrays["fog"][0] = _planes().transpose(1, 2, 0)  # HWC: [i, j] = (i, j + 64, ...)
    arrays["labels"] = np.tile(np.array([3, 8, 1], np.uint8), 5)  # as published: uint8
    _tar(root / "CIFAR-10-C.tar", {f"CIFAR-10-C/{k}.npy": _npy(v) for k, v in arrays.items()})
    return arrays


@pytest.fixture
def cifar10_c(tmp_path, monkeypatch):
    arrays = _cifar10_c_archive(tmp_path)
    _install(monkeypatch, cifar, "CIFAR10_C", tmp_path / "CIFAR-10-C.tar")
    return arrays


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_cifar10_c_round_trip(tmp_path, cifar10_c, corruption):
    for severity in range(1, 6):
        images, labels = cifar.load_cifar10_c(corruption, severity, tmp_path)
        assert images.dtype == torch.uint8 and images.shape == (PER_SEVERITY, 3, 32, 32)
        assert labels.dtype == torch.int64 and labels.tolist() == [3, 8, 1]
        n, c, i, j = np.indices(images.shape)
        first = (severity - 1) * PER_SEVERITY  # severity 1's block first
        np.testing.assert_array_equal(images.numpy(), cifar10_c[corruption][first + n, i, j, c])
    if corruption == "fog":
        np.testing.assert_array_equal(cifar.load_cifar10_c("fog", 1, tmp_path)[0][0], _planes())


def test_cifar10_c_unknown_corruption(tmp_path, cifar10_c):
    with pytest.raises(ValueError, match="unknown CIFAR-10-C corruption 'snowfall'"):
        cifar.load_cifar10_c("snowfall", 1, tmp_path)


@pytest.mark.parametrize("severity", [0, 6])
def test_cifar10_c_severity_out_of_range(tmp_path, cifar10_c, severity):
    with pytest.raises(ValueError, match=f"severity must be 1, 2, 3, 4 or 5, got {severity}"):
        cifar.load_cifar10_c("fog", severity, tmp_path)


# --------------------------------------------------------------------------------------------
# SVHN


def _svhn_file(root: Path, split: str, X: np.ndarray, y: np.ndarray) -> Path:
    path = root / svhn.FILES[split].filename
    scipy.io.savemat(path, {"X": X, "y": y})
    return path


def _use_svhn(monkeypatch: pytest.MonkeyPatch, split: str, path: Path) -> None:
    remote = svhn.FILES[split]
    files = dict(svhn.FILES)
    files[split] = RemoteFile(remote.filename, UNUSED_URL, md5=_md5(path))
    monkeypatch.setattr(svhn, "FILES", files)


@pytest.mark.parametrize("split", ["train", "test"])
def test_svhn_round_trip(tmp_path, monkeypatch, split):
    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)  # (H, W, C, N) as published
    X[..., 0] = _planes().transpose(1, 2, 0)
    y = np.array([[10], [1], [5], [9], [10]], np.uint8)  # 10 is the digit 0
    _use_svhn(monkeypatch, split, _svhn_file(tmp_path, split, X, y))

    images, labels = svhn.load_svhn(tmp_path, split)

    assert images.dtype == torch.uint8 and images.shape == (5, 3, 32, 32)
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 1, 5, 9, 0]
    n, c, i, j = np.indices(images.shape)
    np.testing.assert_array_equal(images.numpy(), X[i, j, c, n])
    np.testing.assert_array_equal(images[0].numpy(), _planes())
    Dataset(images, labels, svhn.CLASSES)


@pytest.mark.parametrize("bad", [0, 11])
def test_svhn_label_out_of_range(tmp_path, monkeypatch, bad):
    X = np.zeros((32, 32, 3, 2), np.uint8)
    path = _svhn_file(tmp_path, "test", X, np.array([[1], [bad]], np.uint8))
    _use_svhn(monkeypatch, "test", path)
    with pytest.raises(ValueError, match=re.escape(f"{path}: labels must lie in 1..10")):
        svhn.load_svhn(tmp_path, "test")


def test_svhn_wrong_arrays(tmp_path, monkeypatch):
    X = np.zeros((3, 32, 32, 2), np.uint8)  # channels first: not the published layout
    path = _svhn_file(tmp_path, "test", X, np.array([[1], [2]], np.uint8))
    _use_svhn(monkeypatch, "test", path)
    with pytest.raises(ValueError, match=re.escape(f"{path}: unexpected arrays")):
        svhn.load_svhn(tmp_path, "test")


def test_svhn_checksum_mismatch_names_the_path(tmp_path, monkeypatch):
    path = _svhn_file(tmp_path, "test", np.zeros((32, 32, 3, 1), np.uint8), np.ones((1, 1)))
    files = dict(svhn.FILES, test=RemoteFile(path.name, UNUSED_URL, md5="0" * 32))
    monkeypatch.setattr(svhn, "FILES", files)
    with pytest.raises(ValueError, match=re.escape(f"{path}: checksum")):
        svhn.load_svhn(tmp_path, "test")


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
    _install(monkeypatch, tiny_imagenet, "ARCHIVE", path)
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
    _install(monkeypatch, tiny_imagenet, "ARCHIVE", _tiny_imagenet_zip(tmp_path))

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
    _install(monkeypatch, tiny_imagenet, "ARCHIVE", _tiny_imagenet_zip(tmp_path))
    tiny_imagenet.load_tiny_imagenet(tmp_path, "test")
    other = [("n01443537", (10, 100, 250))]  # another archive under the same name
    _install(monkeypatch, tiny_imagenet, "ARCHIVE", _tiny_imagenet_zip(tmp_path, other))
    images, labels, _ = tiny_imagenet.load_tiny_imagenet(tmp_path, "test")
    _check_tiny(images, labels, other)


def test_tiny_imagenet_unknown_wnid(tmp_path, monkeypatch):
    path = _tiny_imagenet_zip(tmp_path, [*VAL, ("n99999999", (0, 0, 0))])
    _install(monkeypatch, tiny_imagenet, "ARCHIVE", path)
    message = f"{path}: images of classes not in wnids.txt: ['n99999999']"
    with pytest.raises(ValueError, match=re.escape(message)):
        tiny_imagenet.load_tiny_imagenet(tmp_path, "test")
    assert not list(tmp_path.glob("*.pt*"))


# --------------------------------------------------------------------------------------------
# Fashion-MNIST (IDX)


def _idx(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    """IDX: 0, 0, the type byte, the number of dimensions, big-endian uint32 sizes, values."""
    header = bytes([0, 0, type_byte, array.ndim]) + b"".join(
        struct.pack(">I", size) for size in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def _fashion_fixture(root: Path, monkeypatch: pytest.MonkeyPatch, counts=(4, 3), labels=None):
    rng = np.random.default_rng(4)
    folder = root / "fashion-mnist"
    folder.mkdir()
    files, content_md5, expected = {}, {}, {}
    for split, n in zip(("train", "test"), counts, strict=True):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[0] = np.add.outer(np.arange(28) * 8, np.arange(28)) % 256  # [i, j] = 8i + j
        targets = rng.integers(0, 10, n if labels is None else labels).astype(np.uint8)
        expected[split] = images, targets
        remotes = []
        for real, array in zip(idx.FILES[split], (images, targets), strict=True):
            content = _idx(array)
            (folder / real.filename).write_bytes(gzip.compress(content))
            remotes.append(RemoteFile(real.filename, UNUSED_URL, md5=_md5(folder / real.filename)))
            content_md5[real.filename] = hashlib.md5(content, usedforsecurity=False).hexdigest()
        files[split] = tuple(remotes)
    monkeypatch.setattr(idx, "FILES", files)
    monkeypatch.setattr(idx, "CONTENT_MD5", content_md5)
    return expected


@pytest.mark.parametrize("split", ["train", "test"])
def test_fashion_mnist_round_trip(tmp_path, monkeypatch, split):
    written, targets = _fashion_fixture(tmp_path, monkeypatch)[split]

    images, labels = idx.load_fashion_mnist(tmp_path, split)

    assert images.dtype == torch.uint8 and images.shape == (len(written), 1, 28, 28)
    assert labels.dtype == torch.int64 and labels.tolist() == targets.tolist()
    n, _, i, j = np.indices(images.shape)  # one channel
    np.testing.assert_array_equal(images.numpy(), written[n, i, j])
    assert images[0, 0, 2, 5] == 8 * 2 + 5 and images[0, 0, 5, 2] == 8 * 5 + 2
    Dataset(images, labels, idx.CLASSES)


def test_fashion_mnist_content_checksum(tmp_path, monkeypatch):
    _fashion_fixture(tmp_path, monkeypatch)
    name = idx.FILES["test"][1].filename
    monkeypatch.setitem(idx.CONTENT_MD5, name, "0" * 32)
    with pytest.raises(ValueError, match=re.escape(f"{name}: checksum") + ".* of its content"):
        idx.load_fashion_mnist(tmp_path, "test")


def test_fashion_mnist_images_and_labels_disagree(tmp_path, monkeypatch):
    _fashion_fixture(tmp_path, monkeypatch, labels=2)
    message = "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz: images (3, 28, 28) do not"
    with pytest.raises(ValueError, match=re.escape(message)):
        idx.load_fashion_mnist(tmp_path, "test")


def test_read_idx_plain_and_gzip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "plain").write_bytes(_idx(array))
    (tmp_path / "packed.gz").write_bytes(gzip.compress(_idx(array)))
    for name in ("plain", "packed.gz"):
        tensor = idx.read_idx(tmp_path / name)
        assert tensor.dtype == torch.uint8 and tensor.shape == (2, 3, 4)
        np.testing.assert_array_equal(tensor.numpy(), array)
    labels = idx.read_idx(_write(tmp_path / "labels", _idx(np.array([7, 0, 9], np.uint8))))
    assert labels.tolist() == [7, 0, 9]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_read_idx_truncated_gzip(tmp_path):
    packed = gzip.compress(_idx(np.zeros((5, 28, 28), np.uint8)))
    path = _write(tmp_path / "images.gz", packed[: len(packed) // 2])
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a readable gzip file")):
        idx.read_idx(path)


def test_read_idx_header_disagrees_with_size(tmp_path):
    data = _idx(np.zeros((3, 28, 28), np.uint8))
    path = _write(tmp_path / "images", data[:-28])
    with pytest.raises(ValueError, match=re.escape(f"{path}: the header says shape [3, 28, 28]")):
        idx.read_idx(path)


def test_read_idx_wrong_type_byte(tmp_path):
    path = _write(tmp_path / "floats", _idx(np.zeros((2, 2), np.uint8), type_byte=0x0D))
    with pytest.raises(ValueError, match=re.escape(f"{path}: not an IDX file of unsigned bytes")):
        idx.read_idx(path)


@pytest.mark.skipif(
    not all((idx.DEBIAN_DIR / f.filename).exists() for pair in idx.FILES.values() for f in pair),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_fashion_mnist_debian_files():
    train, train_labels = idx.load_fashion_mnist(split="train")
    test, test_labels = idx.load_fashion_mnist(split="test")
    assert train.shape == (60000, 1, 28, 28) and test.shape == (10000, 1, 28, 28)
    assert train.dtype == test.dtype == torch.uint8
    assert train_labels.dtype == test_labels.dtype == torch.int64
    assert train_labels.bincount().tolist() == [6000] * 10
    assert test_labels.bincount().tolist() == [1000] * 10
    counts = torch.bincount(train.flatten(), minlength=256).numpy()  # exact and quick
    levels = np.arange(256) / 255
    mean = (counts * levels).sum() / counts.sum()
    std = np.sqrt((counts * (levels - mean) ** 2).sum() / counts.sum())
    assert mean == pytest.approx(idx.MEAN[0], abs=5e-4)
    assert std == pytest.approx(idx.STD[0], abs=5e-4)


# --------------------------------------------------------------------------------------------
# missing files


@pytest.mark.parametrize(
    ("load", "remote"),
    [
        (lambda root: cifar.load_cifar("cifar10", root), cifar.CIFAR10),
        (lambda root: cifar.load_cifar("cifar100", root, "test"), cifar.CIFAR100),
        (lambda root: cifar.load_cifar10_c("fog", 3, root), cifar.CIFAR10_C),
        (lambda root: svhn.load_svhn(root, "test"), svhn.FILES["test"]),
        (lambda root: tiny_imagenet.load_tiny_imagenet(root), tiny_imagenet.ARCHIVE),
        (lambda root: idx.load_fashion_mnist(root), idx.FILES["train"][0]),
    ],
    ids=["cifar10", "cifar100", "cifar10-c", "svhn", "tiny-imagenet", "fashion-mnist"],
)
def test_missing_file_names_the_url(tmp_path, load, remote):
    with pytest.raises(FileNotFoundError, match=re.escape(remote.url)) as error:
        load(tmp_path)
    assert str(tmp_path) in str(error.value) and remote.filename in str(error.value)


# --------------------------------------------------------------------------------------------
# MNIST-1D (generated) and scikit-learn's digits


@functools.cache
def _mnist1d(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    return generate_mnist1d(split)  # the default seed, 42


def test_mnist1d_is_seeded():
    x, y = _mnist1d("train")
    again, y_again = generate_mnist1d("train", seed=42)
    assert torch.equal(x, again) and torch.equal(y, y_again)
    other, _ = generate_mnist1d("train", seed=7)
    assert not torch.allclose(x, other)


def test_mnist1d_sizes_balance_and_scale():
    x, y = _mnist1d("train")
    x_test, y_test = _mnist1d("test")
    assert x.shape == (4000, 1, 40) and x_test.shape == (1000, 1, 40)
    assert x.dtype == x_test.dtype == torch.float32
    assert y.dtype == y_test.dtype == torch.int64
    assert (y.bincount(minlength=10) + y_test.bincount(minlength=10)).tolist() == [500] * 10
    both = torch.cat([x, x_test]).double()
    assert both.mean().item() == pytest.approx(0, abs=1e-5)
    assert both.std(correction=0).item() == pytest.approx(1, abs=1e-5)
    shapes = templates()
    assert shapes.shape == (10, 12)
    np.testing.assert_allclose(shapes[:, [0, -1]], 0, atol=1e-12)


def _digits_csv() -> Path | None:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"


@pytest.mark.skipif(_digits_csv() is None, reason="scikit-learn is not installed")
def test_digits_partition_the_csv():
    path = _digits_csv()
    assert path is not None
    with gzip.open(path, "rt") as file:
        table = np.array([[float(v) for v in line.split(",")] for line in file if line.strip()])
    assert table.shape == (1797, 65)
    rows = Counter(
        (np.rint(row[:64] * 255 / 16).astype(np.uint8).tobytes(), int(row[64])) for row in table
    )
    x, y = load_digits("train")
    x_test, y_test = load_digits("test")
    assert x.shape == (1438, 1, 8, 8) and x_test.shape == (359, 1, 8, 8)
    assert x.dtype == x_test.dtype == torch.uint8 and y.dtype == y_test.dtype == torch.int64
    assert int(torch.cat([x, x_test]).min()) == 0 and int(torch.cat([x, x_test]).max()) == 255

    def count(images, labels):
        return Counter(
            (image.numpy().tobytes(), label)
            for image, label in zip(images, labels.tolist(), strict=True)
        )

    # together exactly the CSV's rows, each once: a partition (disjoint, nothing lost)
    assert count(x, y) + count(x_test, y_test) == rows
    assert sum(rows.values()) == 1797
