"""Fashion-MNIST from its original IDX files (gzip or plain, as published or as Debian ships them).

IDX: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, each dimension
as a big-endian uint32, then the values in row-major order.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from pathlib import Path

import torch
from torch import Tensor

from focalcal.data.download import RemoteFile, data_root, fetch

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FILES = {
    "train": (
        RemoteFile("train-images-idx3-ubyte.gz", URL + "train-images-idx3-ubyte.gz",
                   md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        RemoteFile("train-labels-idx1-ubyte.gz", URL + "train-labels-idx1-ubyte.gz",
                   md5="25c81989df183df01b3e8a0aad5dffbe"),
    ),
    "test": (
        RemoteFile("t10k-images-idx3-ubyte.gz", URL + "t10k-images-idx3-ubyte.gz",
                   md5="bef4ecab320f06d8554ea6380940ec79"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", URL + "t10k-labels-idx1-ubyte.gz",
                   md5="bb300cfdad3c16e7a12a480ee83cd310"),
    ),
}  # fmt: skip
# The published MD5s of the decompressed files: Debian recompressed the .gz files (other bytes,
# same content), so the content is what is verified wherever the files come from.
CONTENT_MD5 = {
    "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")  # fmt: skip
MEAN, STD = (0.2860,), (0.3530,)  # the training set's pixel statistics


def read_idx(path: Path, md5: str | None = None) -> Tensor:
    """An IDX file of unsigned bytes (gzip-compressed or not) as a uint8 tensor of its shape.

    ``md5``: the expected checksum of the decompressed bytes (``ValueError`` if it differs).

    >>> import gzip, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.gz"
    >>> _ = path.write_bytes(gzip.compress(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, *range(6)])))
    >>> read_idx(path)
    tensor([[0, 1, 2],
            [3, 4, 5]], dtype=torch.uint8)
    """
    raw = path.read_bytes()
    try:
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (EOFError, OSError, zlib.error) as error:
        raise ValueError(f"{path}: not a readable gzip file ({error})") from error
    if md5 is not None and (digest := hashlib.md5(data, usedforsecurity=False).hexdigest()) != md5:
        raise ValueError(
            f"{path}: checksum {digest} of its content does not match the published {md5}; "
            "the file is corrupted: delete it and download it again"
        )
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    dims = data[3]
    header = 4 + 4 * dims
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    if len(data) != header + math.prod(shape):
        raise ValueError(
            f"{path}: the header says shape {shape} but the file holds {len(data) - header} values"
            " (truncated or corrupted)"
        )
    if len(data) == header:  # no values: frombuffer refuses an empty buffer
        return torch.zeros(shape, dtype=torch.uint8)
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).reshape(shape)


def _locate(remote: RemoteFile, root: str | os.PathLike[str] | None, download: bool) -> Path:
    # A copy found is verified by its content in read_idx, not by the published MD5 of the .gz
    # (which Debian's recompressed files, and decompressed ones, do not match).
    folders = [DEBIAN_DIR] if root is None else []
    folders += [data_root(root) / "fashion-mnist", data_root(root)]
    for folder in folders:
        for name in (remote.filename, remote.filename.removesuffix(".gz")):
            if (folder / name).is_file():
                return folder / name
    return fetch(remote, data_root(root) / "fashion-mnist", download=download)


def load_fashion_mnist(
    root: str | os.PathLike[str] | None = None, split: str = "train", *, download: bool = False
) -> tuple[Tensor, Tensor]:
    """Images ``(N, 1, 28, 28)`` uint8 and labels ``(N,)`` int64 of the official split.

    Each file is the first copy found, gzip-compressed or not (``train-images-idx3-ubyte.gz``
    or ``train-images-idx3-ubyte``), in /usr/share/datasets/fashion-mnist (Debian's
    ``dataset-fashion-mnist``; only when no root is given), ``root/fashion-mnist`` or ``root``
    (``root``: see :func:`~focalcal.data.download.data_root`), and is verified by the checksum
    of its content. Only when there is none does ``download=True`` fetch it into
    ``root/fashion-mnist``.
    """
    images_file, labels_file = FILES[split]
    images, labels = (
        read_idx(_locate(file, root, download), CONTENT_MD5[file.filename])
        for file in (images_file, labels_file)
    )
    if images.dim() != 3 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"{images_file.filename} and {labels_file.filename}: images {tuple(images.shape)} "
            f"do not match labels {tuple(labels.shape)}"
        )
    return images.unsqueeze(1), labels.long()
