"""TextEncoder: a small pre-norm transformer over token ids, mean-pooled to one vector per text.

Token embedding + learned positions → ``layers`` x [x + Attn(LN(x)), x + MLP(LN(x))] → LN →
mean over the non-padding positions. Attention is ``F.scaled_dot_product_attention`` with a
padding mask (id 0 = padding). Batches are trimmed to their longest text before the first layer,
so padding costs nothing beyond it (the table loader batches rows in random order; trimming keeps
most of the benefit of length bucketing without changing the sample order).

Example:
    >>> import torch
    >>> enc = TextEncoder(vocab_size=50, dim=32, layers=1, heads=4, max_len=16)
    >>> ids = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0]])
    >>> enc(ids).shape
    torch.Size([2, 32])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepfit.errors import ConfigError

__all__ = ["TextEncoder", "EncoderBlock"]


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``."""

    def __init__(self, dim: int, heads: int, *, dropout: float = 0.1) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.dropout = dropout

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        """``x`` (B, L, D), ``keep`` (B, L) bool (False = padding) → (B, L, D)."""
        b, length, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, length, 3, self.heads, d // self.heads)  # (B, L, 3, H, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3x (B, H, L, hd)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])  # (B, H, L, hd)
        x = x + F.dropout(self.proj(att.transpose(1, 2).reshape(b, length, d)), self.dropout, self.training)
        return x + F.dropout(self.mlp(self.norm2(x)), self.dropout, self.training)  # (B, L, D)


class TextEncoder(nn.Module):
    """Token ids ``(B, L)`` (0 = padding) → mean-pooled ``(B, dim)``.

    Args:
        vocab_size: rows of the token table (padding id 0 included).
        dim: model width (divisible by ``heads``).
        layers: transformer blocks.
        heads: attention heads.
        max_len: longest input (rows of the learned position table).
        dropout: on the residual branches.
    """

    def __init__(self, *, vocab_size: int, dim: int = 64, layers: int = 2, heads: int = 4, max_len: int = 128,
                 dropout: float = 0.1) -> None:
        super().__init__()
        if vocab_size < 2 or dim < 1 or layers < 0 or heads < 1 or max_len < 1:
            raise ConfigError(f"TextEncoder needs vocab_size >= 2 and positive sizes, got vocab_size={vocab_size}, "
                              f"dim={dim}, layers={layers}, heads={heads}, max_len={max_len}")
        if dim % heads:
            raise ConfigError(f"TextEncoder: dim {dim} must be divisible by heads {heads}")
        self.dim, self.max_len = dim, max_len
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(max_len, dim))
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos, std=0.02)
        with torch.no_grad():
            self.embed.weight[0].zero_()
        self.blocks = nn.ModuleList([EncoderBlock(dim, heads, dropout=dropout) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: Tensor) -> Tensor:
        if ids.dim() != 2 or ids.shape[1] > self.max_len:
            raise ConfigError(f"TextEncoder expects (B, L) ids with L <= {self.max_len}, got {tuple(ids.shape)}")
        keep = ids > 0  # (B, L)
        length = max(int(keep.sum(1).max()), 1) if ids.numel() else 1  # trim the batch to its longest text
        ids, keep = ids[:, :length], keep[:, :length]
        keep = keep.clone()
        keep[:, 0] = True  # an empty text attends to (and pools) its first slot rather than nothing
        x = self.embed(ids) + self.pos[:length]  # (B, L, D)
        for block in self.blocks:
            x = block(x, keep)
        x = self.norm(x)  # (B, L, D)
        w = keep.unsqueeze(-1).to(x.dtype)  # (B, L, 1)
        return (x * w).sum(1) / w.sum(1)  # (B, D)

    def config(self) -> dict:
        return {"dim": self.dim, "layers": len(self.blocks), "max_len": self.max_len}
