"""Your own images in the ImageFolder layout: ``ROOT/train/CLASS/*.png`` (or ``.jpg``, ``.jpeg``,
``.bmp``, ``.gif``, ``.webp``), and optionally ``ROOT/val/CLASS/...`` and ``ROOT/test/CLASS/...``.

The folder is read once with Pillow into uint8 arrays and cached, atomically, as the arrays
file ``ROOT.focalcal.npz`` beside it (:mod:`focalcal.data.arrays` reads it); the cache is used
while no image was added, removed or changed. Every image is converted to RGB if any is in
colour (grey otherwise) and resized (bilinear) to the size of the first training image, in
sorted order, unless the reader's options say otherwise: ``image_size`` (``32``, or
``[height, width]``) and ``channels`` (``1``: grey, ``3``: RGB), as in
``focalcal train DIR --dataset ./pets --set 'dataset_options={image_size=32, channels=3}'``;
each setting has its own cache (``ROOT.32x32-3ch.focalcal.npz``).

The classes are the sorted names of ``train/``'s subfolders; ``val/`` and
``test/`` may hold only some of them. Without ``test/`` a seeded 10 % of ``train/`` is held
out as the test split; without ``val/``, the paper's seeded 10 % of the rest.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from focalcal._io import atomic_write
from focalcal.data.splits import train_test_indices

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def is_image_folder(name: str) -> bool:
    """Whether a dataset name is a folder with a ``train/`` subfolder."""
    return (Path(name) / "train").is_dir()


def has_validation(root: str) -> bool:
    """Whether the image folder ``root`` has images in ``val/``."""
    return bool(_images(Path(root) / "val"))


def cached_arrays(
    root: str, image_size: int | Sequence[int] | None = None, channels: int | None = None
) -> str:
    """The arrays file of the image folder ``root`` (images resized to ``image_size``, an
    integer or (height, width), and made ``channels`` 1 or 3; ``None``: as the module says),
    made (or remade) where it is missing or stale. ``ValueError`` naming the file or folder
    for anything unreadable, or naming the option for a bad size or channel count."""
    size = _size(image_size)
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    folder = Path(root)
    files = {split: _images(folder / split) for split in ("train", "val", "test")}
    if not files["train"]:
        raise ValueError(f"{folder / 'train'} holds no images in class subfolders ({EXTENSIONS})")
    setting = (f"{size[0]}x{size[1]}" if size else "") + (f"-{channels}ch" if channels else "")
    digest = hashlib.sha256(f"{setting}\n".encode())
    for split, found in files.items():
        for path, _ in found:
            stat = path.stat()
            digest.update(
                f"{split}/{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode()
            )
    cache = folder.parent / ".".join(
        filter(None, (folder.name, setting.strip("-"), "focalcal.npz"))
    )
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as stored:
            if "source" in stored.files and str(stored["source"]) == digest.hexdigest():
                return str(cache)
    arrays = _read(folder, files, size, channels)
    arrays["source"] = np.array(digest.hexdigest())
    buffer = io.BytesIO()
    contents: dict[str, Any] = arrays
    np.savez(buffer, **contents)
    atomic_write(cache, lambda file: file.write(buffer.getvalue()))
    return str(cache)


def _images(split: Path) -> list[tuple[Path, str]]:
    """The (image, class name) pairs of one split folder, sorted; none where it is absent."""
    if not split.is_dir():
        return []
    return [
        (path, directory.name)
        for directory in sorted(p for p in split.iterdir() if p.is_dir())
        for path in sorted(directory.iterdir())
        if path.suffix.lower() in EXTENSIONS
    ]


def _size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``image_size`` as (height, width); ``ValueError`` naming it unless positive integers."""
    if image_size is None:
        return None
    size = [image_size] * 2 if isinstance(image_size, int) else list(image_size)
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                 for v in size):  # fmt: skip
        raise ValueError(
            f"image_size must be a positive integer or [height, width], got {image_size!r}"
        )
    return size[0], size[1]


def _read(
    folder: Path,
    files: dict[str, list[tuple[Path, str]]],
    size: tuple[int, int] | None,
    channels: int | None,
) -> dict[str, np.ndarray]:
    try:
        from PIL import Image
    except ImportError:
        raise ValueError("image folders need Pillow: pip install 'focalcal[images]'") from None
    classes = sorted({name for _, name in files["train"]})
    index = {name: k for k, name in enumerate(classes)}
    if size is None:
        with Image.open(files["train"][0][0]) as first:
            width, height = first.size
    else:
        height, width = size
    opened: dict[str, list[Any]] = {}
    colour = False
    for split, found in files.items():
        unknown = sorted({name for _, name in found} - set(index))
        if unknown:
            raise ValueError(f"{folder / split} has classes not in train/: {', '.join(unknown)}")
        images = []
        for path, _ in found:
            try:
                with Image.open(path) as image:
                    image.load()
                    colour |= image.mode not in ("L", "LA", "1", "I", "I;16", "F")
                    images.append(image.copy())
            except OSError as error:
                raise ValueError(f"{path}: not a readable image ({error})") from None
        opened[split] = images
    colour = colour if channels is None else channels == 3
    mode = "RGB" if colour else "L"
    arrays: dict[str, np.ndarray] = {"classes": np.array(classes)}
    for split, found in files.items():
        if not found:
            continue
        pixels = [
            np.asarray(image.convert(mode).resize((width, height), Image.Resampling.BILINEAR))
            for image in opened[split]
        ]
        x = np.stack(pixels).astype(np.uint8)
        arrays[f"x_{split}"] = x if colour else x[:, None]
        arrays[f"y_{split}"] = np.array([index[name] for _, name in found], dtype=np.int64)
    if "x_test" not in arrays:  # hold out a seeded 10 % of train/ as the test split
        keep, held = train_test_indices(len(arrays["y_train"]))
        for axis in ("x", "y"):
            whole = arrays[f"{axis}_train"]
            arrays[f"{axis}_test"] = whole[held.numpy()]
            arrays[f"{axis}_train"] = whole[keep.numpy()]
    if colour:  # (N, H, W, 3) to (N, 3, H, W)
        for split in ("train", "val", "test"):
            if f"x_{split}" in arrays:
                arrays[f"x_{split}"] = np.ascontiguousarray(
                    arrays[f"x_{split}"].transpose(0, 3, 1, 2)
                )
    return arrays
