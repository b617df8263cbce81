"""CIFAR-10/100 (Python 2 pickles in a tar.gz) and CIFAR-10-C (.npy files in a tar) against
fixtures written in exactly the published formats; every pixel checked by the format's index
arithmetic."""

from __future__ import annotations

import os
import pickle
import pickletools
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from focalcal.data import cifar
from focalcal.data.dataset import Dataset
from tests.data.fixtures import install, npy, planes, tar


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
            rows[0] = np.concatenate([plane.ravel() for plane in planes()])
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
    return tar(root / filename, members)


def _use_cifar(monkeypatch: pytest.MonkeyPatch, name: str, path: Path) -> None:
    install(monkeypatch, cifar, "CIFAR10" if name == "cifar10" else "CIFAR100", path)


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
        np.testing.assert_array_equal(images[0].numpy(), planes())  # R = row, G = column + 64
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
    arrays["fog"][0] = planes().transpose(1, 2, 0)  # HWC: [i, j] = (i, j + 64, ...)
    arrays["labels"] = np.tile(np.array([3, 8, 1], np.uint8), 5)  # as published: uint8
    tar(root / "CIFAR-10-C.tar", {f"CIFAR-10-C/{k}.npy": npy(v) for k, v in arrays.items()})
    return arrays


@pytest.fixture
def cifar10_c(tmp_path, monkeypatch):
    arrays = _cifar10_c_archive(tmp_path)
    install(monkeypatch, cifar, "CIFAR10_C", tmp_path / "CIFAR-10-C.tar")
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
        np.testing.assert_array_equal(cifar.load_cifar10_c("fog", 1, tmp_path)[0][0], planes())


def test_cifar10_c_unknown_corruption(tmp_path, cifar10_c):
    with pytest.raises(ValueError, match="unknown CIFAR-10-C corruption 'snowfall'"):
        cifar.load_cifar10_c("snowfall", 1, tmp_path)


@pytest.mark.parametrize("severity", [0, 6])
def test_cifar10_c_severity_out_of_range(tmp_path, cifar10_c, severity):
    with pytest.raises(ValueError, match=f"severity must be 1, 2, 3, 4 or 5, got {severity}"):
        cifar.load_cifar10_c("fog", severity, tmp_path)
