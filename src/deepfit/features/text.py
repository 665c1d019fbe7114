"""Text columns: wide (sparse n-grams), deep (BPE tokens) and style numbers, all fitted on training rows.

One text column becomes three kinds of model input, so that a single model can be both a strong
linear bag-of-n-grams model and a small transformer:

* ``"text"`` / ``"text_w"``: the **n-grams** of the text and their TF-IDF weights, for the
  model's sparse "wide" part. N-grams are case-kept character 1..5-grams and lower-cased word
  1..2-grams (words are ``\\w+`` runs and single punctuation marks). The vocabulary holds the
  n-grams seen in at least ``min_df`` training texts (most frequent ``max_ngrams`` kept);
  weights are sublinear TF (``1 + ln tf``) x smoothed IDF (``ln((1 + n) / (1 + df)) + 1``),
  L2-normalised per text — the classic TF-IDF recipe. N-grams are identified by a 64-bit hash
  of their characters (computed with NumPy over all texts at once); the vocabulary is stored as
  those hashes (base64), so the artifact holds no raw training text. Ids are ``1..V`` (0 = padding).
* ``"tokens"``: byte-level **BPE** ids (:class:`~deepfit.features.tokenizer.Tokenizer`, trained
  on the training texts, case kept, no unknown tokens) — or, with ``tokenizer="char"``, one id
  per character (characters unseen in training → ``<unk>``) — truncated to ``max_tokens``;
  0 = padding.
* ``"num"``: **style numbers**, each a quantile-scaled number with piecewise-linear bins, like
  a number column: characters (HTML entities counted as one), words, share of upper-case
  letters, ``!``, ``?``, ``@``, ``#``, quote marks, links, digits, all-capitals words and
  non-ASCII characters. (A bag of n-grams is blind to length; on tweets, length alone carries
  a point of accuracy.)

* with ``encoder="minilm"`` or ``"both"``: the text's **sentence embedding** by the pretrained
  all-MiniLM-L6-v2 (frozen; ``deepfit.features.sentence``, cached per distinct text), 384 more
  ``"num"`` columns (unit vector x sqrt(384), so each is of unit scale), without bins. With
  ``"minilm"`` the n-gram vocabulary is empty (no wide part). The artifact records the
  encoder's name and the SHA-256 of its weights; loading checks them.

Texts are NFC-normalised first. A missing text encodes as the empty text plus a missing
indicator (when the training rows had missing texts).

Example:
    >>> import pandas as pd
    >>> texts = pd.Series(["Great value!", "Great VALUE", "bad value", "Bad, bad!"], dtype=object)
    >>> f = TextFeature("review").fit(texts)
    >>> out = f.encode(pd.Series(["Great value!", None], dtype=object))
    >>> sorted(out), out["text"].shape[:2], out["num"].shape
    (['num', 'text', 'text_w', 'tokens'], (2, 1), (2, 12))
"""

from __future__ import annotations

import base64
import html
import math
import re
import unicodedata
import zlib
from typing import Self

import numpy as np
import pandas as pd

from deepfit.errors import ConfigError, DataError
from deepfit.features.base import Feature, require_keys
from deepfit.features.number import NumberFeature

__all__ = ["TextFeature", "ngram_hashes", "STYLE", "MAX_TOKENS", "ENCODER_MODES", "EMBED_DIM"]

ENCODER_MODES = ("ngrams", "minilm", "both")
EMBED_DIM = 384  # all-MiniLM-L6-v2's width

MAX_TOKENS = 128  # BPE tokens kept per text (the model's position table has this many rows)
CHAR_N = (1, 5)
WORD_N = (1, 2)
STYLE = ("chars", "words", "upper_share", "exclaims", "questions", "mentions", "hashtags", "quotes", "links",
         "digits", "caps_words", "non_ascii")
_URL = re.compile(r"https?://\S+|www\.\S+")
_WORD = re.compile(r"\w+|[^\w\s]")
_QUOTES = frozenset("\"'“”‘’«»")
_P = np.uint64(0x100000001B3)  # FNV-1a prime: the char n-gram hash multiplier
_MASK64 = (1 << 64) - 1


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def ngram_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """All n-grams of ``texts`` as 64-bit hashes: ``(doc index (M,), hash (M,))``, one entry per occurrence.

    Character n-grams (case kept, n = 1..5) are hashed by a polynomial over the code points,
    computed for every position of every text at once; word n-grams (lower case, n = 1..2) from
    the CRC-32 of each word. The n-gram size and kind are mixed in, so no two kinds collide by
    construction. Deterministic across processes and machines.
    """
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    total = int(lengths.sum())
    docs, hashes = [], []
    if total:
        codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)  # (T,)
        doc_of = np.repeat(np.arange(len(texts)), lengths)  # (T,)
        end_of = np.repeat(np.cumsum(lengths), lengths)  # (T,) exclusive end of each char's text
        pos = np.arange(total)
        h = np.zeros(total, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for n in range(1, CHAR_N[1] + 1):
                # h[i] = hash of codes[i : i + n]; positions whose n-gram runs past their text are dropped.
                if n > total:
                    break
                shifted = np.zeros(total, dtype=np.uint64)
                shifted[: total - n + 1] = codes[n - 1:]
                h = h * _P + shifted + np.uint64(1)
                if n >= CHAR_N[0]:
                    ok = pos + n <= end_of
                    docs.append(doc_of[ok])
                    hashes.append(h[ok] ^ np.uint64(n * 0x9E3779B97F4A7C15 & _MASK64))
    word_docs, word_ids = [], []
    for i, t in enumerate(texts):
        words = _WORD.findall(_URL.sub(" <url> ", t).lower())
        word_docs.extend([i] * len(words))
        word_ids.extend(zlib.crc32(w.encode("utf-8")) for w in words)
    if word_ids:
        wd = np.asarray(word_docs, dtype=np.int64)
        wh = np.asarray(word_ids, dtype=np.uint64)
        with np.errstate(over="ignore"):
            salt = np.uint64(0xC2B2AE3D27D4EB4F)
            docs.append(wd)
            hashes.append((wh + np.uint64(1)) * salt)  # unigrams
            same = wd[1:] == wd[:-1]
            docs.append(wd[1:][same])
            hashes.append(((wh[:-1] * np.uint64(0x1_0000_0001) + wh[1:] + np.uint64(7)) * salt * salt)[same])  # bigrams
    if not docs:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    return np.concatenate(docs), np.concatenate(hashes)


def style_numbers(texts: list[str]) -> np.ndarray:
    """``(N, len(STYLE))`` float64 style counts of the texts (see the module docstring)."""
    out = np.zeros((len(texts), len(STYLE)), dtype=np.float64)
    for i, raw in enumerate(texts):
        t = html.unescape(raw)
        words = t.split()
        letters = [c for c in t if c.isalpha()]
        out[i] = (
            len(t), len(words), sum(c.isupper() for c in letters) / max(len(letters), 1), t.count("!"), t.count("?"),
            t.count("@"), t.count("#"), sum(c in _QUOTES for c in t), len(_URL.findall(t)),
            sum(c.isdigit() for c in t), sum(1 for w in words if len(w) > 1 and w.isalpha() and w.isupper()),
            sum(ord(c) > 127 for c in t),
        )
    return out


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _unb64(s: object, dtype: type, what: str) -> np.ndarray:
    if not isinstance(s, str):
        raise DataError(f"{what}: saved n-gram table must be a base64 string; retrain the model")
    try:
        return np.frombuffer(base64.b64decode(s.encode("ascii"), validate=True), dtype=dtype).copy()
    except (ValueError, TypeError) as e:
        raise DataError(f"{what}: saved n-gram table is damaged ({e}); retrain the model") from e


class TextFeature(Feature):
    """A free-text column → ``"text"``/``"text_w"`` n-grams, ``"tokens"`` BPE ids, ``"num"`` style numbers.

    Args:
        name: the column name.
        min_df: keep n-grams seen in at least this many training texts.
        max_ngrams: keep at most this many n-grams (the most frequent).
        vocab_size: BPE vocabulary size (smaller when the training texts are few).
        max_tokens: tokens kept per text.
        tokenizer: ``"bpe"`` (byte-level BPE) or ``"char"`` (characters).
        encoder: ``"ngrams"``, ``"minilm"`` (sentence embeddings, no n-grams) or ``"both"``.
    """

    kind = "text"

    def __init__(self, name: str, *, min_df: int = 2, max_ngrams: int = 200_000, vocab_size: int = 2048,
                 max_tokens: int = MAX_TOKENS, tokenizer: str = "bpe", encoder: str = "ngrams") -> None:
        super().__init__(name)
        if encoder not in ENCODER_MODES:
            raise ConfigError(f"text column '{name}': encoder must be one of {', '.join(ENCODER_MODES)}, got {encoder!r}")
        self.encoder = encoder
        self.encoder_source: dict[str, str] | None = None  # {"name", "sha256"} of the pretrained weights
        if min_df < 1 or max_ngrams < 1 or vocab_size < 8 or max_tokens < 1:
            raise ConfigError(f"text column '{name}': min_df, max_ngrams, max_tokens must be >= 1 and vocab_size >= 8")
        if tokenizer not in ("bpe", "char"):
            raise ConfigError(f"text column '{name}': tokenizer must be 'bpe' or 'char', got {tokenizer!r}")
        self.tokenizer_kind = tokenizer
        self.min_df, self.max_ngrams, self.vocab_size, self.max_tokens = min_df, max_ngrams, vocab_size, max_tokens
        self.vocab = np.zeros(0, np.uint64)  # sorted n-gram hashes; id = position + 1
        self.idf = np.zeros(0, np.float32)
        self.n_docs = 0
        self.tokenizer = None
        self.style: list[NumberFeature] = []
        self.missing_indicator = False

    # ------------------------------------------------------------------ fit / encode

    @staticmethod
    def _texts(values: pd.Series) -> tuple[list[str], np.ndarray]:
        present = values.notna().to_numpy(dtype=bool)
        texts = [_normalise(str(v)) if ok else "" for ok, v in zip(present, values.to_numpy(dtype=object))]
        return texts, present

    def fit(self, values: pd.Series) -> Self:
        from deepfit.features.tokenizer import Tokenizer

        texts, present = self._texts(values)
        n = len(texts)
        docs, hashes = ngram_hashes(texts)
        pairs = np.zeros((2, 0), np.uint64)
        if len(docs):
            pairs = np.unique(np.stack([docs.astype(np.uint64), hashes]), axis=1)  # (2, distinct (doc, n-gram))
        uniq, df = np.unique(pairs[1], return_counts=True)
        keep = df >= self.min_df
        uniq, df = uniq[keep], df[keep]
        if len(uniq) > self.max_ngrams:
            top = np.sort(np.argsort(-df, kind="stable")[: self.max_ngrams])
            uniq, df = uniq[top], df[top]
        self.vocab = uniq  # sorted (np.unique)
        self.idf = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
        self.n_docs = n
        corpus = [t for t in texts if t]
        if not corpus:
            raise DataError(f"text column '{self.name}' has no text in the training rows")
        vocab_size = int(min(self.vocab_size, max(256 + 8, 4 * int(math.sqrt(sum(map(len, corpus)))))))
        self.tokenizer = Tokenizer.train(corpus, kind=self.tokenizer_kind, vocab_size=vocab_size)
        stats = style_numbers(texts)
        self.style = [NumberFeature(f"{self.name}:{s}").fit(pd.Series(stats[:, j])) for j, s in enumerate(STYLE)]
        self.missing_indicator = bool((~present).any())
        self.fitted = True
        self.use(self.encoder)
        return self

    def use(self, encoder: str) -> Self:
        """Switch a fitted feature to ``encoder`` (the table task's choice, made after fitting with
        ``"both"``): ``"minilm"`` drops the n-gram vocabulary, ``"ngrams"`` the encoder."""
        from deepfit.features.sentence import encoder_identity

        if encoder not in ENCODER_MODES:
            raise ConfigError(f"text column '{self.name}': encoder must be one of {', '.join(ENCODER_MODES)}, "
                              f"got {encoder!r}")
        self.encoder = encoder
        self.encoder_source = None if encoder == "ngrams" else (self.encoder_source or encoder_identity())
        if encoder == "minilm":
            self.vocab, self.idf = np.zeros(0, np.uint64), np.zeros(0, np.float32)
        return self

    def embeddings(self, values: pd.Series, *, progress: bool = False) -> np.ndarray:
        """``(N, EMBED_DIM)`` float32 sentence embeddings x sqrt(EMBED_DIM) (a missing text: the empty text's)."""
        from deepfit.features.sentence import embed_texts

        texts, _ = self._texts(values)
        return embed_texts(texts, progress=progress) * np.float32(math.sqrt(EMBED_DIM))

    def ngrams(self, values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """``(N, G)`` n-gram ids (1..V, 0 = padding) and TF-IDF weights of raw values."""
        return self._ngrams(self._texts(values)[0])

    def encode(self, values: pd.Series) -> dict[str, np.ndarray]:
        self._check_fitted()
        texts, present = self._texts(values)
        ids, weights = self._ngrams(texts)
        tokens = self._tokens(texts)
        stats = style_numbers(texts)
        num = [f.encode(pd.Series(stats[:, j]))["num"] for j, f in enumerate(self.style)]
        if self.missing_indicator:
            num.append((~present).astype(np.float32)[:, None])
        if self.encoder != "ngrams":
            num.append(self.embeddings(values))
        return {"num": np.concatenate(num, axis=1).astype(np.float32), "text": ids[:, None], "text_w": weights[:, None],
                "tokens": tokens[:, None]}

    def _ngrams(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(N, G)`` int64 n-gram ids (0 = padding) and float32 TF-IDF weights, G >= 1."""
        n = len(texts)
        docs, hashes = ngram_hashes(texts)
        pos = np.searchsorted(self.vocab, hashes)
        pos_c = np.minimum(pos, max(len(self.vocab) - 1, 0))
        known = np.zeros(len(hashes), bool)
        if len(self.vocab):
            known = (pos < len(self.vocab)) & (self.vocab[pos_c] == hashes)
        key = docs[known] * (len(self.vocab) + 1) + pos[known]  # (doc, id) pairs, one per occurrence
        uniq, tf = np.unique(key, return_counts=True)
        doc, vid = uniq // (len(self.vocab) + 1), uniq % (len(self.vocab) + 1)
        w = (1.0 + np.log(tf)) * self.idf[vid]
        norm = np.sqrt(np.bincount(doc, weights=w * w, minlength=n))
        w = w / np.maximum(norm[doc], 1e-12)
        counts = np.bincount(doc, minlength=n)
        g = max(int(counts.max(initial=0)), 1)
        ids = np.zeros((n, g), np.int64)
        weights = np.zeros((n, g), np.float32)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        col = np.arange(len(doc)) - starts[doc]  # rank within its text (uniq is sorted by doc)
        ids[doc, col] = vid + 1
        weights[doc, col] = w
        return ids, weights

    def _tokens(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer.encode_batch(texts) if texts else []
        length = max(1, min(self.max_tokens, max((len(e) for e in enc), default=1)))
        out = np.zeros((len(texts), length), np.int64)
        for i, e in enumerate(enc):
            e = e[: self.max_tokens]
            out[i, : len(e)] = e
        return out

    # ------------------------------------------------------------------ what the model needs

    def num_bins(self) -> list[list[float] | None]:
        return ([b for f in self.style for b in f.num_bins()] + ([None] if self.missing_indicator else [])
                + ([None] * EMBED_DIM if self.encoder != "ngrams" else []))

    def n_text(self) -> int:
        return 1

    def ngram_vocab_size(self) -> int:
        """Ids in the n-gram table, padding included (``V + 1``)."""
        return len(self.vocab) + 1

    def token_vocab_size(self) -> int:
        """Ids in the BPE table (padding is id 0 of it)."""
        self._check_fitted()
        return self.tokenizer.vocab_size

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        self._check_fitted()
        return {"min_df": self.min_df, "max_ngrams": self.max_ngrams, "vocab_size": self.vocab_size,
                "max_tokens": self.max_tokens, "n_docs": self.n_docs,
                "ngrams": _b64(self.vocab.astype("<u8")), "idf": _b64(self.idf.astype("<f4")),
                "tokenizer": self.tokenizer.state_dict(), "style": [f.state_dict() for f in self.style],
                "missing_indicator": self.missing_indicator,
                **({"encoder": self.encoder, "encoder_source": self.encoder_source} if self.encoder != "ngrams" else {})}

    @classmethod
    def from_state(cls, name: str, state: dict) -> Self:
        from deepfit.features.tokenizer import Tokenizer

        what = f"text column '{name}'"
        require_keys(state, ("min_df", "max_ngrams", "vocab_size", "max_tokens", "ngrams", "idf", "tokenizer", "style",
                             "missing_indicator"), what=what)
        tok = state["tokenizer"]
        kind = str(tok.get("kind", "bpe")) if isinstance(tok, dict) else "bpe"
        try:
            f = cls(name, min_df=int(state["min_df"]), max_ngrams=int(state["max_ngrams"]),
                    vocab_size=int(state["vocab_size"]), max_tokens=int(state["max_tokens"]),
                    tokenizer=kind)
        except (TypeError, ValueError, ConfigError) as e:
            raise DataError(f"{what}: saved sizes are invalid ({e}); retrain the model") from e
        f.vocab = _unb64(state["ngrams"], np.dtype("<u8"), what).astype(np.uint64)
        f.idf = _unb64(state["idf"], np.dtype("<f4"), what).astype(np.float32)
        if len(f.vocab) != len(f.idf) or (len(f.vocab) > 1 and not (np.diff(f.vocab) > 0).all()):
            raise DataError(f"{what}: saved n-gram table is inconsistent; the file is damaged: retrain the model")
        if not np.isfinite(f.idf).all():
            raise DataError(f"{what}: saved IDF weights hold NaN/inf; retrain the model")
        f.n_docs = int(state.get("n_docs", 0))
        f.tokenizer = Tokenizer.from_state(state["tokenizer"])
        if not isinstance(state["style"], list) or len(state["style"]) != len(STYLE):
            raise DataError(f"{what}: saved style numbers must be a list of {len(STYLE)} states; retrain the model")
        f.style = [NumberFeature.from_state(f"{name}:{s}", st) for s, st in zip(STYLE, state["style"])]
        if not isinstance(state["missing_indicator"], bool):
            raise DataError(f"{what}: saved 'missing_indicator' must be true or false; retrain the model")
        f.missing_indicator = state["missing_indicator"]
        f.fitted = True
        encoder = state.get("encoder", "ngrams")  # absent: an n-gram text column (every artifact before it)
        if encoder != "ngrams":
            f._check_encoder(encoder, state.get("encoder_source"))
        return f

    def _check_encoder(self, encoder: object, source: object) -> None:
        """A saved column read through the pretrained encoder: the same weights must be installed."""
        from deepfit.features.sentence import encoder_identity

        what = f"text column '{self.name}'"
        if encoder not in ENCODER_MODES or not isinstance(source, dict) or not {"name", "sha256"} <= set(source):
            raise DataError(f"{what}: saved encoder {encoder!r} / source {source!r} is damaged; retrain the model")
        installed = encoder_identity()  # ConfigError naming the install command when the package is missing
        if installed["sha256"] != source["sha256"]:
            raise DataError(f"{what}: the model was trained with {source['name']} weights of SHA-256 "
                            f"{source['sha256'][:16]}..., but the installed ones are {installed['sha256'][:16]}...; "
                            "install the package version it was trained with, or retrain the model")
        self.encoder, self.encoder_source = str(encoder), {"name": str(source["name"]), "sha256": str(source["sha256"])}
