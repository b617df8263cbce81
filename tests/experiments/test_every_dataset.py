"""Every registered dataset trains with its natural model for one epoch, from its published file
format (the fixtures of tests/data, written in those formats) or its generator."""

import numpy as np
import pytest

from focalcal.data import cifar, dataset_names, newsgroups, sst
from focalcal.engine.config import TrainConfig
from focalcal.engine.preflight import check_fit
from focalcal.engine.train import train
from tests.data import test_tiny_imagenet
from tests.data.fixtures import install
from tests.data.test_cifar import _cifar_archive, _cifar_batches, _use_cifar
from tests.data.test_svhn import _svhn_file, _use_svhn
from tests.data.test_text import POSTS, write_newsgroups, write_sst

NATURAL = {  # dataset -> the model the paper (or this project) trains on it
    "fashion-mnist": "small-cnn",
    "cifar10": "resnet50",
    "cifar100": "resnet50",
    "svhn": "resnet50",
    "tiny-imagenet": "resnet50-tiny",
    "mnist1d": "cnn1d",
    "digits": "small-cnn",
    "20newsgroups": "textcnn",
    "sst": "tree-lstm",
}


def write_files(name, root, monkeypatch):
    """Write ``name``'s published files, small, under ``root`` (nothing for the others)."""
    if name in ("cifar10", "cifar100"):
        batches, _ = _cifar_batches(name)
        if name == "cifar100":  # 4 training images: three times as many, for a validation one
            train = batches["train"]
            for key in ("filenames", "fine_labels", "coarse_labels"):
                train[key] = [*train[key]] * 3
            train["data"] = np.concatenate([train["data"]] * 3)
        _use_cifar(monkeypatch, name, _cifar_archive(root, name, batches))
    elif name == "svhn":
        rng = np.random.default_rng(0)
        for split, n in (("train", 20), ("test", 5)):
            x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # (H, W, C, N) as published
            y = rng.integers(1, 11, (n, 1)).astype(np.uint8)
            _use_svhn(monkeypatch, split, _svhn_file(root, split, x, y))
    elif name == "tiny-imagenet":  # 4 training images a class: a validation split of one
        colours = [(40 * k, 255 - 40 * k, 90) for k in range(4)]
        monkeypatch.setattr(test_tiny_imagenet, "TRAIN", dict.fromkeys(test_tiny_imagenet.WNIDS,
                                                                       colours))  # fmt: skip
        path = test_tiny_imagenet._tiny_imagenet_zip(root)
        install(monkeypatch, test_tiny_imagenet.tiny_imagenet, "ARCHIVE", path)
    elif name == "20newsgroups":
        posts = {part: {group: bodies * 3 for group, bodies in groups.items()}
                 for part, groups in POSTS.items()}  # fmt: skip
        monkeypatch.setattr(newsgroups, "ARCHIVE", write_newsgroups(root, posts))
    elif name == "sst":
        monkeypatch.setattr(sst, "ARCHIVE", write_sst(root))


def test_every_trainable_dataset_has_a_natural_model_here():
    # the docs' examples register "docs-..." datasets for themselves
    built_in = {name for name in dataset_names() if not name.startswith("docs-")}
    assert set(NATURAL) == built_in - {"cifar10-c"}  # a test set only
    assert cifar  # the CIFAR fixtures patch this module's files


@pytest.mark.parametrize(("name", "model"), NATURAL.items(), ids=NATURAL.keys())
def test_each_dataset_trains_with_its_natural_model_for_one_epoch(
    tmp_path, monkeypatch, name, model
):
    write_files(name, tmp_path, monkeypatch)
    small = {"fashion-mnist": 256, "mnist1d": 256, "digits": 256}.get(name)
    root = None if small else str(tmp_path)  # those three: Debian's files, or generated
    config = TrainConfig(dataset=name, root=root, subset=small, model=model, epochs=1,
                         batch_size=4, analysis_samples=0)  # fmt: skip
    check_fit(config)
    result = train(config, tmp_path / "run", progress=False)
    assert result["epochs"] == 1 and 0.0 <= result["final_val_accuracy"] <= 1.0
