"""Text datasets, read from small archives written in exactly the published layouts."""

import hashlib
import io
import random
import re
import tarfile
import zipfile

import pytest
import torch

from focalcal.data import newsgroups, sst
from focalcal.data.download import RemoteFile
from focalcal.data.newsgroups import load_20newsgroups
from focalcal.data.sst import encode_trees, load_sst, parse_tree
from focalcal.data.text import (
    PAD,
    UNK,
    build_vocabulary,
    encode,
    load_glove,
    tokenize,
    vocabulary_index,
)

# ---------------------------------------------------------------------------------------------
# Fixtures: 20news-bydate.tar.gz and trainDevTestTrees_PTB.zip in miniature.

POSTS = {
    "20news-bydate-train": {
        "sci.space": ["The shuttle launch is late.", "Orbit the moon, orbit Mars!"],
        "comp.graphics": ["Render the image in café colours", "JPEG image, GIF image"],
        "rec.autos": ["My car's engine, the car engine."],
    },
    "20news-bydate-test": {
        "comp.graphics": ["A testonly image"],
        "sci.space": ["Orbit testonly"],
        "rec.autos": ["Car"],
    },
}
HEADER = "From: someone@example.org (Some One)\nSubject: headerword\nLines: 3\n\n"


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_newsgroups(folder, posts=POSTS):
    path = folder / "20news-bydate.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for part, groups in posts.items():
            for name in (part, *(f"{part}/{group}" for group in groups)):
                directory = tarfile.TarInfo(name)
                directory.type = tarfile.DIRTYPE
                archive.addfile(directory)
            for group, bodies in groups.items():
                for number, body in enumerate(bodies):
                    data = (HEADER + body + "\n").encode("latin-1")
                    member = tarfile.TarInfo(f"{part}/{group}/{60000 + number}")
                    member.size = len(data)
                    archive.addfile(member, io.BytesIO(data))
    return RemoteFile(path.name, "https://example.org/20news-bydate.tar.gz", sha256=sha256(path))


TREES = {
    "trees/train.txt": [
        "(3 (2 It) (4 (2 's) (3 (2 a) (3 lark))))",
        "(1 (2 A) (1 (1 dull) (2 movie)))",
        "(2 (2 Just) (2 okay))",
        "(4 Wonderful)",
        "(0 (1 (0 awful) (2 ,)) (1 (0 awful) (2 movie)))",
    ],
    "trees/dev.txt": ["(3 (2 a) (3 (2 new) (3 lark)))", "(2 (2 so) (2 so))", "(0 Dull)"],
    "trees/test.txt": ["(1 (2 A) (1 movie))", "(4 (2 It) (4 (2 a) (4 lark)))"],
}


def write_sst(folder, trees=TREES):
    path = folder / "trainDevTestTrees_PTB.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("trees/", "")
        for member, lines in trees.items():
            archive.writestr(member, "".join(line + "\n" for line in lines))
    return RemoteFile(path.name, "https://example.org/trainDevTestTrees_PTB.zip", md5=md5(path))


@pytest.fixture
def newsgroups_root(tmp_path, monkeypatch):
    monkeypatch.setattr(newsgroups, "ARCHIVE", write_newsgroups(tmp_path))
    return tmp_path


@pytest.fixture
def sst_root(tmp_path, monkeypatch):
    monkeypatch.setattr(sst, "ARCHIVE", write_sst(tmp_path))
    return tmp_path


def decode(ids, vocabulary):
    return [vocabulary[i] for i in ids.tolist() if i != PAD]


# ---------------------------------------------------------------------------------------------
# Tokens, vocabulary, ids.


def test_tokenize_lower_cases_and_drops_punctuation():
    assert tokenize("Hello,WORLD! It's 3.5 o'clock_now -- ok?") == [
        "hello",
        "world",
        "it's",
        "3",
        "5",
        "o'clock",
        "now",
        "ok",
    ]
    assert tokenize("Café ÉTÉ") == ["café", "été"]
    assert tokenize(" ,;'' ") == []


def test_vocabulary_orders_by_count_then_alphabet_whatever_the_document_order():
    documents = [["b", "c", "a"], ["c", "b"], ["d", "e", "e", "c"], ["<unk>", "<pad>"]]
    vocabulary = build_vocabulary(documents, size=None)
    assert vocabulary == ("<pad>", "<unk>", "c", "b", "e", "a", "d")
    for seed in range(5):
        shuffled = [list(doc) for doc in documents]
        random.Random(seed).shuffle(shuffled)
        for doc in shuffled:
            random.Random(seed).shuffle(doc)
        assert build_vocabulary(shuffled, size=None) == vocabulary
    assert build_vocabulary(documents, size=4) == ("<pad>", "<unk>", "c", "b")
    assert build_vocabulary(documents, size=2) == ("<pad>", "<unk>")
    assert vocabulary_index(vocabulary)["e"] == 4
    with pytest.raises(ValueError, match="size must be at least 2"):
        build_vocabulary(documents, size=1)


def test_encode_round_trips_pads_and_truncates():
    documents = [["a", "b", "a"], ["b"], [], ["c", "zebra", "a", "b", "c"]]
    vocabulary = build_vocabulary(documents[:3], size=None)
    ids = encode(documents, vocabulary, max_length=4)
    assert ids.dtype == torch.int64 and ids.shape == (4, 4)
    assert decode(ids[0], vocabulary) == ["a", "b", "a"]
    assert ids[1].tolist() == [vocabulary.index("b"), PAD, PAD, PAD]
    assert ids[2].tolist() == [PAD] * 4
    assert ids[3].tolist() == [UNK, UNK, vocabulary.index("a"), vocabulary.index("b")]
    with pytest.raises(ValueError, match="max_length must be at least 1"):
        encode(documents, vocabulary, max_length=0)


# ---------------------------------------------------------------------------------------------
# GloVe.


def test_load_glove_reads_vectors_of_vocabulary_words(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("the 0.5 -1 2\ncat 1e-1 2.5 3\n. . . 7 8 9\n<pad> 4 4 4\nunused 0 0 0\n")
    vocabulary = ("<pad>", "<unk>", "cat", "dog", ". . .", "the")
    embeddings = load_glove(path, vocabulary)
    expected = torch.tensor(
        [[0, 0, 0], [0, 0, 0], [0.1, 2.5, 3], [0, 0, 0], [7, 8, 9], [0.5, -1, 2]]
    )
    assert embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings, expected)
    torch.testing.assert_close(load_glove(path, vocabulary, dim=3), expected)


@pytest.mark.parametrize(
    ("text", "dim", "message"),
    [
        ("the 1 2\ncat 1\n", None, r"glove\.txt, line 2: expected a word and 2 numbers"),
        ("the 1 2\ncat 1 2 3\n", None, r"glove\.txt, line 2: more than 2 numbers"),
        ("the 1 2\ncat 1 x\n", None, r"glove\.txt, line 2: could not convert"),
        ("the 1 2\n", 3, r"glove\.txt, line 1: expected a word and 3 numbers"),
        ("", None, r"glove\.txt: no vectors"),
    ],
)
def test_load_glove_names_the_file_and_line_of_a_malformed_line(tmp_path, text, dim, message):
    path = tmp_path / "glove.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_glove(path, ("<pad>", "<unk>", "the", "cat"), dim=dim)


# ---------------------------------------------------------------------------------------------
# 20 Newsgroups.


def expected_posts(part):
    """(group, body) in the loader's order: by group, then by file name."""
    return [
        (group, body)
        for group in sorted(POSTS[part])
        for body in POSTS[part][group]  # file names count up in body order
    ]


def test_newsgroups_classes_labels_and_shared_vocabulary(newsgroups_root):
    train = load_20newsgroups(newsgroups_root, "train", vocabulary_size=None, max_length=12)
    test = load_20newsgroups(newsgroups_root, "test", vocabulary_size=None, max_length=12)
    classes = ("comp.graphics", "rec.autos", "sci.space")
    assert train.classes == test.classes == classes
    assert train.mean is None and train.std is None
    for dataset, part in [(train, "20news-bydate-train"), (test, "20news-bydate-test")]:
        posts = expected_posts(part)
        assert dataset.labels.tolist() == [classes.index(group) for group, _ in posts]
        assert dataset.inputs.shape == (len(posts), 12)
    assert train.vocabulary == test.vocabulary
    vocabulary = train.vocabulary
    assert vocabulary[:2] == ("<pad>", "<unk>")
    assert "café" in vocabulary  # Latin-1 text
    assert "testonly" not in vocabulary  # built from the training part alone
    assert "headerword" not in vocabulary and "from" not in vocabulary  # headers are dropped
    assert vocabulary == build_vocabulary(
        [tokenize(body) for body in [b for g in POSTS["20news-bydate-train"].values() for b in g]],
        size=None,
    )
    for ids, (_, body) in zip(train.inputs, expected_posts("20news-bydate-train"), strict=True):
        assert decode(ids, vocabulary) == tokenize(body)
    for ids, (_, body) in zip(test.inputs, expected_posts("20news-bydate-test"), strict=True):
        assert decode(ids, vocabulary) == [
            word if word in vocabulary else "<unk>" for word in tokenize(body)
        ]


def test_newsgroups_vocabulary_size_and_truncation(newsgroups_root):
    train = load_20newsgroups(newsgroups_root, "train", vocabulary_size=5, max_length=3)
    # Counts in the training bodies: the 4, image 3, engine 2, orbit 2, then 1s.
    assert train.vocabulary == ("<pad>", "<unk>", "the", "image", "engine")
    first = expected_posts("20news-bydate-train")[0][1]  # "Render the image in café colours"
    assert first.startswith("Render")
    assert train.inputs.shape[1] == 3
    assert decode(train.inputs[0], train.vocabulary) == ["<unk>", "the", "image"]


def test_newsgroups_errors(tmp_path, newsgroups_root):
    with pytest.raises(ValueError, match="split must be one of 'train', 'test'; got 'val'"):
        load_20newsgroups(newsgroups_root, "val")
    path = newsgroups_root / "20news-bydate.tar.gz"
    with pytest.raises(FileNotFoundError) as missing:
        load_20newsgroups(tmp_path / "elsewhere")
    message = str(missing.value)
    assert str(tmp_path / "elsewhere" / "20news-bydate.tar.gz") in message
    assert "https://example.org/20news-bydate.tar.gz" in message
    path.write_bytes(path.read_bytes()[:-10])  # truncated
    (newsgroups_root / "20news-bydate.tar.gz.verified").unlink(missing_ok=True)
    with pytest.raises(ValueError, match=r"checksum .* does not match"):
        load_20newsgroups(newsgroups_root)


def test_newsgroups_rejects_a_test_group_missing_from_training(tmp_path, monkeypatch):
    posts = {**POSTS, "20news-bydate-test": {"misc.forsale": ["Selling a car"]}}
    monkeypatch.setattr(newsgroups, "ARCHIVE", write_newsgroups(tmp_path, posts))
    with pytest.raises(ValueError, match=r"groups the training part lacks: \['misc.forsale'\]"):
        load_20newsgroups(tmp_path, "test")


def test_newsgroups_rejects_an_archive_without_the_split(tmp_path, monkeypatch):
    posts = {"20news-bydate-train": POSTS["20news-bydate-train"]}
    monkeypatch.setattr(newsgroups, "ARCHIVE", write_newsgroups(tmp_path, posts))
    assert len(load_20newsgroups(tmp_path, "train")) == 5
    with pytest.raises(ValueError, match="no posts under 20news-bydate-test/"):
        load_20newsgroups(tmp_path, "test")


# ---------------------------------------------------------------------------------------------
# SST.


def parse_recursively(text):
    """An independent reading of a PTB tree: (label, word) or (label, left, right)."""
    tokens = re.findall(r"[()]|[^\s()]+", text)

    def node(i):
        assert tokens[i] == "("
        label = int(tokens[i + 1])
        if tokens[i + 2] != "(":
            assert tokens[i + 3] == ")"
            return (label, tokens[i + 2]), i + 4
        left, i = node(i + 2)
        right, i = node(i)
        assert tokens[i] == ")"
        return (label, left, right), i + 1

    tree, end = node(0)
    assert end == len(tokens)
    return tree


def post_order_rows(tree, index):
    rows = []

    def visit(subtree):
        if len(subtree) == 2:
            rows.append([index.get(subtree[1], UNK), -1, -1])
        else:
            left, right = visit(subtree[1]), visit(subtree[2])
            rows.append([-1, left, right])
        return len(rows) - 1

    visit(tree)
    return rows


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_sst_trees_labels_and_vocabulary(sst_root, split):
    dataset = load_sst(sst_root, split)
    member = {"train": "trees/train.txt", "val": "trees/dev.txt", "test": "trees/test.txt"}[split]
    trees = [parse_recursively(line) for line in TREES[member]]
    kept = [tree for tree in trees if tree[0] != 2]  # neutral roots dropped
    assert dataset.classes == ("negative", "positive")
    assert dataset.labels.tolist() == [int(tree[0] >= 3) for tree in kept]
    index = vocabulary_index(dataset.vocabulary)
    rows = [post_order_rows(tree, index) for tree in kept]
    assert dataset.inputs.dtype == torch.int64
    assert dataset.inputs.shape == (len(kept), max(map(len, rows)), 3)
    for encoded, expected in zip(dataset.inputs, rows, strict=True):
        assert encoded[: len(expected)].tolist() == expected
        assert (encoded[len(expected) :] == -1).all()
    # The vocabulary: every leaf of the training file (neutral trees too), cased.
    train_words = [w for line in TREES["trees/train.txt"] for w in re.findall(r"[^\s()]+", line)]
    train_words = [w for w in train_words if not w.isdigit()]
    assert dataset.vocabulary == build_vocabulary([train_words], size=None)
    assert "Just" in dataset.vocabulary and "just" not in dataset.vocabulary


def test_sst_unknown_words_and_lowercase(sst_root):
    val = load_sst(sst_root, "val")
    assert UNK in val.inputs[0, :, 0].tolist()  # "new" is not a training word
    assert val.inputs[1].tolist()[0] == [UNK, -1, -1]  # "Dull" is cased out, a one-leaf tree
    lowered = load_sst(sst_root, "val", lowercase=True)
    assert lowered.vocabulary[2:] == tuple(w.lower() for w in lowered.vocabulary[2:])
    assert decode(lowered.inputs[1, :1, 0], lowered.vocabulary) == ["dull"]
    small = load_sst(sst_root, "train", vocabulary_size=3)
    assert small.vocabulary == ("<pad>", "<unk>", "awful")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "(3 (2 a) (2 b) (2 c))",
            "a node needs one word or two children, got 0 word.* and 3 child",
        ),
        ("(3 (2 a) (2 b)", "unbalanced brackets"),
        ("(3 (2 a) (2 b)))", r"text after the root: '\)'"),
        ("(3 (2 a) (2 b)) (2 c)", r"text after the root: '\('"),
        ("(7 (2 a) (2 b))", "expected a label 0-4 after '\\(', got '7'"),
        ("(3 a b)", "a node needs one word or two children, got 2 word"),
        ("(3 (2 a))", "a node needs .* got 0 word.* and 1 child"),
        ("(3 x (2 a) (2 b))", "a node needs .* got 1 word.* and 2 child"),
        ("word", "expected '\\(', got 'word'"),
        ("(", "expected a label 0-4 after '\\(', got ''"),
    ],
)
def test_parse_tree_rejects_malformed_trees(line, message):
    with pytest.raises(ValueError, match="^here: " + message):
        parse_tree(line, "here")


def test_parse_tree_matches_the_recursive_reading():
    for line in (line for lines in TREES.values() for line in lines):
        label, nodes = parse_tree(line)
        tree = parse_recursively(line)
        assert label == tree[0]
        words = {word: i for i, word in enumerate({n[0] for n in nodes if n[0]}, start=2)}
        assert encode_trees([nodes], ("<pad>", "<unk>", *words))[0].tolist() == post_order_rows(
            tree, words
        )


def test_sst_malformed_file_names_the_member_and_line(tmp_path, monkeypatch):
    trees = {**TREES, "trees/train.txt": ["(3 (2 a) (2 b))", "(3 (2 a) (2 b) (2 c))"]}
    monkeypatch.setattr(sst, "ARCHIVE", write_sst(tmp_path, trees))
    with pytest.raises(ValueError, match=r"trainDevTestTrees_PTB\.zip:trees/train\.txt, line 2: "):
        load_sst(tmp_path, "test")


def test_sst_errors(tmp_path, sst_root):
    with pytest.raises(ValueError, match="split must be one of 'train', 'val', 'test'; got 'dev'"):
        load_sst(sst_root, "dev")
    with pytest.raises(FileNotFoundError) as missing:
        load_sst(tmp_path / "elsewhere")
    assert str(tmp_path / "elsewhere" / "trainDevTestTrees_PTB.zip") in str(missing.value)
    assert "https://example.org/trainDevTestTrees_PTB.zip" in str(missing.value)
    path = sst_root / "trainDevTestTrees_PTB.zip"
    path.write_bytes(path.read_bytes().replace(b"lark", b"LARK"))  # corrupted, same size
    (sst_root / "trainDevTestTrees_PTB.zip.verified").unlink(missing_ok=True)
    with pytest.raises(ValueError, match=r"checksum .* does not match the published"):
        load_sst(sst_root)
