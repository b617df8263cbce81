"""Stanford Sentiment Treebank, binary task, read straight from the published
``trainDevTestTrees_PTB.zip`` (``trees/train.txt``, ``dev.txt``, ``test.txt``: one binarised
parse tree per line in PTB bracket notation, every node labelled 0-4, e.g.
``(3 (2 It) (4 (2 's) (3 (2 a) (3 lark))))``).

A split is one ``int64`` tensor ``(N, M, 3)`` of trees. Tree ``n`` lists its nodes in post-order
(left subtree, right subtree, node), so children come before their parent and the root is the
last node; ``M`` is the split's largest tree. Row ``inputs[n, j]`` is
``(word id, -1, -1)`` for a leaf, ``(-1, left, right)`` for an internal node (the indices of its
children within the tree), and ``(-1, -1, -1)`` for padding after the root.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Sequence

import torch
from torch import Tensor

from focalcal.data.dataset import Dataset
from focalcal.data.download import RemoteFile, fetch
from focalcal.data.text import UNK, build_vocabulary, split_member, vocabulary_index

# The MD5 torchtext publishes for this archive (torchtext/datasets/sst.py).
ARCHIVE = RemoteFile(
    "trainDevTestTrees_PTB.zip",
    url="https://nlp.stanford.edu/sentiment/trainDevTestTrees_PTB.zip",
    md5="5c3b23ce88089053fd3efeb4a34f614d",
)
MEMBERS = {"train": "trees/train.txt", "val": "trees/dev.txt", "test": "trees/test.txt"}
CLASSES = ("negative", "positive")
# Sentiment of the root: 0-1 negative, 3-4 positive; 2 (neutral) is dropped.
BINARY_LABEL = {0: 0, 1: 0, 3: 1, 4: 1}
NO_NODE = -1

# A node: (word, left child, right child), the word None for an internal node.
Node = tuple[str | None, int, int]
_TOKEN = re.compile(r"[()]|[^\s()]+")


def load_sst(
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    download: bool = False,
    vocabulary_size: int | None = None,
    lowercase: bool = False,
) -> Dataset:
    """One split (``"train"``, ``"val"`` = the treebank's dev set, or ``"test"``) of binary SST
    as trees ``(N, M, 3)`` (see the module's docstring); labels 0 negative, 1 positive, from the
    root's sentiment, sentences with a neutral root dropped.

    Words are the trees' leaves, in the treebank's own tokenisation and case (the paper's
    Tree-LSTM used cased GloVe vectors); ``lowercase`` lower-cases them, for uncased vectors.
    The vocabulary comes from every tree of the training file, neutral ones included:
    ``vocabulary_size`` entries, ``<pad>`` and ``<unk>`` included, ``None`` for every word.

    ``root``, ``download``: where the archive lives and whether to fetch it, as in
    :func:`~focalcal.data.download.fetch`.
    """
    member = split_member(split, MEMBERS)
    path = fetch(ARCHIVE, root, download=download)
    with zipfile.ZipFile(path) as archive:
        train = _read_trees(archive, MEMBERS["train"], lowercase)
        trees = train if member == MEMBERS["train"] else _read_trees(archive, member, lowercase)
    vocabulary = build_vocabulary(
        ([word for word, _, _ in nodes if word is not None] for _, nodes in train),
        vocabulary_size,
    )
    kept = [(BINARY_LABEL[label], nodes) for label, nodes in trees if label in BINARY_LABEL]
    return Dataset(
        inputs=encode_trees([nodes for _, nodes in kept], vocabulary),
        labels=torch.tensor([label for label, _ in kept], dtype=torch.int64),
        classes=CLASSES,
        vocabulary=vocabulary,
    )


def _read_trees(
    archive: zipfile.ZipFile, member: str, lowercase: bool
) -> list[tuple[int, list[Node]]]:
    text = archive.read(member).decode("utf-8")
    where = f"{archive.filename}:{member}"
    return [
        parse_tree(line.lower() if lowercase else line, f"{where}, line {number}")
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


def parse_tree(line: str, where: str = "tree") -> tuple[int, list[Node]]:
    """The root's label and the nodes of a binary PTB tree, in post-order (root last).

    A malformed tree (unbalanced brackets, a label outside 0-4, a node with other than one word
    or two children, text after the root) is a ``ValueError`` whose message starts with
    ``where``.

    Example:
        >>> parse_tree("(3 (2 It) (4 (2 's) (3 fun)))")
        (3, [('It', -1, -1), ("'s", -1, -1), ('fun', -1, -1), (None, 1, 2), (None, 0, 3)])
    """
    tokens = _TOKEN.findall(line)
    nodes: list[Node] = []
    open_nodes: list[tuple[int, list[str], list[int]]] = []  # (label, words, children)
    root_label = None
    position = 0
    while position < len(tokens):
        token = tokens[position]
        position += 1
        if root_label is not None:
            raise ValueError(f"{where}: text after the root: {token!r}")
        if token == "(":
            label = tokens[position] if position < len(tokens) else ""
            if label not in ("0", "1", "2", "3", "4"):
                raise ValueError(f"{where}: expected a label 0-4 after '(', got {label!r}")
            open_nodes.append((int(label), [], []))
            position += 1
        elif not open_nodes:
            raise ValueError(f"{where}: expected '(', got {token!r}")
        elif token == ")":
            label, words, children = open_nodes.pop()
            if len(words) == 1 and not children:
                nodes.append((words[0], NO_NODE, NO_NODE))
            elif len(children) == 2 and not words:
                nodes.append((None, children[0], children[1]))
            else:
                raise ValueError(
                    f"{where}: a node needs one word or two children, got {len(words)} word(s) "
                    f"and {len(children)} child(ren)"
                )
            if open_nodes:
                open_nodes[-1][2].append(len(nodes) - 1)
            else:
                root_label = label
        else:
            open_nodes[-1][1].append(token)
    if root_label is None:
        raise ValueError(f"{where}: unbalanced brackets")
    return root_label, nodes


def encode_trees(trees: Sequence[Sequence[Node]], vocabulary: Sequence[str]) -> Tensor:
    """Trees as one ``int64`` tensor ``(N, M, 3)``, ``M`` the largest tree's node count: row
    ``(word id, -1, -1)`` for a leaf (words outside ``vocabulary`` as ``<unk>``),
    ``(-1, left, right)`` for an internal node, ``(-1, -1, -1)`` for padding.

    Example:
        >>> _, nodes = parse_tree("(3 (2 It) (4 (2 's) (3 fun)))")
        >>> encode_trees([nodes, [("fun", -1, -1)]], ("<pad>", "<unk>", "It", "fun"))
        tensor([[[ 2, -1, -1],
                 [ 1, -1, -1],
                 [ 3, -1, -1],
                 [-1,  1,  2],
                 [-1,  0,  3]],
        <BLANKLINE>
                [[ 3, -1, -1],
                 [-1, -1, -1],
                 [-1, -1, -1],
                 [-1, -1, -1],
                 [-1, -1, -1]]])
    """
    index = vocabulary_index(vocabulary)
    size = max((len(nodes) for nodes in trees), default=0)
    encoded = torch.full((len(trees), size, 3), NO_NODE, dtype=torch.int64)
    for rows, nodes in zip(encoded, trees, strict=True):
        rows[: len(nodes)] = torch.tensor(
            [
                (NO_NODE if word is None else index.get(word, UNK), left, right)
                for word, left, right in nodes
            ],
            dtype=torch.int64,
        ).view(-1, 3)
    return encoded
