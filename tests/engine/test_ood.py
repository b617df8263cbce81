"""OOD sets of a run: the digits made Fashion-MNIST-sized, the held-out classes of a run's
``classes``, the default sets, the errors up front, and the FPR at 95 % TPR in the tables of
an end-to-end ``focalcal reproduce``.

Fashion-MNIST is read from its installed files (Debian's ``dataset-fashion-mnist``)."""

import json

import numpy as np
import pytest
import torch

from focalcal.cli import main
from focalcal.data import BatchLoader, load_dataset
from focalcal.engine.config import TrainConfig
from focalcal.engine.ood import check_ood, default_ood, ood_dataset
from focalcal.engine.preflight import check_fit
from focalcal.engine.runs import load_split
from focalcal.experiments.reproduce import reproduce

FASHION = TrainConfig(dataset="fashion-mnist")
FIRST_FIVE = FASHION.replace(classes=[0, 1, 2, 3, 4])
NOISE = "corruption:gaussian_noise:5"


def bilinear_matrix(size_in, size_out):
    """(size_out, size_in): half-pixel centres, edges clamped (upsampling only)."""
    source = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
    low = np.floor(source).astype(int)
    high, weight = np.minimum(low + 1, size_in - 1), source - low
    matrix = np.zeros((size_out, size_in))
    np.add.at(matrix, (np.arange(size_out), low), 1 - weight)
    np.add.at(matrix, (np.arange(size_out), high), weight)
    return matrix


# ---------------------------------------------------------------- digits against Fashion-MNIST


def test_digits_become_fashion_mnist_sized_images_on_its_pixel_scale():
    test = load_split(FASHION, "test")
    digits = ood_dataset("digits", FASHION, test)
    assert digits.inputs.dtype == test.inputs.dtype == torch.uint8
    assert tuple(digits.inputs.shape) == (359, *test.inputs.shape[1:]) == (359, 1, 28, 28)
    assert (digits.mean, digits.std) == (test.mean, test.std)
    # an independent resize: float64 separable bilinear of the 8×8 digits (0–16 counts made
    # grey levels 0–255), rounded; float32 may round an exact .5 the other way
    source = load_dataset("digits", split="test").inputs
    assert int(source.max()) == int(digits.inputs.max()) == 255
    matrix = bilinear_matrix(8, 28)
    exact = np.einsum("ij,njk,lk->nil", matrix, source[:, 0].numpy().astype(np.float64), matrix)
    expected = np.rint(exact)
    got = digits.inputs[:, 0].numpy().astype(np.float64)
    differ = got != expected
    assert np.abs(got - expected).max() <= 1
    assert np.abs(exact[differ] % 1 - 0.5).max(initial=0) < 1e-3  # only at ties
    # batches are normalised with Fashion-MNIST's constants
    batch, _ = next(iter(BatchLoader(digits, 359)))
    mean, std = test.mean[0], test.std[0]
    torch.testing.assert_close(batch, (digits.inputs.float() / 255 - mean) / std)


# ---------------------------------------------------------------- classes


def test_classes_keep_and_relabel_every_split_in_the_order_given():
    config = FASHION.replace(classes=[7, 2, 9], subset=50, val_subset=40)
    train, val, test = (load_split(config, split) for split in ("train", "val", "test"))
    names = load_dataset("fashion-mnist", split="test").classes
    assert train.classes == val.classes == test.classes == (names[7], names[2], names[9])
    for split, data, subset in (("train", train, 50), ("val", val, 40), ("test", test, None)):
        full = load_dataset("fashion-mnist", split=split)
        kept = (full.labels == 7) | (full.labels == 2) | (full.labels == 9)
        inputs, labels = full.inputs[kept][:subset], full.labels[kept][:subset]
        assert len(data) == len(labels) == (subset or 3000)  # subset counts kept samples
        assert torch.equal(data.inputs, inputs)
        assert torch.equal(data.labels, torch.tensor([-1, -1, 1, -1, -1, -1, -1, 0, -1, 2])[labels])
        assert set(data.labels.tolist()) == {0, 1, 2}


def test_a_class_index_out_of_range_is_named_before_training(tmp_path):
    config = FASHION.replace(classes=[3, 10], subset=64, epochs=1)
    message = r"classes=\[3, 10\]: class index 10 is out of range: the dataset has 10 classes"
    with pytest.raises(ValueError, match=message):
        load_split(config, "train")
    with pytest.raises(ValueError, match=message):
        check_fit(config)  # the command line's preflight
    with pytest.raises(ValueError, match=rf"run 'x': dataset 'fashion-mnist': {message}"):
        reproduce({"x": config}, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    argv = ["train", str(tmp_path / "run"), "--dataset", "fashion-mnist", "--epochs", "1",
            "--set", "classes=[3,10]", "--quiet"]  # fmt: skip
    assert main(argv) == 2 and not (tmp_path / "run").exists()


# ---------------------------------------------------------------- heldout


def test_heldout_is_exactly_the_test_images_of_the_dropped_classes():
    test = load_split(FIRST_FIVE, "test")
    heldout = ood_dataset("heldout", FIRST_FIVE, test)
    full = load_dataset("fashion-mnist", split="test")
    dropped = full.labels >= 5
    assert len(heldout) == int(dropped.sum()) == 5000
    assert torch.equal(heldout.inputs, full.inputs[dropped])
    assert heldout.classes == full.classes[5:]
    assert (heldout.mean, heldout.std) == (test.mean, test.std)
    # the corrupted test split of a run with classes is its own five classes
    assert len(ood_dataset(NOISE, FIRST_FIVE, test)) == len(test) == 5000


def test_heldout_needs_a_run_that_leaves_classes_out(tmp_path):
    with pytest.raises(ValueError, match=r"OOD set 'heldout' .* this run keeps every class"):
        check_ood("heldout", FASHION)
    every = FASHION.replace(classes=list(range(10)))
    with pytest.raises(ValueError, match=r"classes \[0, 1, .*, 9\] are all 10 classes"):
        check_ood("heldout", every)
    run = FASHION.replace(subset=64, epochs=1)
    with pytest.raises(ValueError, match="run 'x': OOD set 'heldout' scores the classes"):
        reproduce({"x": run}, tmp_path / "out", ood=["heldout"], progress=False)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- defaults and end to end


def test_default_ood_sets():
    digits, mnist1d = TrainConfig(dataset="digits"), TrainConfig(dataset="mnist1d")
    assert default_ood([FASHION, FIRST_FIVE]) == [NOISE, "digits"]
    assert default_ood([digits]) == default_ood([FASHION, digits]) == [NOISE]
    assert default_ood([mnist1d]) == default_ood([FASHION, mnist1d]) == []


def test_reproduce_scores_heldout_and_digits_with_auroc_and_fpr(tmp_path):
    out = tmp_path / "grid"
    argv = ["reproduce", "--dataset", "fashion-mnist", "--subset", "256", "--epochs", "1",
            "--losses", "ce", "--set", "val_subset=128", "--set", "analysis_samples=0",
            "--set", "classes=[0,1,2,3,4]", "--ood", "heldout", "digits", "--out", str(out),
            "--quiet"]  # fmt: skip
    assert main(argv) == 0
    run = out / "runs" / "fashion-mnist" / "small-cnn" / "ce"
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["test"]["before"]["num_samples"] == 5000
    assert {spec: entry["num_samples"] for spec, entry in evaluation["ood"].items()} == {
        "heldout": 5000,
        "digits": 359,
    }
    for entry in evaluation["ood"].values():
        for score in ("entropy", "confidence"):
            for values in (entry[score], entry["fpr95"][score]):
                assert set(values) == {"before", "after"}
                assert all(0.0 <= value <= 1.0 for value in values.values())
    tables = (out / "tables.md").read_text()
    for spec in ("heldout", "digits"):
        for score in ("entropy", "max confidence"):
            assert f"### OOD AUROC (%), {spec}, {score}, before → after" in tables
            assert f"### OOD FPR at 95 % TPR (%), {spec}, {score}, before → after" in tables
    keys = [table["key"] for table in json.loads((out / "tables.json").read_text())["tables"]]
    assert {"ood-heldout", "fpr95-heldout-confidence", "ood-digits", "fpr95-digits"} <= set(keys)
    assert r"\label{tab:fpr95-digits}" in (out / "tables.tex").read_text()
