"""Every downloaded format: a missing file is an error naming its URL and where to put it."""

from __future__ import annotations

import re

import pytest

from focalcal.data import cifar, idx, svhn, tiny_imagenet

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
