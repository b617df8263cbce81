"""load_dataset: names, the seeded split, subsets, corruption, errors (on the real Debian files)."""

import numpy as np
import pytest
import torch

from focalcal.data import registry
from focalcal.data.dataset import Dataset
from focalcal.data.registry import DatasetEntry, dataset_names, load_dataset
from focalcal.data.splits import train_validation_indices


def paper_code_split(size, fraction, seed):
    """The paper's code: np.random.seed, shuffle a list of indices, hold out the first 10 %."""
    state = np.random.get_state()
    try:
        indices = list(range(size))
        np.random.seed(seed)
        np.random.shuffle(indices)
    finally:
        np.random.set_state(state)
    held_out = int(np.floor(fraction * size))
    return indices[held_out:], indices[:held_out]


@pytest.mark.parametrize(("size", "seed"), [(50_000, 1), (60_000, 1), (1_797, 7)])
def test_split_is_the_paper_codes_shuffle_and_hold_out(size, seed):
    train, validation = train_validation_indices(size, 0.1, seed)
    expected_train, expected_validation = paper_code_split(size, 0.1, seed)
    assert train.tolist() == expected_train and validation.tolist() == expected_validation


def test_split_fraction_is_checked():
    with pytest.raises(ValueError, match="fraction"):
        train_validation_indices(10, 1.0)


def test_fashion_mnist_train_and_val_partition_the_official_training_set():
    train = load_dataset("fashion-mnist", split="train")
    validation = load_dataset("fashion-mnist", split="val")
    test = load_dataset("fashion-mnist", split="test")
    assert (len(train), len(validation), len(test)) == (54_000, 6_000, 10_000)
    assert train.inputs.shape[1:] == (1, 28, 28) and train.inputs.dtype == torch.uint8
    assert train.classes[0] == "T-shirt/top" and train.mean == (0.2860,)
    full = torch.cat([train.inputs, validation.inputs]).flatten(1)
    official, _ = registry.idx.load_fashion_mnist(split="train")

    # the same 60 000 images, each once: compare sorted row checksums
    def keys(x):
        return (x.long() * torch.arange(1, 785)).sum(1).sort().values

    assert torch.equal(keys(full), keys(official.flatten(1)))
    again = load_dataset("fashion-mnist", split="val")
    assert torch.equal(again.labels, validation.labels)
    other = load_dataset("fashion-mnist", split="val", seed=2)
    assert not torch.equal(other.labels, validation.labels)


def test_subset_takes_the_first_samples_of_the_split():
    validation = load_dataset("mnist1d", split="val")
    part = load_dataset("mnist1d", split="val", subset=50)
    assert torch.equal(part.inputs, validation.inputs[:50])
    for bad in (0, 401):
        with pytest.raises(ValueError, match=r"subset must lie in \[1, 400\]"):
            load_dataset("mnist1d", split="val", subset=bad)


def test_corruption_is_applied_to_the_images_and_seeded():
    clean = load_dataset("digits", split="test")
    noisy = load_dataset("digits", split="test", corruption="gaussian_noise", severity=5)
    assert noisy.inputs.shape == clean.inputs.shape and noisy.inputs.dtype == torch.uint8
    assert torch.equal(noisy.labels, clean.labels)
    assert (noisy.inputs.float() - clean.inputs.float()).abs().mean() > 5
    again = load_dataset("digits", split="test", corruption="gaussian_noise", severity=5)
    assert torch.equal(again.inputs, noisy.inputs)


def test_official_validation_split_is_read_not_carved(monkeypatch):
    calls = []

    def read(root, split, download):
        calls.append(split)
        return Dataset(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(4, dtype=torch.long),
                       ("a",))  # fmt: skip

    monkeypatch.setitem(registry.DATASETS, "toy", DatasetEntry(read, "toy", True))
    assert len(load_dataset("toy", split="val")) == 4 and calls == ["val"]


def test_names_and_errors():
    assert {"fashion-mnist", "cifar10", "cifar100", "svhn", "tiny-imagenet", "mnist1d", "digits",
            "20newsgroups", "sst", "cifar10-c"} <= set(dataset_names())  # fmt: skip
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar11'.*cifar10"):
        load_dataset("cifar11")
    with pytest.raises(ValueError, match="split must be one of"):
        load_dataset("mnist1d", split="validation")
    with pytest.raises(ValueError, match="only a test split"):
        load_dataset("cifar10-c", split="train")
    with pytest.raises(FileNotFoundError, match=r"cifar-10-python\.tar\.gz"):
        load_dataset("cifar10", root="/nonexistent-focalcal-root")


def test_labels_out_of_range_are_refused():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        Dataset(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 2]), ("a", "b"))


def test_repeated_loads_share_one_read_but_never_the_tensors(monkeypatch):
    calls = []

    def read(root, split, download):
        calls.append(split)
        images = torch.zeros(10, 1, 2, 2, dtype=torch.uint8)
        return Dataset(images, torch.zeros(10, dtype=torch.long), ("a",))

    monkeypatch.setitem(registry.DATASETS, "counted", DatasetEntry(read, "counted"))
    registry._read.cache_clear()
    first = load_dataset("counted", split="test")
    first.inputs.add_(1)  # a caller mutating its copy
    second = load_dataset("counted", split="test")
    load_dataset("counted", split="train"), load_dataset("counted", split="val")
    assert calls == ["test", "train"]
    assert int(second.inputs.max()) == 0
    registry._read.cache_clear()


def test_a_registered_dataset_trains_from_the_command_line(tmp_path, monkeypatch):
    from focalcal.cli import main
    from focalcal.data import Dataset, dataset_kind, register_dataset

    monkeypatch.setattr(registry, "DATASETS", dict(registry.DATASETS))  # undone afterwards

    def read(split):
        g = torch.Generator().manual_seed({"train": 0, "test": 1}[split])
        x = torch.randn(300, 4, 1, generator=g)
        return Dataset(x, (x[:, 0, 0] > 0).long(), ("neg", "pos"), (0.0,) * 4, (1.0,) * 4)

    register_dataset("test-blobs", read, kind="signals", description="two blobs")
    assert (
        dataset_kind("test-blobs") == "signals"
        and len(load_dataset("test-blobs", split="val")) == 30
    )
    run = tmp_path / "run"
    argv = ["train", str(run), "--dataset", "test-blobs", "--model", "mlp", "--epochs", "2",
            "--quiet"]  # fmt: skip
    assert main(argv) == 0
    with pytest.raises(ValueError, match="a dataset named 'test-blobs' is already registered"):
        register_dataset("test-blobs", read)
    with pytest.raises(ValueError, match="without ':' or a file suffix"):
        register_dataset("mine.npz", read)
    with pytest.raises(ValueError, match="kind must be one of"):
        register_dataset("test-other", read, kind="audio")
