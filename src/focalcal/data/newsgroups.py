"""20 Newsgroups, "bydate" version: 11 314 training and 7 532 test posts in 20 groups, read
straight from the published ``20news-bydate.tar.gz`` (members ``20news-bydate-train/<group>/<id>``
and ``20news-bydate-test/<group>/<id>``, Latin-1 text)."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import torch

from focalcal.data.dataset import Dataset
from focalcal.data.download import RemoteFile, fetch
from focalcal.data.text import build_vocabulary, encode, split_member, tokenize

# The archive scikit-learn fetches (sklearn/datasets/_twenty_newsgroups.py): Jason Rennie's
# 20news-bydate.tar.gz, mirrored on figshare with its SHA-256.
ARCHIVE = RemoteFile(
    "20news-bydate.tar.gz",
    url="https://ndownloader.figshare.com/files/5975967",
    sha256="8f1b2514ca22a5ade8fbb9cfa5727df95fa587f4c87b786e15c759fa66d95610",
)
PARTS = {"train": "20news-bydate-train", "test": "20news-bydate-test"}
# The paper's code keeps 1000 tokens per post (MAX_SEQUENCE_LENGTH); most posts are shorter.
MAX_LENGTH = 1000


def load_20newsgroups(
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    download: bool = False,
    vocabulary_size: int | None = 20000,
    max_length: int = MAX_LENGTH,
) -> Dataset:
    """One split (``"train"`` or ``"test"``) of 20 Newsgroups as token ids ``(N, max_length)``.

    Each post loses its header (everything up to the first blank line, as in the paper's code),
    is split into lower-case words by :func:`~focalcal.data.text.tokenize`, and keeps its first
    ``max_length`` words, padded with 0. The vocabulary (``vocabulary_size`` entries, ``<pad>``
    and ``<unk>`` included) comes from the training posts alone, so both splits share the ids.
    ``classes`` are the group names, sorted. Posts are ordered by group, then by file name.

    ``root``, ``download``: where the archive lives and whether to fetch it, as in
    :func:`~focalcal.data.download.fetch`.
    """
    part = split_member(split, PARTS)
    posts = _read_posts(fetch(ARCHIVE, root, download=download), {PARTS["train"], part})
    train = posts[PARTS["train"]]
    classes = tuple(sorted({group for group, _ in train}))
    vocabulary = build_vocabulary((tokens for _, tokens in train), vocabulary_size)
    label = {group: i for i, group in enumerate(classes)}
    unknown = {group for group, _ in posts[part]} - label.keys()
    if unknown:
        raise ValueError(f"{part} has groups the training part lacks: {sorted(unknown)}")
    return Dataset(
        inputs=encode([tokens for _, tokens in posts[part]], vocabulary, max_length),
        labels=torch.tensor([label[group] for group, _ in posts[part]], dtype=torch.int64),
        classes=classes,
        vocabulary=vocabulary,
    )


def _read_posts(path: Path, parts: set[str]) -> dict[str, list[tuple[str, list[str]]]]:
    """``{part: [(group, tokens), ...]}`` for the ``parts`` (folders) asked for, ordered by group
    and file name."""
    found: dict[str, list[tuple[str, str, list[str]]]] = {part: [] for part in parts}
    with tarfile.open(path, "r:gz") as archive:
        for member in archive:
            part, _, rest = member.name.partition("/")
            group, _, name = rest.partition("/")
            if member.isfile() and part in found and group and name and "/" not in name:
                file = archive.extractfile(member)
                assert file is not None  # a regular file always has contents
                text = file.read().decode("latin-1")
                found[part].append((group, name, tokenize(_body(text))))
    for part, entries in found.items():
        if not entries:
            raise ValueError(f"{path}: no posts under {part}/")
    return {
        part: [(group, tokens) for group, _, tokens in sorted(entries, key=lambda e: e[:2])]
        for part, entries in found.items()
    }


def _body(post: str) -> str:
    """The post without its header: the text after the first blank line, if there is one."""
    _, blank, body = post.partition("\n\n")
    return body if blank else post
