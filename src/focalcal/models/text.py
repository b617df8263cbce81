"""The paper's text models: a global-pooling CNN for 20 Newsgroups and a binary Tree-LSTM for SST.

Both take ``int64`` token ids whose id 0 is padding (:data:`focalcal.data.text.PAD`), optionally
start from pretrained vectors (e.g. :func:`focalcal.data.text.load_glove`), and return logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from focalcal.data.text import PAD


def _embedding(
    vocab_size: int, embedding_dim: int, embeddings: Tensor | None, freeze: bool
) -> nn.Embedding:
    """A ``vocab_size × embedding_dim`` table with a zero padding row, copied from
    ``embeddings`` if given, trained unless ``freeze``."""
    embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD)
    if embeddings is not None:
        if tuple(embeddings.shape) != (vocab_size, embedding_dim):
            raise ValueError(
                f"embeddings must have shape (vocab_size, embedding_dim) = "
                f"({vocab_size}, {embedding_dim}), got {tuple(embeddings.shape)}"
            )
        with torch.no_grad():
            embedding.weight.copy_(embeddings)
    embedding.weight.requires_grad_(not freeze)
    return embedding


class TextCNN(nn.Module):
    """The paper's global-pooling CNN: token ids ``(N, L)`` -> logits ``(N, num_classes)``.

    Embeddings, then three convolutions (``channels`` filters of width ``kernel_size``, ReLU)
    with a max-pool of the same width and stride 1 between them, a global max-pool over time
    (Lin et al. 2014), a ``hidden``-unit ReLU layer with dropout, and a linear read-out. The
    defaults are the paper's code (GloVe-100d, 128 filters of width 5, 128 hidden units, keep
    probability 0.7, embeddings frozen: its optimiser never updated them).

    Padding is ignored: the convolutions and pools are zero-padded to keep the length, and every
    padded position is set to zero after each layer, which no ReLU output is below, so a
    sequence gives the same logits whatever padding follows it. (The paper's code let padding
    through and used unpadded convolutions, which drop ``kernel_size - 1`` positions per layer.)

    Example:
        >>> import torch
        >>> model = TextCNN(vocab_size=50, num_classes=20).eval()
        >>> model(torch.randint(1, 50, (2, 30))).shape
        torch.Size([2, 20])
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        embedding_dim: int = 100,
        embeddings: Tensor | None = None,
        freeze_embeddings: bool = True,
        channels: int = 128,
        kernel_size: int = 5,
        hidden: int = 128,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (to keep the length), got {kernel_size}")
        self.kernel_size = kernel_size
        self.embedding = _embedding(vocab_size, embedding_dim, embeddings, freeze_embeddings)
        self.convs = nn.ModuleList(
            nn.Conv1d(width, channels, kernel_size, padding=kernel_size // 2)
            for width in (embedding_dim, channels, channels)
        )
        self.hidden = nn.Linear(channels, hidden)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        """Token ids ``(N, L)`` ``int64``, 0 for padding -> logits ``(N, num_classes)``."""
        keep = (tokens != PAD).unsqueeze(1)  # (N, 1, L)
        x = self.embedding(tokens).transpose(1, 2) * keep
        for layer, conv in enumerate(self.convs):
            if layer:
                x = F.max_pool1d(x, self.kernel_size, stride=1, padding=self.kernel_size // 2)
                x = x * keep
            x = F.relu(conv(x)) * keep
        features = x.amax(dim=2)  # padded positions hold 0, below no ReLU output
        logits: Tensor = self.output(self.dropout(F.relu(self.hidden(features))))
        return logits


class TreeLSTM(nn.Module):
    """Binary (N-ary, N = 2) Tree-LSTM of Tai et al. (2015) over constituency trees, classifying
    the root: trees ``(B, M, 3)`` -> logits ``(B, num_classes)``.

    Trees are encoded as :mod:`focalcal.data.sst` writes them: node rows in post-order (root
    last, at least one node per tree), ``(word id, -1, -1)`` for a leaf, ``(-1, left, right)``
    for an internal node, ``(-1, -1, -1)`` for padding. A leaf with input ``x`` has
    ``c = W_c x + b_c`` and ``h = σ(W_o x + b_o) ⊙ tanh(c)``; an internal node with children
    ``(h_l, c_l)``, ``(h_r, c_r)`` has gates ``i, f_l, f_r, o = σ(U [h_l; h_r] + b)`` and update
    ``u = tanh(U_u [h_l; h_r] + b_u)``, ``c = i ⊙ u + f_l ⊙ c_l + f_r ⊙ c_r``,
    ``h = o ⊙ tanh(c)``. The root's ``h`` goes through dropout and a linear layer.

    The batch is evaluated in waves: each wave computes, for every tree at once, all nodes whose
    children are done, so a batch costs one batched step per level of its tallest tree. The
    defaults are the paper's SST settings (300-d GloVe, 150 memory units, dropout 0.5, embeddings
    trained).

    Example:
        >>> import torch
        >>> model = TreeLSTM(vocab_size=10, num_classes=2).eval()
        >>> tree = torch.tensor([[[4, -1, -1], [7, -1, -1], [-1, 0, 1]]])  # (4 7)
        >>> model(tree).shape
        torch.Size([1, 2])
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        embedding_dim: int = 300,
        hidden: int = 150,
        embeddings: Tensor | None = None,
        freeze_embeddings: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.embedding = _embedding(vocab_size, embedding_dim, embeddings, freeze_embeddings)
        self.leaf = nn.Linear(embedding_dim, 2 * hidden)  # c, o
        self.compose = nn.Linear(2 * hidden, 5 * hidden)  # i, f_l, f_r, u, o
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden, num_classes)

    def forward(self, trees: Tensor) -> Tensor:
        """Trees ``(B, M, 3)`` ``int64`` -> logits ``(B, num_classes)``."""
        if trees.dim() != 3 or trees.shape[-1] != 3 or trees.dtype != torch.int64:
            raise ValueError(
                f"trees must be int64 of shape (B, M, 3), got {trees.dtype} {tuple(trees.shape)}"
            )
        batch, size, _ = trees.shape
        words, left, right = trees.reshape(-1, 3).unbind(1)
        is_leaf = words >= 0
        pending = (words < 0) & (left >= 0)  # internal nodes not computed yet
        roots = torch.arange(batch, device=trees.device) * size - 1
        roots = roots + (is_leaf | pending).view(batch, size).sum(1)  # the last node of each tree
        # Children as rows of the flattened batch; 0 where there is no child (masked anyway).
        offset = torch.arange(batch, device=trees.device).repeat_interleave(size) * size
        left = torch.where(pending, left + offset, 0)
        right = torch.where(pending, right + offset, 0)

        leaves = is_leaf.nonzero().squeeze(1)
        c_leaf, o_leaf = self.leaf(self.embedding(words[leaves])).chunk(2, dim=1)
        c = c_leaf.new_zeros(batch * size, c_leaf.shape[1]).index_copy(0, leaves, c_leaf)
        h = torch.zeros_like(c).index_copy(0, leaves, torch.sigmoid(o_leaf) * torch.tanh(c_leaf))
        done = is_leaf
        while True:
            ready = pending & done[left] & done[right]
            nodes = ready.nonzero().squeeze(1)
            if nodes.numel() == 0:
                break
            lc, rc = c[left[nodes]], c[right[nodes]]
            gates = self.compose(torch.cat([h[left[nodes]], h[right[nodes]]], dim=1))
            i, f_l, f_r, u, o = gates.chunk(5, dim=1)
            c_new = (
                torch.sigmoid(i) * torch.tanh(u) + torch.sigmoid(f_l) * lc + torch.sigmoid(f_r) * rc
            )
            # In place: indexing keeps only the indices for backward, not c and h themselves.
            c.index_copy_(0, nodes, c_new)
            h.index_copy_(0, nodes, torch.sigmoid(o) * torch.tanh(c_new))
            done = done | ready
            pending = pending & ~ready

        logits: Tensor = self.output(self.dropout(h[roots]))
        return logits
