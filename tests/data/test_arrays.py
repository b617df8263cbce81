"""Your own data as one arrays file (.npz or .pt): read, split, checked, and trained on."""

import json

import numpy as np
import pytest
import torch

from focalcal.cli import main
from focalcal.data import dataset_kind, dataset_label, load_dataset
from focalcal.engine.config import TrainConfig


def images(n, seed, channels_last=True):
    g = np.random.default_rng(seed)
    shape = (n, 8, 8, 3) if channels_last else (n, 3, 8, 8)
    return g.integers(0, 256, shape, dtype=np.uint8), g.integers(0, 4, n)


def test_images_without_a_validation_split_are_split_the_papers_way(tmp_path):
    (x, y), (xt, yt) = images(200, 0), images(50, 1)
    path = tmp_path / "mine.npz"
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)
    train, val, test = (load_dataset(str(path), split=s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (180, 20, 50)  # a seeded 10 % held out
    assert train.inputs.shape[1:] == (3, 8, 8) and train.inputs.dtype == torch.uint8
    assert test.inputs.equal(torch.from_numpy(xt).permute(0, 3, 1, 2))  # channels-last read
    assert test.labels.equal(torch.from_numpy(yt).long()) and test.classes == ("0", "1", "2", "3")
    pixels = torch.from_numpy(x).double().div(255)  # the whole training array's statistics
    assert train.mean == pytest.approx(tuple(pixels.mean(dim=(0, 1, 2)).tolist()), abs=1e-12)
    assert train.std == pytest.approx(tuple(pixels.std(dim=(0, 1, 2)).tolist()), abs=1e-12)
    assert (dataset_kind(str(path)), dataset_label(str(path))) == ("images", "mine")


def test_signals_with_their_own_validation_split_and_class_names(tmp_path):
    g = torch.Generator().manual_seed(0)
    arrays = {
        "x_train": torch.randn(40, 12, generator=g), "y_train": torch.arange(40) % 3,
        "x_val": torch.randn(10, 12, generator=g), "y_val": torch.arange(10) % 3,
        "x_test": torch.randn(15, 12, generator=g), "y_test": torch.arange(15) % 3,
    }  # fmt: skip
    path = tmp_path / "signals.pt"
    torch.save(arrays, path)
    val = load_dataset(str(path), split="val")
    assert val.inputs.equal(arrays["x_val"].unsqueeze(1)) and len(val) == 10
    assert dataset_kind(str(path)) == "signals"
    np.savez(tmp_path / "named.npz", **{k: v.numpy() for k, v in arrays.items()},
             classes=np.array(["low", "mid", "high"]))  # fmt: skip
    assert load_dataset(str(tmp_path / "named.npz"), split="test").classes == ("low", "mid", "high")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"x_test": None}, r"lacks x_test, y_test"),
        ({"x_val": np.zeros((3, 8, 8, 3), np.uint8)}, "lacks y_val"),
        ({"y_train": np.full(200, 0.5)}, "y_train: labels must be whole numbers"),
        ({"y_train": np.full(200, -1)}, "y_train: labels must be >= 0"),
        ({"y_train": np.zeros(7)}, r"y_train: labels must have shape \(200,\)"),
        ({"x_train": np.full((200, 5), np.nan)}, "x_train: holds NaN or infinite values"),
        ({"x_train": np.zeros((200, 5), np.int32)}, "uint8 images or float signals, got"),
        ({"x_test": np.zeros((50, 4, 4, 3), np.uint8)}, "the splits' inputs differ"),
    ],
)
def test_bad_arrays_are_refused_naming_the_file_and_the_array(tmp_path, change, message):
    (x, y), (xt, yt) = images(200, 0), images(50, 1)
    arrays = {"x_train": x, "y_train": y, "x_test": xt, "y_test": yt}
    for key, value in change.items():
        if value is None:
            del arrays[key], arrays["y" + key[1:]]
        else:
            arrays[key] = value
    path = tmp_path / f"bad{len(message)}.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=rf"{path}.*{message}"):
        load_dataset(str(path), split="test")


def test_train_and_reproduce_on_an_arrays_file(tmp_path):
    (x, y), (xt, yt) = images(300, 2, channels_last=False), images(60, 3, channels_last=False)
    path = tmp_path / "pets.npz"
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)
    run = tmp_path / "run"
    assert main(["train", str(run), "--dataset", str(path), "--epochs", "1", "--quiet"]) == 0
    config = TrainConfig.load(run / "config.toml")
    assert (config.dataset, config.subset, config.val_subset) == (str(path), None, None)
    out = tmp_path / "grid"
    argv = ["reproduce", "--dataset", str(path), "--losses", "ce", "--epochs", "1",
            "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    evaluation = json.loads((out / "runs" / "pets" / "small-cnn" / "ce" / "evaluation.json")
                            .read_text())  # fmt: skip
    assert evaluation["test"]["before"]["num_samples"] == 60
    assert list(evaluation["ood"]) == ["corruption:gaussian_noise:5"]  # images: noise applies
    assert main(["train", str(tmp_path / "x"), "--dataset", str(tmp_path / "no.npz")]) == 2


def write_table(path, n=200, seed=0):
    """Five features and a label column of class names, the label set by the first feature."""
    g = np.random.default_rng(seed)
    x = g.normal(size=(n, 5)) * np.array([1, 10, 100, 0.1, 1]) + np.array([0, 5, -50, 1, 2])
    names = np.array(["low", "mid", "high"])[np.digitize(x[:, 0], [-0.5, 0.5])]
    rows = [",".join(str(float(v)) for v in r) + f",{c}" for r, c in zip(x, names, strict=True)]
    path.write_text("a,b,c,d,e,Class\n" + "\n".join(rows) + "\n")


def test_a_csv_table_is_features_standardised_one_by_one(tmp_path):
    write_table(tmp_path / "table.csv")
    train, val, test = (load_dataset(str(tmp_path / "table.csv"), split=s)
                        for s in ("train", "val", "test"))  # fmt: skip
    assert (len(train), len(val), len(test)) == (162, 18, 20)  # 10 % test, then 10 % val
    assert train.inputs.shape[1:] == (5, 1) and train.classes == ("high", "low", "mid")
    assert dataset_kind(str(tmp_path / "table.csv")) == "signals"
    # the mean and std of each feature over the training part (test rows held out)
    rows = torch.cat([train.inputs, val.inputs]).squeeze(2).double()
    assert train.mean == pytest.approx(tuple(rows.mean(0).tolist()), rel=1e-6)
    assert train.std == pytest.approx(tuple(rows.std(0).tolist()), rel=1e-6)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"bad\.csv cannot be read: no label column"):
        load_dataset(str(tmp_path / "bad.csv"))


def test_train_an_mlp_on_a_table_from_flags(tmp_path):
    write_table(tmp_path / "table.csv", n=400)
    run = tmp_path / "run"
    argv = ["train", str(run), "--dataset", str(tmp_path / "table.csv"), "--model", "mlp",
            "--epochs", "20", "--set", "lr=0.05", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((run / "result.json").read_text())
    assert result["best_val_accuracy"] > 0.7  # three classes set by one feature: learned
