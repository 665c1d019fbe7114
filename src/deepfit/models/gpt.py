"""A GPT (decoder-only transformer) in one file: token ids in, next-token logits out.

Pre-norm blocks ``x + attn(norm(x))`` then ``x + mlp(norm(x))``, learned absolute position
embeddings, causal self-attention through ``F.scaled_dot_product_attention``, a final norm,
and an output layer tied to the token embedding (one matrix: fewer parameters, and on small
corpora it generalises better; Press & Wolf 2017). As in nanoGPT, weights start at N(0, 0.02)
and the projections that write into the residual stream at N(0, 0.02 / sqrt(2 * layers)).

Options: ``norm`` = ``"rmsnorm"`` or ``"layernorm"``; ``mlp`` = ``"gelu"`` (4x wide, as GPT-2),
``"swiglu"`` (gated, hidden 8/3 x wide so the parameter count matches) or ``"relu2"`` (squared
ReLU, So et al. 2021 "Primer": as good as GELU and cheaper on CPUs).

Generation uses a key/value cache (:class:`KVCache`): the prompt is run once, then each new
token attends to the cached keys and values of all earlier ones, so one step costs O(T)
instead of re-running the whole window.

Example:
    >>> import torch
    >>> model = GPT(vocab_size=50, context=16, dim=32, layers=2, heads=4)
    >>> model(torch.zeros(2, 16, dtype=torch.long)).shape
    torch.Size([2, 16, 50])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepfit.errors import ConfigError

__all__ = ["GPT", "KVCache", "NORMS", "MLPS"]

NORMS = ("rmsnorm", "layernorm")
MLPS = ("gelu", "swiglu", "relu2")


def _norm(kind: str, dim: int) -> nn.Module:
    return nn.RMSNorm(dim, eps=1e-5) if kind == "rmsnorm" else nn.LayerNorm(dim, bias=False)


class MLP(nn.Module):
    """The feed-forward half of a block: ``dim -> hidden -> dim``."""

    def __init__(self, dim: int, kind: str, ratio: float) -> None:
        super().__init__()
        self.kind = kind
        if kind == "swiglu":
            hidden = int(round(ratio * dim * 2 / 3 / 8)) * 8 or 8  # same parameters as a 2-matrix MLP
            self.fc = nn.Linear(dim, 2 * hidden, bias=False)  # gate and value in one matmul
        else:
            hidden = int(ratio * dim)
            self.fc = nn.Linear(dim, hidden, bias=False)
        self.proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc(x)  # (B, T, hidden) or (B, T, 2*hidden) for swiglu
        if self.kind == "gelu":
            h = F.gelu(h, approximate="tanh")
        elif self.kind == "relu2":
            h = F.relu(h).square()
        else:
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value  # (B, T, hidden)
        return self.proj(h)  # (B, T, C)


class Attention(nn.Module):
    """Multi-head causal self-attention; with a cache, also the cached keys and values."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, T, hs)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        else:
            start = cache.length
            k, v = cache.append(layer, k, v)  # (B, nh, start+T, hs): everything up to the new tokens
            if start == 0:  # the prompt: plain causal attention among its own tokens
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            elif T == 1:  # one new token sees every cached position: no mask needed
                y = F.scaled_dot_product_attention(q, k, v)
            else:  # several new tokens after a cached prefix: new token i sees positions <= start+i
                mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(diagonal=start)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side again
        return self.proj(y)  # (B, T, C)


class Block(nn.Module):
    """One pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, norm: str, mlp: str, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = _norm(norm, dim)
        self.attn = Attention(dim, heads)
        self.norm2 = _norm(norm, dim)
        self.mlp = MLP(dim, mlp, mlp_ratio)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.attn(self.norm1(x), cache, layer)  # (B, T, C)
        return x + self.mlp(self.norm2(x))  # (B, T, C)


@dataclass
class KVCache:
    """Keys and values of every layer for the tokens seen so far (one generation at a time).

    ``keys[layer]``/``values[layer]`` are preallocated ``(B, heads, context, head_dim)``;
    ``length`` positions are filled. :meth:`GPT.forward` advances it.
    """

    keys: list[Tensor]
    values: list[Tensor]
    length: int = 0
    _pending: int = 0

    @classmethod
    def empty(cls, model: GPT, batch: int = 1) -> KVCache:
        shape = (batch, model.heads, model.context, model.dim // model.heads)
        p = model.tok_emb.weight
        return cls([p.new_zeros(shape) for _ in model.blocks], [p.new_zeros(shape) for _ in model.blocks])

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        end = self.length + k.shape[2]
        self.keys[layer][:, :, self.length : end] = k
        self.values[layer][:, :, self.length : end] = v
        self._pending = k.shape[2]
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self) -> None:
        self.length += self._pending
        self._pending = 0


class GPT(nn.Module):
    """Decoder-only transformer language model (see the module docstring).

    Args:
        vocab_size: number of token ids.
        context: the longest sequence the model sees (learned positions 0..context-1).
        dim: width of the residual stream (a multiple of ``heads``).
        layers: transformer blocks.
        heads: attention heads.
        norm: ``"rmsnorm"`` or ``"layernorm"``.
        mlp: ``"gelu"``, ``"swiglu"`` or ``"relu2"``.
        mlp_ratio: hidden width of the MLP as a multiple of ``dim``.
        dropout: on the embeddings (0 = none; small corpora and short runs do not need it).
    """

    def __init__(self, vocab_size: int, context: int, *, dim: int = 128, layers: int = 2, heads: int = 4,
                 norm: str = "rmsnorm", mlp: str = "gelu", mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("context", context), ("dim", dim), ("layers", layers),
                            ("heads", heads)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"GPT {name} must be a positive integer, got {value!r}")
        if dim % heads:
            raise ConfigError(f"GPT dim ({dim}) must be a multiple of heads ({heads})")
        if norm not in NORMS:
            raise ConfigError(f"GPT norm must be one of {NORMS}, got {norm!r}")
        if mlp not in MLPS:
            raise ConfigError(f"GPT mlp must be one of {MLPS}, got {mlp!r}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"GPT dropout must be in [0, 1), got {dropout}")
        self.vocab_size, self.context, self.dim, self.layers, self.heads = vocab_size, context, dim, layers, heads
        self.norm, self.mlp, self.mlp_ratio, self.dropout = norm, mlp, float(mlp_ratio), float(dropout)
        self.tok_emb = nn.Embedding(vocab_size, dim)
        self.pos_emb = nn.Embedding(context, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, norm, mlp, mlp_ratio) for _ in range(layers))
        self.norm_f = _norm(norm, dim)
        # No separate output matrix: the logits use tok_emb.weight (weight tying).
        self._init_weights()

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if p.ndim < 2:
                continue  # norm gains stay at 1
            std = 0.02 / math.sqrt(2 * self.layers) if name.endswith("proj.weight") else 0.02
            nn.init.normal_(p, mean=0.0, std=std)

    def config(self) -> dict:
        """Everything ``__init__`` needs (plain JSON)."""
        return {"vocab_size": self.vocab_size, "context": self.context, "dim": self.dim, "layers": self.layers,
                "heads": self.heads, "norm": self.norm, "mlp": self.mlp, "mlp_ratio": self.mlp_ratio,
                "dropout": self.dropout}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: Tensor, cache: KVCache | None = None) -> Tensor:
        """Logits of the next token at every position.

        Args:
            idx: ``(B, T)`` token ids, ``T <= context`` (with a cache: ``cache.length + T <= context``).
            cache: a :class:`KVCache`; the new tokens continue the cached ones, and the cache is
                extended by them.

        Returns:
            ``(B, T, vocab_size)`` float logits.
        """
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        if start + T > self.context:
            raise ConfigError(f"GPT got {start + T} positions but its context window is {self.context}")
        pos = torch.arange(start, start + T, device=idx.device)  # (T,)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)  # (B, T, C)
        if cache is not None:
            cache.advance()
        x = self.norm_f(x)  # (B, T, C)
        return F.linear(x, self.tok_emb.weight)  # (B, T, V): tied output layer
