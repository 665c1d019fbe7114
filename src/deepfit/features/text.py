"""Text columns: hashed word uni- and bi-grams plus a few style tokens (fastText-style).

Each text becomes up to 64 token ids in 1..2**18-1 (0 = padding), hashed with ``zlib.crc32`` (stable
across processes and machines, unlike ``hash()``), so there is nothing to fit and no vocabulary
to store. Tokens, in this order, truncated to 64:

* style tokens: the length bucket (``<len k>``, k = log2 of the character count), the final
  character class (``<end !>``, ``<end ?>``, ``<end .>``, ``<end w>`` for a word character),
  ``<caps>`` for each all-capitals word of 2+ letters, ``<url>`` for each link;
* for each word (``\\w+`` runs and single punctuation marks, lower-cased; links become
  ``<url>``): the word, then the bigram it closes with the previous word.

A missing text is the single token ``<missing>``. The model mean-pools embeddings of the ids.

Example:
    >>> import pandas as pd
    >>> f = TextFeature("review").fit(pd.Series(["Great value!"], dtype=object))
    >>> ids = f.encode(pd.Series(["Great value!", None], dtype=object))["text"]
    >>> ids.shape, int((ids[0, 0] > 0).sum()), int((ids[1, 0] > 0).sum())
    ((2, 1, 64), 7, 1)
"""

from __future__ import annotations

import math
import re
import zlib
from typing import Self

import numpy as np
import pandas as pd

from deepfit.errors import DataError
from deepfit.features.base import Feature, require_keys

__all__ = ["TextFeature", "tokenize", "MAX_TOKENS", "BUCKETS"]

MAX_TOKENS = 64
BUCKETS = 2**18
_URL = re.compile(r"https?://\S+|www\.\S+")
_TOKEN = re.compile(r"<url>|\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """The token strings of one text (before hashing and truncation)."""
    stripped = text.strip()
    body = _URL.sub(" <url> ", stripped)
    raw = _TOKEN.findall(body)
    last = stripped[-1:] if stripped else ""
    end = "w" if (last.isalnum() or last == "_") else (last if last in "!?." else "other")
    style = [f"<len {int(math.log2(len(stripped) + 1))}>", f"<end {end}>"]
    style += ["<caps>" for w in raw if len(w) >= 2 and w.isalpha() and w.isupper()]
    style += ["<url>" for w in raw if w == "<url>"]
    words = [w.lower() for w in raw]
    grams: list[str] = []
    for i, w in enumerate(words):
        grams.append(w)
        if i:
            grams.append(f"{words[i - 1]} {w}")
    return style + grams


def _hash(token: str, buckets: int) -> int:
    return zlib.crc32(token.encode("utf-8")) % (buckets - 1) + 1


class TextFeature(Feature):
    """A free-text column → ``"text"`` (N, 1, 64) int64 hashed token ids, 0 = padding."""

    kind = "text"

    def __init__(self, name: str, *, max_tokens: int = MAX_TOKENS, buckets: int = BUCKETS) -> None:
        super().__init__(name)
        self.max_tokens = max_tokens
        self.buckets = buckets

    def fit(self, values: pd.Series) -> Self:
        self.fitted = True  # hashing needs no statistics
        return self

    def ids(self, text: str | None) -> list[int]:
        """Hashed ids of one text (``None`` = missing), at most ``max_tokens`` of them."""
        tokens = ["<missing>"] if text is None else tokenize(text)
        return [_hash(t, self.buckets) for t in tokens[: self.max_tokens]]

    def encode(self, values: pd.Series) -> dict[str, np.ndarray]:
        self._check_fitted()
        out = np.zeros((len(values), 1, self.max_tokens), dtype=np.int64)  # (N, 1, L)
        cache: dict[str | None, list[int]] = {}
        present = values.notna().to_numpy()
        for i, (ok, v) in enumerate(zip(present, values.to_numpy(dtype=object))):
            key = str(v) if ok else None
            ids = cache.get(key)
            if ids is None:
                ids = cache[key] = self.ids(key)
            out[i, 0, : len(ids)] = ids
        return {"text": out}

    def n_text(self) -> int:
        return 1

    def state_dict(self) -> dict:
        self._check_fitted()
        return {"max_tokens": self.max_tokens, "buckets": self.buckets}

    @classmethod
    def from_state(cls, name: str, state: dict) -> Self:
        what = f"text column '{name}'"
        require_keys(state, ("max_tokens", "buckets"), what=what)
        m, b = state["max_tokens"], state["buckets"]
        if not (isinstance(m, int) and m >= 1 and isinstance(b, int) and b >= 2):
            raise DataError(f"{what}: saved max_tokens/buckets must be positive integers; retrain the model")
        f = cls(name, max_tokens=m, buckets=b)
        f.fitted = True
        return f
