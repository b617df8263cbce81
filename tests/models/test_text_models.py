"""The text models: padding is ignored, and the batched Tree-LSTM is the recursive one."""

import pytest
import torch

from focalcal.data.sst import encode_trees, parse_tree
from focalcal.models.text import TextCNN, TreeLSTM

VOCABULARY = ("<pad>", "<unk>", "a", "b", "c", "d", "e")
SENTENCES = [
    "(3 (2 a) (4 (2 b) (3 (2 c) (3 d))))",
    "(1 e)",
    "(1 (2 (2 a) (2 b)) (2 (2 c) (2 d)))",
    "(4 (2 (2 (2 (2 (2 a) (2 b)) (2 c)) (2 d)) (2 e)) (2 zebra))",
    "(0 (2 b) (2 b))",
]


def make_trees(lines=SENTENCES):
    return encode_trees([parse_tree(line)[1] for line in lines], VOCABULARY)


def recursive_logits(model, rows):
    """The Tree-LSTM of Tai et al. on one tree, node by node from the root down, written from
    the equations with the model's weights."""
    hidden = model.output.in_features
    leaf_w, leaf_b = model.leaf.weight, model.leaf.bias
    comp_w, comp_b = model.compose.weight, model.compose.bias

    def state(j):
        word, left, right = rows[j]
        if word >= 0:
            z = leaf_w @ model.embedding.weight[word] + leaf_b
            c = z[:hidden]
            return c, torch.sigmoid(z[hidden:]) * torch.tanh(c)
        (c_l, h_l), (c_r, h_r) = state(left), state(right)
        z = comp_w @ torch.cat([h_l, h_r]) + comp_b
        i, f_l, f_r, u, o = z.split(hidden)
        c = torch.sigmoid(i) * torch.tanh(u) + torch.sigmoid(f_l) * c_l + torch.sigmoid(f_r) * c_r
        return c, torch.sigmoid(o) * torch.tanh(c)

    real = [row for row in rows.tolist() if row != [-1, -1, -1]]
    _, h_root = state(len(real) - 1)
    return model.output(h_root)


def test_tree_lstm_batched_equals_recursive_per_tree():
    torch.manual_seed(0)
    model = TreeLSTM(len(VOCABULARY), num_classes=3, embedding_dim=6, hidden=5).double().eval()
    trees = make_trees()
    batched = model(trees)
    assert batched.shape == (len(SENTENCES), 3) and batched.dtype == torch.float64
    expected = torch.stack([recursive_logits(model, rows) for rows in trees])
    torch.testing.assert_close(batched, expected)
    batched_grads = torch.autograd.grad(batched.square().sum(), list(model.parameters()))
    expected_grads = torch.autograd.grad(expected.square().sum(), list(model.parameters()))
    for got, want in zip(batched_grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want)
    # Each tree alone, with no padding, gives its row of the batch.
    for line, row in zip(SENTENCES, batched, strict=True):
        torch.testing.assert_close(model(make_trees([line]))[0], row)


def test_tree_lstm_forward_backward_and_embeddings():
    embeddings = torch.randn(len(VOCABULARY), 4)
    embeddings[0] = 0
    model = TreeLSTM(len(VOCABULARY), 2, embedding_dim=4, hidden=3, embeddings=embeddings)
    torch.testing.assert_close(model.embedding.weight.detach(), embeddings)
    logits = model(make_trees())
    assert logits.shape == (len(SENTENCES), 2)
    torch.nn.functional.cross_entropy(logits, torch.tensor([1, 0, 0, 1, 0])).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.isfinite().all(), name
        assert parameter.grad.abs().sum() > 0, name
    frozen = TreeLSTM(len(VOCABULARY), 2, 4, 3, embeddings=embeddings, freeze_embeddings=True)
    assert not frozen.embedding.weight.requires_grad
    with pytest.raises(ValueError, match=r"embeddings must have shape .* = \(7, 5\), got \(7, 4\)"):
        TreeLSTM(len(VOCABULARY), 2, embedding_dim=5, embeddings=embeddings)
    with pytest.raises(ValueError, match=r"trees must be int64 of shape \(B, M, 3\)"):
        model(make_trees()[..., :2])


def test_text_cnn_ignores_padding():
    torch.manual_seed(0)
    model = TextCNN(vocab_size=30, num_classes=4, embedding_dim=8, channels=6, hidden=5).eval()
    tokens = torch.randint(1, 30, (3, 12))
    tokens[1, 7:] = 0  # a shorter document
    tokens[2, 2:] = 0  # shorter than the kernel
    logits = model(tokens)
    assert logits.shape == (3, 4)
    padded = torch.cat([tokens, torch.zeros(3, 9, dtype=torch.int64)], dim=1)
    torch.testing.assert_close(model(padded), logits)
    torch.testing.assert_close(model(tokens[1:2, :7]), logits[1:2])
    # Even a pad embedding that is not zero changes nothing.
    with torch.no_grad():
        model.embedding.weight[0] = 1.0
    torch.testing.assert_close(model(padded), logits)
    assert model(torch.zeros(1, 5, dtype=torch.int64)).isfinite().all()  # an empty document


def test_text_cnn_forward_backward_and_frozen_embeddings():
    embeddings = torch.randn(30, 8)
    model = TextCNN(30, 20, embedding_dim=8, embeddings=embeddings)
    assert not model.embedding.weight.requires_grad  # the paper's code never updated them
    torch.testing.assert_close(model.embedding.weight.detach(), embeddings)
    tokens = torch.randint(0, 30, (4, 40))
    torch.nn.functional.cross_entropy(model(tokens), torch.tensor([0, 5, 19, 3])).backward()
    for name, parameter in model.named_parameters():
        if name != "embedding.weight":
            assert parameter.grad is not None and parameter.grad.isfinite().all(), name
    trainable = TextCNN(30, 20, embedding_dim=8, freeze_embeddings=False)
    trainable(tokens).sum().backward()
    assert trainable.embedding.weight.grad is not None
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        TextCNN(30, 20, kernel_size=4)


def test_text_models_are_registered():
    from focalcal.models import build_model

    model = build_model("textcnn", 20, vocab_size=50)
    assert model(torch.randint(0, 50, (3, 40))).shape == (3, 20)
    trees = torch.tensor([[[5, -1, -1], [6, -1, -1], [-1, 0, 1]]])
    assert build_model("tree-lstm", 2, vocab_size=50)(trees).shape == (1, 2)
    with pytest.raises(ValueError, match=r"model 'textcnn'.*vocab_size"):
        build_model("textcnn", 20)
