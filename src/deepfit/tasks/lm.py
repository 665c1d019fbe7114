"""Language models: a text corpus in, a GPT that continues text out (``deepfit train --task lm``).

The path: read the corpus (a UTF-8 text file, a folder of ``.txt`` files, a text column of a
table, or a list of strings) → the first 90% of its characters train, the last 10% validate →
train a tokenizer on the training part (byte-level BPE by default) → train a GPT
(``deepfit.models.gpt``) on random windows of the token stream with AdamW, warm-up + cosine
decay and gradient clipping, within an optional time budget → score the whole validation part
→ write the artifact, ``metrics.json``, ``history.csv`` and ``report.html`` (with samples).

Validation loss is reported in **nats per character** (and bits per character): the summed
next-token loss divided by the number of characters scored, so models with different
tokenizers compare fairly (a BPE token covering 2.4 characters is not "easier" than one).

Time budget: with ``time_limit`` the budget covers reading, tokenizing and training; the
learning-rate schedule then follows the elapsed time (warm-up by steps, cosine decay by
``max(step / steps, elapsed / budget)``), so the rate has decayed when the budget is spent.
Without it the run takes ``steps`` optimizer steps, and a resumed run ends with the very weights
an uninterrupted run would have (``--resume``). Under ``torchrun`` each rank trains on its own
share of every global batch (DDP) and rank 0 writes the run directory.

Generation (:meth:`LMPredictor.generate`) reads the prompt as the start of a document (after
a line break), runs it once and then extends a key/value cache one token at a time. Prompts
longer than the context window keep their last ``context`` tokens; when the generated text
fills the window, the last half of it is kept and the cache rebuilt from it, so any
``max_tokens`` works. A character-level model refuses prompts with characters it never saw.

Example:
    >>> from deepfit.tasks.lm import LMSettings, fit_lm
    >>> lm = fit_lm(["the cat sat on the mat"] * 300, LMSettings(steps=50), progress=False)  # doctest: +SKIP
    >>> lm.generate("the c", max_tokens=20, temperature=0)                                    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepfit.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from deepfit.features.tokenizer import Tokenizer
    from deepfit.models.gpt import GPT

__all__ = ["LMSettings", "fit_lm", "read_corpus", "LMPredictor", "sample_tokens", "train_cli", "generate_cli",
           "demo"]

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".csv.gz", ".tsv.gz")
MAX_STEPS_WITH_TIME_LIMIT = 1_000_000  # with a time budget, time decides; this only bounds the schedule


@dataclass(frozen=True)
class LMSettings:
    """Everything that decides a language-model run (stored in ``run.json`` for ``--resume``).

    The defaults were tuned with ``bench/lm.py`` (BENCHMARKS.md section 5) on 2.2 M characters
    of tweets at one CPU thread: see docs/lm.md for the measurements behind them.
    """

    tokenizer: str = "bpe"  # "bpe" (byte-level, no unknown characters) or "char"
    vocab_size: int = 2048  # BPE only
    context: int = 64  # tokens per window
    dim: int = 96
    layers: int = 2
    heads: int = 3
    mlp: str = "relu2"
    norm: str = "rmsnorm"
    dropout: float = 0.0
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 50  # steps
    final_lr_frac: float = 0.1
    weight_decay: float = 0.1
    beta2: float = 0.99
    grad_clip: float = 1.0
    steps: int | None = None  # None: 2000, or unbounded (time decides) with a time_limit
    time_limit: float | None = None  # seconds for reading, tokenizing and training
    valid_fraction: float = 0.1
    eval_every: int = 250  # steps between validations (on up to valid_windows windows)
    valid_windows: int = 128
    seed: int = 0
    checkpoint_every: int | None = None
    text_column: str | None = None  # tables: the column holding the text
    compile: bool | str = False  # measured: 54 s to compile for <= 10% faster steps (see docs/lm.md)

    def __post_init__(self) -> None:
        from deepfit.features.tokenizer import KINDS

        if self.tokenizer not in ("bpe", "char"):
            raise ConfigError(f"tokenizer must be 'bpe' or 'char' for a language model, got {self.tokenizer!r}"
                              + (" (word tokens cannot spell unseen words)" if self.tokenizer in KINDS else ""))
        for name in ("vocab_size", "context", "dim", "layers", "heads", "batch_size", "eval_every", "valid_windows"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.context < 2:
            raise ConfigError(f"context must be >= 2 tokens, got {self.context}")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ConfigError(f"steps must be a positive integer or None, got {self.steps!r}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ConfigError(f"time_limit must be > 0 seconds, got {self.time_limit}")
        if not 0 < self.valid_fraction < 1:
            raise ConfigError(f"valid_fraction must be in (0, 1), got {self.valid_fraction}")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip <= 0 or not 0 < self.beta2 < 1:
            raise ConfigError(f"need lr > 0, weight_decay >= 0, grad_clip > 0 and 0 < beta2 < 1; got lr={self.lr}, "
                              f"weight_decay={self.weight_decay}, grad_clip={self.grad_clip}, beta2={self.beta2}")
        if not 0 <= self.final_lr_frac <= 1 or self.warmup < 0:
            raise ConfigError(f"need 0 <= final_lr_frac <= 1 and warmup >= 0, got {self.final_lr_frac}, {self.warmup}")
        # The model checks its own options (norm, mlp, dim % heads) with the same kind of error.
        from deepfit.models.gpt import MLPS, NORMS

        if self.norm not in NORMS or self.mlp not in MLPS or self.dim % self.heads:
            raise ConfigError(f"need norm in {NORMS}, mlp in {MLPS} and dim a multiple of heads; "
                              f"got {self.norm!r}, {self.mlp!r}, dim={self.dim}, heads={self.heads}")

    @property
    def max_steps(self) -> int:
        if self.steps is not None:
            return self.steps
        return MAX_STEPS_WITH_TIME_LIMIT if self.time_limit else 2000

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LMSettings:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# ----------------------------------------------------------------------------- reading the corpus


def _decode_utf8(data: bytes, where: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        bad = data[e.start : e.start + 4]
        raise DataError(
            f"{where} is not valid UTF-8: line {line}, byte offset {e.start} holds {bad!r}. Convert it to UTF-8 "
            f"(e.g. iconv -f latin1 -t utf-8 {where} > fixed.txt) and train on the converted file"
        ) from e
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def _table_text(frame: Any, column: str | None, source: str) -> str:
    from deepfit.data.table import find_column

    columns = [str(c) for c in frame.columns]
    if column is not None:
        name = find_column(frame, column, role="text column", source=source)
    elif len(columns) == 1:
        name = columns[0]
    elif "text" in columns:
        name = "text"
    else:
        raise DataError(f"{source} has {len(columns)} columns ({', '.join(columns[:10])}); say which holds the "
                        "text: text_column='...' (CLI: --target COLUMN)")
    values = frame[name].dropna().astype(str)
    values = values[values != ""]  # CSV cells without text
    return "".join(v.replace("\r\n", "\n") + "\n" for v in values)


def read_corpus(data: Any, *, text_column: str | None = None) -> tuple[str, str]:
    """The text of a corpus and a name for it in messages: ``(text, source)``.

    Args:
        data: a UTF-8 text file (any extension but the table ones), a folder (every ``.txt``
            file below it, in path order, each ending with a line break), a CSV/TSV/Parquet
            file or a pandas DataFrame (one row = one document, from ``text_column``, or the
            column ``text``, or the only column), or a list of strings (documents).
        text_column: for tables: the column with the text.

    Raises:
        DataError: missing path, no ``.txt`` in a folder, bytes that are not UTF-8 (the line and
            byte offset are named), or an empty corpus.

    Example:
        >>> read_corpus(["first document", "second"])
        ('first document\\nsecond\\n', 'list of 2 texts')
    """
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        source = "DataFrame"
        text = _table_text(data, text_column, source)
    elif isinstance(data, (list, tuple)):
        if not all(isinstance(t, str) for t in data):
            raise DataError("a list corpus must hold strings (one document each)")
        source = f"list of {len(data)} texts"
        text = "".join(t.replace("\r\n", "\n") + ("" if t.endswith("\n") else "\n") for t in data)
    elif isinstance(data, (str, os.PathLike)):
        path = Path(data).expanduser()
        source = str(path)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.txt") if p.is_file())
            if not files:
                raise DataError(f"{path} is a folder without .txt files; put the corpus in .txt files (UTF-8)")
            parts = [_decode_utf8(p.read_bytes(), str(p)) for p in files]
            text = "".join(t if t.endswith("\n") or not t else t + "\n" for t in parts)
            source = f"{path} ({len(files)} .txt files)"
        elif path.is_file():
            if path.name.lower().endswith(TABLE_SUFFIXES):
                from deepfit.data.sources import read_table

                text = _table_text(read_table(path), text_column, source)
            else:
                text = _decode_utf8(path.read_bytes(), source)
        else:
            raise DataError(f"{path} does not exist; pass a UTF-8 text file, a folder of .txt files or a table")
    else:
        raise DataError(f"cannot read a corpus from a {type(data).__name__}; pass a path, a folder, a DataFrame "
                        "or a list of strings")
    if not text.strip():
        raise DataError(f"{source} is empty (no text to learn from)")
    return text, source


def _lines(text: str) -> list[str]:
    """``text`` cut after each line break (the pieces join back to ``text``)."""
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def encode_text(tok: Tokenizer, text: str) -> torch.Tensor:
    """All token ids of ``text`` as one int64 tensor (lines are encoded in parallel)."""
    import torch

    pieces = _lines(text)
    ids = [i for enc in tok.encode_batch(pieces) for i in enc] if pieces else []
    return torch.tensor(ids, dtype=torch.long)


# ----------------------------------------------------------------------------- training pieces


def _mix(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 4_242) % (2**63 - 1)


def _window_batches(tokens: torch.Tensor, *, context: int, batch_size: int, steps: int, seed: int,
                    rank: int = 0, world_size: int = 1) -> Any:
    """A loader of random windows: batch ``i`` of "epoch" ``e`` depends only on ``(seed, e, i)``."""
    import torch

    from deepfit.data.loader import BatchLoader

    class WindowBatches(BatchLoader):
        def __init__(self) -> None:
            self.batch_size = batch_size
            self.offsets = torch.arange(context + 1)

        def num_batches(self) -> int:
            return steps

        def num_samples(self) -> int:
            return steps * batch_size

        def iterate(self, epoch: int, start: int = 0):  # noqa: ANN202
            g = torch.Generator().manual_seed(_mix(seed, epoch))
            starts = torch.randint(0, len(tokens) - context, (steps, world_size * batch_size), generator=g)
            for i in range(start, steps):
                s = starts[i, rank * batch_size : (rank + 1) * batch_size]
                w = tokens[s[:, None] + self.offsets]  # (B, T+1)
                yield w[:, :-1], w[:, 1:]  # inputs (B, T), next tokens (B, T)

    return WindowBatches()


def _valid_windows(tokens: torch.Tensor, context: int, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``limit`` evenly spaced, non-overlapping windows of the validation tokens."""
    import torch

    T = min(context, len(tokens) - 1)
    count = (len(tokens) - 1) // T
    starts = torch.linspace(0, count - 1, min(limit, count)).round().long().unique() * T
    w = tokens[starts[:, None] + torch.arange(T + 1)]  # (N, T+1)
    return w[:, :-1].contiguous(), w[:, 1:].contiguous()


def _lm_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    return F.cross_entropy(output.flatten(0, 1).float(), target.flatten())  # mean nats per token


def _nats_metric() -> type:
    """The LM's validation metric class (defined lazily: the metrics import torch)."""
    from deepfit.metrics import Metric

    class NatsPerChar(Metric):
        """Validation loss per character: nats/token x tokens/char of the validation text."""

        name = "nats_per_char"
        higher_is_better = False

        def __init__(self, tokens_per_char: float) -> None:
            super().__init__()
            self.tokens_per_char = tokens_per_char

        def _update(self, output: torch.Tensor, target: torch.Tensor) -> None:
            import torch.nn.functional as F

            self._add("nll", F.cross_entropy(output.flatten(0, 1), target.flatten(), reduction="sum"))
            self._add("n", target.new_tensor(target.numel()))

        def compute(self) -> float:
            return float(self.state["nll"] / self.state["n"]) * self.tokens_per_char

    return NatsPerChar


# ----------------------------------------------------------------------------- the predictor


def sample_tokens(model: GPT, ids: list[int], *, max_tokens: int, temperature: float = 0.8,
                  top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
                  use_cache: bool = True, banned: tuple[int, ...] = (0, 1),
                  logits_out: list[torch.Tensor] | None = None) -> list[int]:
    """Extend ``ids`` by ``max_tokens`` sampled tokens; returns the new ids.

    With ``use_cache`` (the default) each new token costs one position through the model
    (:class:`~deepfit.models.gpt.KVCache`); without it the whole window is recomputed every step
    (the reference the cache is tested against). When ``ids`` plus the new tokens overflow the
    context window, the last half window is kept and recomputed. ``banned`` ids (padding and
    unknown) are never sampled; ``logits_out`` collects each step's logits.
    """
    import torch

    from deepfit.models.gpt import KVCache

    if not ids:
        raise DataError("generation needs at least one token of context")
    window = model.context
    seq = list(ids[-window:])
    new: list[int] = []
    cache = KVCache.empty(model) if use_cache else None
    with torch.inference_mode():
        logits = model(torch.tensor([seq]), cache)[0, -1]  # (V,)
        for _ in range(max_tokens):
            logits = logits.float().clone()
            if banned:
                logits[list(banned)] = -math.inf
            if logits_out is not None:
                logits_out.append(logits.clone())
            token = _pick(logits, temperature, top_k, top_p, generator)
            new.append(token)
            seq.append(token)
            if len(new) == max_tokens:
                break
            if not use_cache:
                logits = model(torch.tensor([seq[-window:]]))[0, -1]
            elif cache.length < window:
                logits = model(torch.tensor([[token]]), cache)[0, -1]
            else:  # the window is full: keep its last half and rebuild the cache from it
                seq = seq[-(window // 2):]
                cache = KVCache.empty(model)
                logits = model(torch.tensor([seq]), cache)[0, -1]
    return new


def _pick(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
          generator: torch.Generator | None) -> int:
    import torch

    if temperature == 0:
        return int(logits.argmax())
    logits = logits / temperature
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1:
        sorted_p, order = probs.sort(descending=True)
        drop = sorted_p.cumsum(0) - sorted_p >= top_p  # keep the smallest set reaching top_p (never empty)
        probs = probs.scatter(0, order[drop], 0.0)
        probs = probs / probs.sum()
    return int(torch.multinomial(probs, 1, generator=generator))


class LMPredictor:
    """A trained language model with its tokenizer: ``generate``, ``evaluate``, ``save``/``load``."""

    task = "lm"

    def __init__(self, model: GPT, tokenizer: Tokenizer, *, metrics: dict[str, float] | None = None,
                 info: dict[str, Any] | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.metrics: dict[str, float] = dict(metrics or {})
        self.info: dict[str, Any] = dict(info or {})
        self._start = tokenizer.encode("\n")  # a document starts after a line break

    @property
    def context(self) -> int:
        return self.model.context

    def generate(self, prompt: str = "", *, max_tokens: int = 200, temperature: float = 0.8,
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None) -> str:
        """Continue ``prompt``; returns the generated text (without the prompt).

        Args:
            prompt: the start of a document ("" = a new document).
            max_tokens: tokens to generate (any number: see the module docs on the window).
            temperature: 0 = always the likeliest token; higher = more varied.
            top_k: sample only among the ``top_k`` likeliest tokens.
            top_p: sample only among the likeliest tokens holding ``top_p`` of the probability.
            seed: seed of the sampling (None: different every call).

        Example:
            >>> lm.generate("Make America", max_tokens=30, seed=0)   # doctest: +SKIP
        """
        import torch

        if not isinstance(prompt, str):
            raise ConfigError(f"prompt must be a string, got {type(prompt).__name__}")
        if not isinstance(max_tokens, int) or max_tokens < 0:
            raise ConfigError(f"max_tokens must be an integer >= 0, got {max_tokens!r}")
        if not temperature >= 0 or not math.isfinite(temperature):
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")
        if top_p is not None and not 0 < top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {top_p}")
        unknown = self.tokenizer.unknown_chars(prompt)
        if unknown:
            shown = " ".join(repr(c) for c in unknown[:10])
            raise DataError(f"the prompt holds characters this character-level model never saw in training: {shown}; "
                            "remove them, or train with tokenizer='bpe', which reads any text")
        if max_tokens == 0:
            return ""
        ids = self._start + self.tokenizer.encode(prompt)
        generator = torch.Generator().manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
        new = sample_tokens(self.model, ids, max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                            top_p=top_p, generator=generator)
        # Byte-level tokens may split a character: decode together with the prompt, then cut it off.
        prompt_ids = self.tokenizer.encode(prompt)
        full = self.tokenizer.decode(prompt_ids + new)
        head = self.tokenizer.decode(prompt_ids)
        return full[len(head):] if full.startswith(head) else self.tokenizer.decode(new)

    def score_tokens(self, ids: torch.Tensor) -> float:
        """Summed next-token loss (nats) of every token of ``ids`` after the first.

        Non-overlapping windows of ``context`` tokens: each token is predicted from the tokens
        before it in its window (as in training).
        """
        import torch
        import torch.nn.functional as F

        T = self.context
        total = 0.0
        with torch.inference_mode():
            n_full = (len(ids) - 1) // T
            if n_full:
                x = ids[: n_full * T].view(n_full, T)
                y = ids[1 : n_full * T + 1].view(n_full, T)
                for i in range(0, n_full, 64):
                    logits = self.model(x[i : i + 64])  # (b, T, V)
                    total += float(F.cross_entropy(logits.flatten(0, 1).float(), y[i : i + 64].flatten(), reduction="sum"))
            rest = ids[n_full * T :]
            if len(rest) > 1:
                logits = self.model(rest[:-1][None])[0]  # (t, V)
                total += float(F.cross_entropy(logits.float(), rest[1:], reduction="sum"))
        return total

    def evaluate(self, data: Any, *, source: str = "text") -> dict[str, float]:
        """Loss on a corpus (a path, folder, table or list of strings: see :func:`read_corpus`).

        Returns ``nats_per_char``, ``bits_per_char``, ``nats_per_token``, ``chars``, ``tokens``
        and ``unknown_chars`` (characters a character-level model never saw: scored as its
        unknown token, which it never predicts well).
        """
        text, name = read_corpus(data)
        ids = encode_text(self.tokenizer, text)
        if len(ids) < 2:
            raise DataError(f"{name if source == 'text' else source} is too short to score (needs 2 tokens)")
        nats = self.score_tokens(ids)
        chars = len(text)
        return {"nats_per_char": nats / chars, "bits_per_char": nats / chars / math.log(2),
                "nats_per_token": nats / (len(ids) - 1), "chars": float(chars), "tokens": float(len(ids)),
                "unknown_chars": float(sum(text.count(c) for c in self.tokenizer.unknown_chars(text)))}

    def predict_frame(self, rows: Any, *, source: str = "rows") -> Any:
        """Language models do not predict table columns: use ``deepfit generate`` / :meth:`generate`."""
        raise DataError("this is a language model: it generates text rather than predicting columns; "
                        "use `deepfit generate MODEL --prompt ...` (Python: load(MODEL).generate(...)), "
                        "or `deepfit evaluate MODEL corpus.txt` for its loss")

    # ------------------------------------------------------------------ persistence

    def files(self) -> dict[str, bytes]:
        """The artifact's files as bytes (``deepfit.json``, ``model.safetensors``)."""
        from deepfit.artifact import artifact_files

        meta = {"kind": "lm", "task": "lm", "model": {"name": "gpt", "config": self.model.config()},
                "tokenizer": self.tokenizer.state_dict(),
                "metrics": {k: float(v) for k, v in self.metrics.items() if math.isfinite(v)}, "info": self.info}
        return artifact_files(meta, self.model.state_dict())

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the artifact to a new directory (it appears complete or not at all)."""
        from deepfit.artifact import write_artifact

        return write_artifact(directory, self.files())

    @classmethod
    def load(cls, directory: str | os.PathLike) -> LMPredictor:
        """Load an artifact written by :meth:`save`; validates the JSON before reading any weights."""
        from deepfit.artifact import ArtifactError, read_meta, read_weights, require_fields
        from deepfit.features.tokenizer import Tokenizer
        from deepfit.models.gpt import GPT

        meta = read_meta(directory)
        require_fields(meta, {"tokenizer": dict}, directory)
        if meta.get("kind") != "lm" or meta["task"] != "lm":
            raise ArtifactError(f"{directory} holds a {meta.get('kind')} model, not a language model")
        if meta["model"]["name"] != "gpt":
            raise ArtifactError(f"{directory}: unknown language model {meta['model']['name']!r} (this deepfit knows 'gpt')")
        tokenizer = Tokenizer.from_state(meta["tokenizer"])
        try:
            model = GPT(**meta["model"]["config"])
        except (TypeError, ConfigError) as e:
            raise ArtifactError(f"{directory}/deepfit.json has a bad model config: {e}") from e
        if model.vocab_size != tokenizer.vocab_size:
            raise ArtifactError(f"{directory}/deepfit.json: the model has {model.vocab_size} token ids but the "
                                f"tokenizer {tokenizer.vocab_size}; the artifact is inconsistent")
        model.load_state_dict(read_weights(directory, {k: v.shape for k, v in model.state_dict().items()}))
        metrics = {k: v for k, v in meta["metrics"].items() if isinstance(v, (int, float))}
        return cls(model, tokenizer, metrics=metrics, info=meta.get("info", {}))

    def __repr__(self) -> str:
        return (f"LMPredictor(tokenizer={self.tokenizer.kind!r}, vocab={self.tokenizer.vocab_size}, "
                f"context={self.context}, metrics={self.metrics})")


# ----------------------------------------------------------------------------- fit


def fit_lm(data: Any, settings: LMSettings | None = None, *, out: str | os.PathLike | None = None,
           resume: bool = False, progress: bool = True) -> LMPredictor:
    """Train a GPT on a corpus; returns an :class:`LMPredictor` (see the module docstring).

    Args:
        data: the corpus (see :func:`read_corpus`).
        settings: an :class:`LMSettings` (default: the tuned defaults).
        out: run directory, built in ``<out>.incomplete/`` and renamed when complete.
        resume: continue the interrupted run in ``out`` (same settings, same corpus).
        progress: print progress.

    Example:
        >>> lm = fit_lm("corpus.txt", LMSettings(time_limit=60), out="runs/lm")   # doctest: +SKIP
        >>> lm.metrics["valid_bits_per_char"]                                    # doctest: +SKIP
    """
    import torch

    from deepfit.engine import distributed
    from deepfit.engine.callbacks import CSVLogger, TimeLimit
    from deepfit.engine.learner import Learner
    from deepfit.engine.rng import seed_everything
    from deepfit.engine.schedules import CosineWarmup, TimeCosine
    from deepfit.features.tokenizer import Tokenizer
    from deepfit.models.gpt import GPT
    from deepfit.rundir import RunDir

    t_start = time.perf_counter()
    settings = settings or LMSettings()
    # Under torchrun every rank trains on its own windows of each global batch; rank 0 writes the run.
    ddp = distributed.setup()
    run = RunDir(out) if out is not None else None
    stored_tok = None
    if run is not None and resume:
        stored = run.stored()
        if run.complete:
            return LMPredictor.load(run.final)
        settings = LMSettings.from_json(stored["settings"])
        stored_tok = stored.get("tokenizer")
    elif run is not None:
        run.check_new()
    elif resume:
        raise ConfigError("resume=True needs out= (the run directory to continue)")

    text, source = read_corpus(data, text_column=settings.text_column)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if run is not None and resume and stored.get("text_sha256") not in (None, digest):
        raise ConfigError(f"--resume: {source} is not the corpus the run in {run.work} started with")
    cut = int(len(text) * (1 - settings.valid_fraction))
    train_text, valid_text = text[:cut], text[cut:]
    if not train_text.strip():
        raise DataError(f"{source}: the training part (first {1 - settings.valid_fraction:.0%}) holds no text")

    t0 = time.perf_counter()
    if stored_tok is not None:
        tok = Tokenizer.from_state(stored_tok)
    else:
        tok = Tokenizer.train(_lines(train_text), kind=settings.tokenizer, vocab_size=settings.vocab_size)
    train_ids, valid_ids = encode_text(tok, train_text), encode_text(tok, valid_text)
    tokenize_s = time.perf_counter() - t0
    T = settings.context
    if len(train_ids) < T + 1:
        raise DataError(
            f"{source} is too small: its training part has {len(train_ids)} tokens ({len(train_text)} characters), "
            f"fewer than one context window of {T} tokens plus one. Give more text (roughly "
            f"{math.ceil((T + 1) * len(train_text) / max(len(train_ids), 1) / (1 - settings.valid_fraction))}+ "
            f"characters), or lower the context (LMSettings(context=...))")
    if len(valid_ids) < 2:
        raise DataError(f"{source}: the validation part (last {settings.valid_fraction:.0%}, {len(valid_text)} "
                        "characters) is shorter than 2 tokens; give more text")

    distributed.barrier()  # every rank has checked `out` before rank 0 creates it
    if run is not None and not resume and ddp.is_main:  # inputs are checked: only now does the run folder appear
        run.start({"settings": settings.to_json(), "data": source, "text_sha256": digest,
                   "tokenizer": tok.state_dict()})
    seed_everything(settings.seed)
    model = GPT(tok.vocab_size, T, dim=settings.dim, layers=settings.layers, heads=settings.heads,
                norm=settings.norm, mlp=settings.mlp, dropout=settings.dropout)
    NatsPerChar = _nats_metric()
    valid_chars = len(valid_text)
    tokens_per_char = (len(valid_ids) - 1) / max(valid_chars, 1)
    steps_per_epoch = min(settings.eval_every, settings.max_steps)
    epochs = math.ceil(settings.max_steps / steps_per_epoch)
    train_loader = _window_batches(train_ids, context=T, batch_size=settings.batch_size, steps=steps_per_epoch,
                                   seed=settings.seed, rank=ddp.rank, world_size=ddp.world_size)
    callbacks: list[Any] = []
    # CosineWarmup reads warmup >= 1 as a step count (0 = none).
    schedule: Any = CosineWarmup(settings.lr, warmup=float(settings.warmup), final_frac=settings.final_lr_frac)
    time_limit = None
    if settings.time_limit:
        left = settings.time_limit - (time.perf_counter() - t_start)
        time_limit = TimeLimit(max(left, 0.05 * settings.time_limit))
        callbacks.append(time_limit)
        schedule = TimeCosine(settings.lr, settings.warmup, settings.final_lr_frac,
                              clock=lambda: time_limit.elapsed() / time_limit.seconds)
    if run is not None:
        callbacks.append(CSVLogger(run.work / "history.csv"))
    beta2 = settings.beta2

    def adamw(groups: list[dict]) -> torch.optim.Optimizer:
        return torch.optim.AdamW(groups, lr=settings.lr, betas=(0.9, beta2), fused=True)

    learner = Learner(
        model, train_loader, _valid_windows(valid_ids, T, settings.valid_windows), loss=_lm_loss,
        metrics=[NatsPerChar(tokens_per_char)], optimizer=adamw, lr=settings.lr,
        weight_decay=settings.weight_decay, grad_clip=settings.grad_clip, batch_size=settings.batch_size,
        valid_batch_size=64, compile=settings.compile, seed=settings.seed, progress=progress,
        out_dir=run.work if run is not None else None, checkpoint_every=settings.checkpoint_every,
        callbacks=callbacks,
    )
    last = run.work / "last.ckpt" if run is not None else None
    t_train = time.perf_counter()
    history = learner.fit(epochs, schedule=schedule,
                          resume=last if resume and last is not None and last.exists() else None)
    train_s = time.perf_counter() - t_train
    model.eval()

    predictor = LMPredictor(model, tok)
    t_eval = time.perf_counter()
    nats = predictor.score_tokens(valid_ids)
    unigram = _unigram_entropy(train_text)
    metrics = {"valid_nats_per_char": nats / valid_chars, "valid_bits_per_char": nats / valid_chars / math.log(2),
               "valid_nats_per_token": nats / (len(valid_ids) - 1)}
    predictor.metrics = metrics
    predictor.info = {
        "source": source, "chars": len(text), "train_chars": len(train_text), "valid_chars": valid_chars,
        "train_tokens": len(train_ids), "valid_tokens": len(valid_ids),
        "chars_per_token": round(len(train_text) / len(train_ids), 4), "tokenizer": tok.kind,
        "vocab_size": tok.vocab_size, "parameters": model.num_parameters(), "steps": learner.step,
        "stopped_by_time_limit": bool(time_limit and time_limit.stopped), "tokenize_seconds": round(tokenize_s, 2),
        "train_seconds": round(train_s, 2), "eval_seconds": round(time.perf_counter() - t_eval, 2),
        "fit_seconds": round(time.perf_counter() - t_start, 2), "compiled": bool(learner._runner.compiled),
        "unigram_nats_per_char": round(unigram, 4),
    }
    if run is not None and ddp.is_main:
        from deepfit.engine.checkpoint import atomic_write_bytes

        for name, blob in predictor.files().items():
            atomic_write_bytes(run.work / name, blob)
        run.write_json("metrics.json", metrics)
        _write_report(run.work / "report.html", predictor, settings, history)
        run.finish()
    return predictor


def _unigram_entropy(text: str) -> float:
    """Entropy (nats/char) of the character frequencies: what a model without context reaches."""
    from collections import Counter

    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log(c / n) for c in counts.values())


def _write_report(path: Path, predictor: LMPredictor, settings: LMSettings, history: list[dict]) -> None:
    import html

    from deepfit.report import write_report

    samples = [predictor.generate("", max_tokens=120, temperature=0.8, seed=s) for s in range(3)]
    body = "".join(f"<pre style='white-space:pre-wrap;border:1px solid #ddd;padding:6px'>{html.escape(s)}</pre>"
                   for s in samples)
    info = predictor.info
    summary = {"corpus": info["source"], "characters": info["chars"], "tokenizer": f"{info['tokenizer']} "
               f"({info['vocab_size']} ids, {info['chars_per_token']:.2f} chars/token)",
               "model": f"GPT {settings.layers}x{settings.dim}, {settings.heads} heads, context {settings.context}, "
                        f"{info['parameters']:,} parameters", "steps": info["steps"],
               "train seconds": info["train_seconds"], "unigram entropy (nats/char)": info["unigram_nats_per_char"]}
    write_report(path, title="deepfit: language model", summary=summary, metrics=predictor.metrics,
                 history=history, sections=[("Samples (temperature 0.8, seeds 0-2)", body)])


# ----------------------------------------------------------------------------- CLI and demo


def train_cli(args: Any) -> int:
    """``deepfit train DATA --task lm``: returns the exit code."""
    if getattr(args, "epochs", None) is not None:
        raise ConfigError("--epochs does not apply to --task lm; use --time-limit S (or LMSettings(steps=...))")
    out = args.out or f"runs/{Path(args.data).stem or 'lm'}"
    given = {"time_limit": args.time_limit, "seed": args.seed, "batch_size": args.batch_size, "lr": args.lr,
             "checkpoint_every": args.checkpoint_every, "text_column": getattr(args, "target", None)}
    given = {k: v for k, v in given.items() if v is not None}
    if args.resume and any(k != "text_column" for k in given):
        raise ConfigError("--resume continues with the run's stored settings; drop "
                          + ", ".join("--" + k.replace("_", "-") for k in given if k != "text_column"))
    predictor = fit_lm(args.data, LMSettings(**given), out=out, resume=args.resume, progress=not args.quiet)
    m = predictor.metrics
    print(f"valid_nats_per_char={m['valid_nats_per_char']:.4f} valid_bits_per_char={m['valid_bits_per_char']:.4f}")
    print(f"run directory: {out}  (report: {Path(out) / 'report.html'}; try: deepfit generate {out} --prompt ...)")
    return 0


def generate_cli(args: Any) -> int:
    """``deepfit generate MODEL --prompt ...``: prints the prompt and its continuation."""
    import sys

    from deepfit.predict import load

    predictor = load(args.model)
    if not isinstance(predictor, LMPredictor):
        raise ConfigError(f"{args.model} is a {predictor.task} model, not a language model; "
                          "`deepfit generate` needs a model trained with --task lm")
    text = predictor.generate(args.prompt, max_tokens=args.max_tokens, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    sys.stdout.write(args.prompt + text + ("" if text.endswith("\n") else "\n"))
    return 0


def demo(out: str | os.PathLike, *, time_limit: float = 60.0, progress: bool = True) -> tuple[LMPredictor, str]:
    """The demo's language model: a short run on the tweets corpus and one generated sample.

    Trains with the default settings for ``time_limit`` seconds into ``out`` (replaced if it
    exists) and returns the predictor and a sample continuing "I will".

    Example:
        >>> lm, sample = demo("runs/demo/lm", time_limit=60)   # doctest: +SKIP
    """
    import shutil

    from deepfit.datasets import tweets_corpus

    out = Path(out)
    for old in (out, out.with_name(out.name + ".incomplete")):
        shutil.rmtree(old, ignore_errors=True)
    predictor = fit_lm(tweets_corpus().splitlines(), LMSettings(time_limit=time_limit), out=out, progress=progress)
    return predictor, "I will" + predictor.generate("I will", max_tokens=60, temperature=0.8, seed=0)
