"""A trained language model with its tokenizer (:class:`LMPredictor`), and token sampling.

:func:`sample_tokens` extends a token list with temperature / top-k / top-p sampling through a
key/value cache (or, for reference, full recomputation); :class:`LMPredictor` wraps a GPT and
its tokenizer with ``generate``, ``evaluate``, ``save`` and ``load`` (safetensors + JSON).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepfit.data.corpus import encode_text, read_corpus
from deepfit.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from deepfit.features.tokenizer import Tokenizer
    from deepfit.models.gpt import GPT

__all__ = ["LMPredictor", "sample_tokens"]


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
