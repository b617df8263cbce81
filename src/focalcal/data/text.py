"""Text shared by the text datasets: tokens, a vocabulary, token ids, GloVe vectors.

- :func:`tokenize` — lower-cased words from raw text.
- :func:`build_vocabulary` — the most frequent words, ids 0 and 1 reserved for padding and the
  unknown word.
- :func:`encode` — documents as one padded ``(N, L)`` tensor of token ids.
- :func:`load_glove` — an embedding matrix for a vocabulary from a GloVe text file.
- :func:`split_member` — the archive member that holds a split, or a clear error.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

PAD, UNK = 0, 1
PAD_TOKEN, UNK_TOKEN = "<pad>", "<unk>"

# Runs of letters and digits, joined by apostrophes ("don't", "o'neil"); punctuation, underscores
# and whitespace separate tokens and are dropped (Keras' Tokenizer, which the paper used, drops
# punctuation too).
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokenize(text: str) -> list[str]:
    """The words of ``text``, lower-cased.

    A word is a maximal run of letters and digits, possibly joined by apostrophes; everything else
    (punctuation, underscores, whitespace) separates words and is dropped.

    Example:
        >>> tokenize("Re: Don't buy the 486DX_2, it's *slow*!")
        ['re', "don't", 'buy', 'the', '486dx', '2', "it's", 'slow']
    """
    return _WORD.findall(text.lower())


def build_vocabulary(
    token_lists: Iterable[Sequence[str]], size: int | None = 20000
) -> tuple[str, ...]:
    """The vocabulary of ``token_lists``: ``<pad>``, ``<unk>``, then the most frequent words.

    ``size`` counts every entry, the two reserved ones included, so an embedding table for the
    vocabulary has exactly ``size`` rows; ``None`` keeps every word. Words are ordered by
    decreasing count, ties alphabetically (by code point), so the result does not depend on the
    order of the documents.

    Example:
        >>> build_vocabulary([["b", "a", "b"], ["c", "a"]], size=4)
        ('<pad>', '<unk>', 'a', 'b')
        >>> build_vocabulary([["b", "a", "b"], ["c", "a"]], size=None)
        ('<pad>', '<unk>', 'a', 'b', 'c')
    """
    if size is not None and size < 2:
        raise ValueError(f"size must be at least 2 (<pad> and <unk>), got {size}")
    counts = Counter(token for tokens in token_lists for token in tokens)
    for reserved in (PAD_TOKEN, UNK_TOKEN):
        counts.pop(reserved, None)
    words = sorted(counts, key=lambda word: (-counts[word], word))
    return (PAD_TOKEN, UNK_TOKEN, *words[: None if size is None else size - 2])


def vocabulary_index(vocabulary: Sequence[str]) -> dict[str, int]:
    """Each word of ``vocabulary`` mapped to its id (its position).

    Example:
        >>> vocabulary_index(("<pad>", "<unk>", "a"))
        {'<pad>': 0, '<unk>': 1, 'a': 2}
    """
    return {word: i for i, word in enumerate(vocabulary)}


def encode(
    token_lists: Sequence[Sequence[str]], vocabulary: Sequence[str], max_length: int
) -> Tensor:
    """Token ids ``(N, max_length)`` ``int64``: the first ``max_length`` tokens of each list,
    words outside ``vocabulary`` as ``<unk>`` (1), padded at the end with ``<pad>`` (0).

    Example:
        >>> vocabulary = ("<pad>", "<unk>", "a", "b")
        >>> encode([["a", "b", "zebra"], ["b", "a", "a", "b"]], vocabulary, max_length=3)
        tensor([[2, 3, 1],
                [3, 2, 2]])
        >>> encode([["b"]], vocabulary, max_length=3)
        tensor([[3, 0, 0]])
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    index = vocabulary_index(vocabulary)
    ids = torch.full((len(token_lists), max_length), PAD, dtype=torch.int64)
    for row, tokens in zip(ids, token_lists, strict=True):
        kept = [index.get(token, UNK) for token in tokens[:max_length]]
        row[: len(kept)] = torch.tensor(kept, dtype=torch.int64)
    return ids


def load_glove(
    path: str | os.PathLike[str], vocabulary: Sequence[str], dim: int | None = None
) -> Tensor:
    """Embeddings ``(len(vocabulary), d)`` ``float32`` for ``vocabulary`` from a GloVe text file.

    Each line of the (uncompressed, UTF-8) file is a word followed by ``d`` numbers, separated by
    single spaces. The numbers are the last ``d`` fields, so a word may contain spaces, as a few
    in ``glove.840B.300d`` do. ``d`` is ``dim`` when given, else the first line's count. Words
    missing from the file get zero vectors, as in the paper's 20 Newsgroups code (a trainable
    embedding learns them); the ``<pad>`` row is always zero.

    A line with fewer than ``d`` numbers, with a number that does not parse, or whose word ends in
    a number (a vector longer than ``d``) is a ``ValueError`` naming the file and the line. Only
    the vectors of vocabulary words are parsed, which keeps a 2-million-word file fast.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "glove.txt"
        ...     _ = path.write_text("the 0.5 -1.0\\ncat 2.0 3.0\\n")
        ...     load_glove(path, ("<pad>", "<unk>", "cat", "dog"))
        tensor([[0., 0.],
                [0., 0.],
                [2., 3.],
                [0., 0.]])
    """
    index = vocabulary_index(vocabulary)
    embeddings: Tensor | None = None
    with Path(path).open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            fields = line.rstrip().split(" ")
            if dim is None:
                dim = len(fields) - 1
            if dim < 1 or len(fields) < dim + 1:
                raise ValueError(
                    f"{path}, line {number}: expected a word and {dim} numbers, "
                    f"got {len(fields)} fields"
                )
            word = " ".join(fields[:-dim])
            if len(fields) > dim + 1 and _is_number(fields[-dim - 1]):
                raise ValueError(
                    f"{path}, line {number}: more than {dim} numbers "
                    "(the vectors' dimension is inconsistent)"
                )
            if embeddings is None:
                embeddings = torch.zeros(len(vocabulary), dim)
            if word in index:
                try:
                    vector = np.array(fields[-dim:], dtype=np.float32)
                except ValueError as error:
                    raise ValueError(f"{path}, line {number}: {error}") from None
                embeddings[index[word]] = torch.from_numpy(vector)
    if embeddings is None:
        raise ValueError(f"{path}: no vectors in the file")
    embeddings[PAD] = 0.0
    return embeddings


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def split_member(split: str, members: Mapping[str, str]) -> str:
    """The archive member holding ``split`` (a key of ``members``), or a ``ValueError`` that
    lists the splits there are.

    Example:
        >>> split_member("val", {"train": "trees/train.txt", "val": "trees/dev.txt"})
        'trees/dev.txt'
    """
    if split not in members:
        raise ValueError(f"split must be one of {', '.join(map(repr, members))}; got {split!r}")
    return members[split]
