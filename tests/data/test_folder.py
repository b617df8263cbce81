"""Your own images in the ImageFolder layout, read once with Pillow and cached beside them."""

import json

import numpy as np
import pytest
import torch

from focalcal.cli import main
from focalcal.data import dataset_kind, dataset_label, load_dataset

Image = pytest.importorskip("PIL.Image")  # the 'images' extra; installed with the test extra


def write_folder(root, splits, size=(12, 10), mode="RGB", seed=0):
    """Images of two classes ("cat", "dog") whose pixels encode (split, class, index)."""
    rng = np.random.default_rng(seed)
    for split, count in splits.items():
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
                pixels = rng.integers(0, 256, shape, dtype=np.uint8)
                Image.fromarray(pixels, mode).save(root / split / name / f"{i:03d}.png")
    return root


def test_a_folder_reads_as_images_with_its_splits_and_a_cache(tmp_path):
    root = write_folder(tmp_path / "pets", {"train": 20, "test": 5})
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    train, val, test = (load_dataset(str(root), split=s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (36, 4, 10)  # 40 training images, 10 % held out
    assert train.inputs.shape[1:] == (3, 10, 12) and train.classes == ("cat", "dog")
    expected = np.asarray(Image.open(root / "test" / "dog" / "004.png")).transpose(2, 0, 1).copy()
    assert test.inputs[-1].equal(torch.from_numpy(expected)) and int(test.labels[-1]) == 1
    cache = tmp_path / "pets.focalcal.npz"
    assert cache.is_file()
    stamp = cache.stat().st_mtime_ns
    load_dataset(str(root), split="test")
    assert cache.stat().st_mtime_ns == stamp  # unchanged images: the cache is read
    write_folder(root, {"test": 6}, seed=1)  # one more image per class: the cache is remade
    assert len(load_dataset(str(root), split="test")) == 12
    assert (dataset_kind(str(root)), dataset_label(str(root) + "/")) == ("images", "pets")


def test_grey_images_of_other_sizes_are_resized_and_test_is_held_out(tmp_path):
    root = write_folder(tmp_path / "g", {"train": 10}, size=(8, 8), mode="L")
    Image.fromarray(np.zeros((16, 20), np.uint8), "L").save(root / "train" / "dog" / "big.png")
    test = load_dataset(str(root), split="test")  # no test/: 10 % of train/ held out
    train, val = (load_dataset(str(root), split=s) for s in ("train", "val"))
    assert test.inputs.shape[1:] == (1, 8, 8)
    assert (len(train), len(val), len(test)) == (18, 1, 2)  # 21 images: 2 for test, 1 for val


def test_bad_folders_are_refused_naming_them(tmp_path):
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"empty/train holds no images"):
        load_dataset(str(tmp_path / "empty"))
    root = write_folder(tmp_path / "odd", {"train": 3, "test": 1})
    (root / "test" / "bird").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8), "L").save(root / "test" / "bird" / "0.png")
    with pytest.raises(ValueError, match=r"odd/test has classes not in train/: bird"):
        load_dataset(str(root))
    root = write_folder(tmp_path / "broken", {"train": 3})
    (root / "train" / "cat" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"bad\.png: not a readable image"):
        load_dataset(str(root))


def test_train_from_flags_on_a_folder(tmp_path):
    root = write_folder(tmp_path / "pets", {"train": 30, "test": 8}, size=(16, 16))
    run = tmp_path / "run"
    assert main(["train", str(run), "--dataset", str(root), "--epochs", "1", "--quiet"]) == 0
    result = json.loads((run / "result.json").read_text())
    assert result["epochs"] == 1


def test_the_size_and_channels_are_the_users_each_with_its_own_cache(tmp_path):
    root = write_folder(tmp_path / "pets", {"train": 10, "test": 2}, size=(12, 10))
    square = load_dataset(str(root), split="test", image_size=8)
    grey = load_dataset(str(root), split="test", image_size=[6, 9], channels=1)
    native = load_dataset(str(root), split="test")
    assert square.inputs.shape[1:] == (3, 8, 8) and native.inputs.shape[1:] == (3, 10, 12)
    assert grey.inputs.shape[1:] == (1, 6, 9)
    with Image.open(root / "test" / "dog" / "001.png") as image:  # Pillow's own resize: (w, h)
        expected = np.asarray(image.convert("L").resize((9, 6), Image.Resampling.BILINEAR))
    assert grey.inputs[-1, 0].equal(torch.from_numpy(expected.copy()))
    caches = sorted(p.name for p in tmp_path.glob("*.npz"))
    assert caches == ["pets.6x9-1ch.focalcal.npz", "pets.8x8.focalcal.npz", "pets.focalcal.npz"]
    with pytest.raises(ValueError, match=r"image_size must be a positive integer"):
        load_dataset(str(root), image_size=[0, 4])
    with pytest.raises(ValueError, match=r"channels must be 1 \(grey\) or 3"):
        load_dataset(str(root), channels=2)
    with pytest.raises(ValueError, match=r"takes no option colour; its options: image_size"):
        load_dataset(str(root), colour=True)
    with pytest.raises(ValueError, match=r"'digits' takes no option image_size; its options: none"):
        load_dataset("digits", image_size=8)


def test_train_resizes_a_folder_as_its_config_says(tmp_path):
    root = write_folder(tmp_path / "pets", {"train": 20, "test": 4}, size=(20, 20))
    run = tmp_path / "run"
    options = "dataset_options={image_size=12, channels=1}"
    argv = ["train", str(run), "--dataset", str(root), "--epochs", "1", "--quiet", "--set", options]
    assert main(argv) == 0
    assert (tmp_path / "pets.12x12-1ch.focalcal.npz").is_file()
    assert not (tmp_path / "pets.focalcal.npz").exists()
    assert main(["evaluate", str(run)]) == 0  # the run's own size, read back
    bad = [
        "train",
        str(tmp_path / "bad"),
        "--dataset",
        str(root),
        "--set",
        "dataset_options={size=3}",
    ]
    assert main(bad) == 2 and not (tmp_path / "bad").exists()
