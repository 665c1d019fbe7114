"""Tokenizers trained on the training split and stored as JSON inside the artifact (HF ``tokenizers``).

Three kinds:

* ``"bpe"``: byte-level BPE (GPT-2 style). Any text encodes — unseen characters fall back to
  their UTF-8 bytes — so there is no unknown token. Case and punctuation are kept.
* ``"char"``: one token per character seen in training; characters never seen map to ``<unk>``
  (:meth:`Tokenizer.unknown_chars` lists them, for clear errors).
* ``"word"``: lower-cased words and single punctuation marks (``\\w+|[^\\w\\s]``), the
  ``vocab_size - 2`` most frequent kept; the rest map to ``<unk>``.

Text is NFC-normalised first. Id 0 is ``<pad>`` and id 1 is ``<unk>`` in every kind. The state
is the tokenizer's own JSON (``tokenizers.Tokenizer.to_str``), which holds data only: loading it
cannot run code.

Example:
    >>> tok = Tokenizer.train(["hello world", "hello there"], kind="char")
    >>> ids = tok.encode("hello")
    >>> tok.decode(ids), tok.vocab_size
    ('hello', 11)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from deepfit.errors import ConfigError, DataError, unknown_choice

__all__ = ["Tokenizer", "KINDS", "PAD", "UNK"]

KINDS = ("bpe", "char", "word")
PAD, UNK = "<pad>", "<unk>"


class Tokenizer:
    """A fitted tokenizer: ``encode``/``encode_batch``/``decode``, JSON ``state_dict``.

    Build one with :meth:`train` (on training texts) or :meth:`from_state` (from an artifact).
    """

    def __init__(self, backend: Any, kind: str) -> None:
        self._tok = backend
        self.kind = kind
        self.pad_id = backend.token_to_id(PAD)
        self.unk_id = backend.token_to_id(UNK)
        if self.pad_id != 0 or self.unk_id != 1:
            raise DataError(f"tokenizer state: {PAD} and {UNK} must be ids 0 and 1, got {self.pad_id} and "
                            f"{self.unk_id}; retrain the model")

    @classmethod
    def train(cls, texts: Iterable[str], *, kind: str = "bpe", vocab_size: int = 4096,
              min_frequency: int = 2) -> Tokenizer:
        """Learn a tokenizer from ``texts`` (the training split only).

        Args:
            texts: the training texts (an iterable of str; consumed once).
            kind: ``"bpe"``, ``"char"`` or ``"word"`` (see the module docs).
            vocab_size: at most this many tokens (``"char"`` ignores it: every seen character).
            min_frequency: BPE merges and words seen fewer times are not learned.
        """
        from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
        from tokenizers import Tokenizer as Backend

        if kind not in KINDS:
            raise unknown_choice("tokenizer kind", kind, KINDS)
        if not isinstance(vocab_size, int) or vocab_size < 8:
            raise ConfigError(f"vocab_size must be an integer >= 8, got {vocab_size!r}")
        texts = list(texts)
        if not any(texts):
            raise DataError("cannot train a tokenizer: the training texts are empty")
        specials = [PAD, UNK]
        if kind == "bpe":
            tok = Backend(models.BPE(unk_token=None))
            tok.normalizer = normalizers.NFC()
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        elif kind == "char":
            tok = Backend(models.WordLevel(unk_token=UNK))
            tok.normalizer = normalizers.NFC()
            tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
            tok.decoder = decoders.Fuse()
            trainer = trainers.WordLevelTrainer(vocab_size=1 << 30, min_frequency=1, special_tokens=specials,
                                                show_progress=False)
        else:
            tok = Backend(models.WordLevel(unk_token=UNK))
            tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
            tok.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(r"\w+|[^\w\s]"), behavior="isolated")])
            tok.decoder = decoders.WordPiece(prefix="##")  # joins with spaces
            trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                                special_tokens=specials, show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok, kind)

    @property
    def vocab_size(self) -> int:
        """Number of ids (embedding table size)."""
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of one text (no padding, no truncation)."""
        return self._tok.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of many texts (parallel inside ``tokenizers``)."""
        return [e.ids for e in self._tok.encode_batch(list(texts))]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` (padding dropped)."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def unknown_chars(self, text: str) -> list[str]:
        """Characters of ``text`` that a ``"char"`` tokenizer never saw (always empty for ``"bpe"``)."""
        if self.kind != "char":
            return []
        import unicodedata

        vocab = self._tok.get_vocab()
        return sorted({c for c in unicodedata.normalize("NFC", text) if c not in vocab})

    def state_dict(self) -> dict:
        """Plain JSON: the kind and the ``tokenizers`` JSON (vocabulary, merges, pipeline)."""
        return {"kind": self.kind, "tokenizer": json.loads(self._tok.to_str())}

    @classmethod
    def from_state(cls, state: dict) -> Tokenizer:
        """Rebuild from :meth:`state_dict`; DataError when the state is damaged."""
        from tokenizers import Tokenizer as Backend

        if not isinstance(state, dict) or state.get("kind") not in KINDS or not isinstance(state.get("tokenizer"), dict):
            raise DataError("tokenizer state must be an object with 'kind' (bpe/char/word) and 'tokenizer'; "
                            "the file is damaged or from another deepfit version: retrain the model")
        try:
            backend = Backend.from_str(json.dumps(state["tokenizer"]))
        except Exception as e:  # tokenizers raises its own Exception type on bad JSON
            raise DataError(f"tokenizer state could not be read: {e}; retrain the model") from e
        return cls(backend, state["kind"])

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"
