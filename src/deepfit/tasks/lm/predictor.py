"""A trained language model with its tokenizer: :class:`LMPredictor` (``generate``, ``evaluate``,
``score_tokens``; saved as safetensors + JSON through :class:`~deepfit.tasks.base.BasePredictor`)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from deepfit.data.corpus import encode_text, read_corpus
from deepfit.errors import ConfigError, DataError
from deepfit.tasks.base import BasePredictor
from deepfit.tasks.lm.sampling import sample_tokens

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from deepfit.features.tokenizer import Tokenizer
    from deepfit.models.gpt import GPT

__all__ = ["LMPredictor"]


class LMPredictor(BasePredictor):
    """A trained language model with its tokenizer: ``generate``, ``evaluate``, ``save``/``load``."""

    kind = "lm"
    tasks = ("lm",)
    model_names = ("gpt",)
    required = {"tokenizer": dict}
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
                 top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                 on_text: Callable[[str], None] | None = None) -> str:
        """Continue ``prompt``; returns the generated text (without the prompt).

        Args:
            prompt: the start of a document ("" = a new document).
            max_tokens: tokens to generate (any number: see the module docs on the window).
            temperature: 0 = always the likeliest token; higher = more varied.
            top_k: sample only among the ``top_k`` likeliest tokens.
            top_p: sample only among the likeliest tokens holding ``top_p`` of the probability.
            seed: seed of the sampling (None: different every call).
            on_text: called with each new piece of text as it is generated (streaming); the
                pieces joined are the returned text. A piece is held back while it ends in a
                partly generated character.

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
        prompt_ids = self.tokenizer.encode(prompt)
        head = self.tokenizer.decode(prompt_ids)

        def text_of(new: list[int]) -> str:
            # Byte-level tokens may split a character: decode together with the prompt, then cut it off.
            full = self.tokenizer.decode(prompt_ids + new)
            return full[len(head):] if full.startswith(head) else self.tokenizer.decode(new)

        sent: list[str] = []

        def stream(new: list[int]) -> None:
            text, done = text_of(new), "".join(sent)
            if text.startswith(done) and not text.endswith("\ufffd") and len(text) > len(done):
                sent.append(text[len(done):])
                on_text(sent[-1])  # type: ignore[misc]

        new = sample_tokens(self.model, ids, max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                            top_p=top_p, generator=generator, on_token=stream if on_text is not None else None)
        text = text_of(new)
        done = "".join(sent)
        if on_text is not None and text.startswith(done) and len(text) > len(done):
            on_text(text[len(done):])
        return text

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

    @property
    def model_name(self) -> str:
        return "gpt"

    def _meta(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer.state_dict()}

    @classmethod
    def _from_meta(cls, meta: dict[str, Any], directory: Path) -> Self:
        from deepfit.artifact import ArtifactError
        from deepfit.features.tokenizer import Tokenizer
        from deepfit.models.gpt import GPT

        tokenizer = Tokenizer.from_state(meta["tokenizer"])
        model = GPT(**meta["model"]["config"])
        if model.vocab_size != tokenizer.vocab_size:
            raise ArtifactError(f"{directory}/deepfit.json: the model has {model.vocab_size} token ids but the "
                                f"tokenizer {tokenizer.vocab_size}; the artifact is inconsistent")
        return cls(model, tokenizer, metrics=cls._stored_metrics(meta), info=meta.get("info", {}))

    def __repr__(self) -> str:
        return (f"LMPredictor(tokenizer={self.tokenizer.kind!r}, vocab={self.tokenizer.vocab_size}, "
                f"context={self.context}, metrics={self.metrics})")
