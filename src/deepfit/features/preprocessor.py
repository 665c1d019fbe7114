"""TablePreprocessor: one feature per input column → the model's fixed input tuple.

``fit`` (training rows, already coerced) fits one :class:`~deepfit.features.base.Feature` per
column; ``transform`` concatenates their groups, in fit order, into three base arrays — always
three, possibly with zero columns, so the model input never changes shape:

* ``num``  float32 ``(N, Kn)``: numbers, dates, binary flags, missing indicators, text style numbers;
* ``cat``  int64   ``(N, Kc)``: category codes, 0 = missing/unknown;
* ``text`` int64   ``(N, T, G)``: n-gram ids of the T text columns, 0 = padding (one id space:
  each column's ids are offset past the previous columns').

Text and sequence columns add more groups; :meth:`TablePreprocessor.arrays` returns the base
three followed by those present, in the order of :meth:`TablePreprocessor.input_names`:

* ``text_w`` float32 ``(N, T, G)``: TF-IDF weights of the n-grams in ``text``;
* ``tokens`` int64 ``(N, T, L)``: BPE token ids (offset per column like ``text``), 0 = padding;
* ``seq`` float32 ``(N, C, S)``: the channels of every sequence column, scaled, zero-padded to S;
* ``seq_mask`` float32 ``(N, S)``: 1 where a position holds data.

``spec()`` tells the model what it needs (widths, bins, vocabulary sizes). All state is JSON.

At predict time, :meth:`TablePreprocessor.check_input` takes RAW rows (strings from a CSV, or
any DataFrame): a missing input column is a ``ColumnNotFound`` error listing them; extra columns
are ignored; a number or date column where more than 5% of the present values do not parse is a
``DataError`` naming the column and the first bad row (up to 5% become missing); NaN and +/-inf
numbers are treated as missing; categories never seen in training go to the unknown code 0.
:meth:`TablePreprocessor.out_of_range` counts, per number column, the rows whose value lies
outside the training range (encoded as the nearest training extreme).

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"x": [1.0, 2.0, None], "c": pd.Series(["a", "b", "a"], dtype=object)})
    >>> pre = TablePreprocessor({"x": "number", "c": "category"}).fit(df)
    >>> [a.shape for a in pre.transform(df)]
    [(3, 2), (3, 1), (3, 0, 1)]
    >>> pre.input_names()
    ('num', 'cat', 'text')
    >>> pre.spec()["cat_cardinalities"]
    [3]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

import numpy as np
import pandas as pd

from deepfit.errors import ConfigError, DataError
from deepfit.features.base import Feature, require_keys
from deepfit.features.binary import BinaryFeature
from deepfit.features.category import CategoryFeature
from deepfit.features.date import DateFeature
from deepfit.features.number import NumberFeature
from deepfit.features.sequence import SequenceFeature
from deepfit.features.text import TextFeature

__all__ = ["TablePreprocessor", "SUPPORTED_KINDS", "IGNORED_KINDS", "MAX_BAD_SHARE", "BASE_GROUPS"]

SUPPORTED_KINDS = ("number", "category", "binary", "date", "text", "sequence")
BASE_GROUPS = ("num", "cat", "text")
IGNORED_KINDS = ("image",)  # accepted, not used by table models yet
MAX_BAD_SHARE = 0.05  # predict time: share of unparseable values above which a column is rejected
_INF_TOKENS = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})
_STATE_FORMAT = 2  # 2: text columns are n-grams + BPE tokens + style numbers; sequence columns
_READABLE_FORMATS = (1, 2)  # format 1 differs only in text columns, whose old state is refused with a clear error
_CLASSES: dict[str, type[Feature]] = {
    cls.kind: cls for cls in (NumberFeature, CategoryFeature, BinaryFeature, DateFeature, TextFeature, SequenceFeature)
}


class TablePreprocessor:
    """Column name → kind, fitted into features that encode rows for :class:`TabularModel`.

    Args:
        columns: input column name → kind (number, category, binary, date, text, sequence;
            image columns are accepted and ignored for now). Order is kept.
        date_formats: optional strftime format per date column (``ColumnInfo.date_format``),
            used by :meth:`check_input` so day/month order matches training.
        text_tokenizer: tokens of text columns: ``"bpe"`` (byte-level BPE) or ``"char"``.
        text_encoder: how text columns are read: ``"ngrams"``, ``"minilm"`` (pretrained sentence
            embeddings) or ``"both"`` (``TextFeature``'s ``encoder``).
    """

    def __init__(self, columns: Mapping[str, str], *, date_formats: Mapping[str, str | None] | None = None,
                 text_tokenizer: str = "bpe", text_encoder: str = "ngrams") -> None:
        if not isinstance(columns, Mapping):
            raise ConfigError(f"columns must map column name -> kind, got {type(columns).__name__}")
        self.columns: dict[str, str] = {}
        self.ignored: list[str] = []
        for name, kind in columns.items():
            if kind in IGNORED_KINDS:
                self.ignored.append(str(name))
            elif kind in SUPPORTED_KINDS:
                self.columns[str(name)] = kind
            else:
                raise ConfigError(f"column '{name}' has kind {kind!r}; table models use "
                                  f"{', '.join(SUPPORTED_KINDS)} (and ignore {', '.join(IGNORED_KINDS)})")
        self.date_formats = {k: v for k, v in (date_formats or {}).items() if k in self.columns}
        if text_tokenizer not in ("bpe", "char"):
            raise ConfigError(f"text_tokenizer must be 'bpe' or 'char', got {text_tokenizer!r}")
        self.text_tokenizer = text_tokenizer
        self.text_encoder = text_encoder
        self.features: dict[str, Feature] = {}
        self.fitted = False

    def _require(self, df: pd.DataFrame, source: str) -> None:
        from deepfit.errors import ColumnNotFound

        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            present = ", ".join(map(str, list(df.columns)[:30]))
            raise ColumnNotFound(f"{source} lacks {len(missing)} input column(s) the model needs: "
                                 f"{', '.join(map(repr, missing))}; add them (empty values are allowed and are "
                                 f"treated as missing). Columns present: {present}")

    def fit(self, df: pd.DataFrame) -> Self:
        """Fit one feature per column on the (coerced) training rows; returns ``self``."""
        self._require(df, "the training data")
        def make(name: str, kind: str) -> Feature:
            if kind == "text":
                return TextFeature(name, tokenizer=self.text_tokenizer, encoder=self.text_encoder)
            return _CLASSES[kind](name)

        self.features = {name: make(name, kind).fit(df[name]) for name, kind in self.columns.items()}
        self.fitted = True
        return self

    def input_names(self) -> tuple[str, ...]:
        """Names of the arrays :meth:`arrays` returns: the base three, then text and sequence groups if used."""
        if not self.fitted:
            raise ConfigError("TablePreprocessor is not fitted; call fit() first")
        kinds = set(self.columns.values())
        return (BASE_GROUPS + (("text_w", "tokens") if "text" in kinds else ())
                + (("seq", "seq_mask") if "sequence" in kinds else ()))

    def transform(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The base arrays ``(num f32 (N, Kn), cat i64 (N, Kc), text i64 (N, T, G))`` for coerced rows."""
        return self.arrays(df)[:3]  # type: ignore[return-value]

    def arrays(self, df: pd.DataFrame) -> tuple[np.ndarray, ...]:
        """Every model input for coerced rows, in the order of :meth:`input_names`."""
        if not self.fitted:
            raise ConfigError("TablePreprocessor is not fitted; call fit() first")
        self._require(df, "the data to transform")
        n = len(df)
        groups: dict[str, list[np.ndarray]] = {}
        ngram_offset = token_offset = 0
        for name, feature in self.features.items():
            encoded = feature.encode(df[name])
            if isinstance(feature, TextFeature):  # one id space for all text columns
                encoded["text"] = np.where(encoded["text"] > 0, encoded["text"] + ngram_offset, 0)
                encoded["tokens"] = np.where(encoded["tokens"] > 0, encoded["tokens"] + token_offset, 0)
                ngram_offset += feature.ngram_vocab_size() - 1
                token_offset += feature.token_vocab_size() - 1
            for group, array in encoded.items():
                groups.setdefault(group, []).append(array)
        out = {
            "num": _concat(groups.get("num", []), 1, np.zeros((n, 0), np.float32)).astype(np.float32, copy=False),
            "cat": _concat(groups.get("cat", []), 1, np.zeros((n, 0), np.int64)).astype(np.int64, copy=False),
            "text": _concat(_pad_last(groups.get("text", [])), 1,
                            np.zeros((n, 0, 1), np.int64)).astype(np.int64, copy=False),
        }
        if "text_w" in groups:
            out["text_w"] = np.concatenate(_pad_last(groups["text_w"]), axis=1).astype(np.float32, copy=False)
            out["tokens"] = np.concatenate(_pad_last(groups["tokens"]), axis=1).astype(np.int64, copy=False)
        if "seq" in groups:
            seq, masks = _pad_last(groups["seq"]), _pad_last(groups["seq_mask"])
            out["seq"] = np.concatenate(seq, axis=1).astype(np.float32, copy=False)  # (N, C, S)
            out["seq_mask"] = np.max(np.stack(masks), axis=0).astype(np.float32, copy=False)  # (N, S)
        return tuple(out[g] for g in self.input_names())

    def spec(self) -> dict:
        """What the model needs: ``n_num``, ``num_bins``, ``cat_cardinalities``, ``n_text``, ``text_buckets``
        (n-gram ids incl. padding), ``token_vocab`` (BPE ids incl. padding), ``max_tokens``,
        ``seq_channels``."""
        if not self.fitted:
            raise ConfigError("TablePreprocessor is not fitted; call fit() first")
        bins: list[list[float] | None] = []
        cards: list[int] = []
        n_text = 0
        buckets = tokens = 1
        max_tokens = channels = 0
        for feature in self.features.values():
            bins += feature.num_bins()
            cards += feature.cat_cardinalities()
            n_text += feature.n_text()
            if isinstance(feature, TextFeature):
                buckets += feature.ngram_vocab_size() - 1
                tokens += feature.token_vocab_size() - 1
                max_tokens = max(max_tokens, feature.max_tokens)
            if isinstance(feature, SequenceFeature):
                channels += feature.channels
        return {"n_num": len(bins), "num_bins": bins, "cat_cardinalities": cards, "n_text": n_text,
                "text_buckets": buckets, "token_vocab": tokens, "max_tokens": max_tokens, "seq_channels": channels}

    def state_dict(self) -> dict:
        """Plain-JSON state: columns in order with their kind and feature state."""
        if not self.fitted:
            raise ConfigError("TablePreprocessor is not fitted; call fit() first")
        return {"format": _STATE_FORMAT,
                "columns": [{"name": n, "kind": f.kind, "state": f.state_dict()} for n, f in self.features.items()],
                "ignored": list(self.ignored), "date_formats": dict(self.date_formats)}

    @classmethod
    def from_state(cls, state: dict) -> TablePreprocessor:
        """Rebuild a fitted preprocessor; DataError naming the problem if the state is damaged."""
        require_keys(state, ("format", "columns"), what="preprocessor")
        if state["format"] not in _READABLE_FORMATS:
            raise DataError(f"preprocessor: saved format {state['format']!r} is not {_STATE_FORMAT}; this deepfit "
                            "cannot read it: retrain the model or use the deepfit version that wrote it")
        entries = state["columns"]
        if not isinstance(entries, list):
            raise DataError("preprocessor: saved 'columns' must be a list; retrain the model")
        columns: dict[str, str] = {}
        for i, entry in enumerate(entries):
            require_keys(entry, ("name", "kind", "state"), what=f"preprocessor column {i}")
            if entry["kind"] not in SUPPORTED_KINDS:
                raise DataError(f"preprocessor: column '{entry['name']}' has unknown kind {entry['kind']!r}")
            columns[str(entry["name"])] = entry["kind"]
        formats = state.get("date_formats") or {}
        if not isinstance(formats, dict):
            raise DataError("preprocessor: saved 'date_formats' must be an object; retrain the model")
        pre = cls({**columns, **{n: "image" for n in state.get("ignored", [])}}, date_formats=formats)
        pre.features = {e["name"]: _CLASSES[e["kind"]].from_state(e["name"], e["state"]) for e in entries}
        pre.fitted = True
        return pre

    def check_input(self, df: pd.DataFrame, *, source: str) -> pd.DataFrame:
        """Validate and coerce RAW predict-time rows; returns the model's columns in fit order.

        Args:
            df: raw rows (e.g. strings read from a CSV); extra columns are ignored.
            source: where the rows came from, named in errors (e.g. ``"new.csv"``).

        Returns:
            A DataFrame (same index) of coerced columns, ready for :meth:`transform`.
        """
        from deepfit.data.table import coerce_column

        if not isinstance(df, pd.DataFrame):
            raise DataError(f"{source}: expected a table (pandas DataFrame), got {type(df).__name__}")
        self._require(df, source)
        out: dict[str, pd.Series] = {}
        for name, kind in self.columns.items():
            raw = df[name]
            if kind == "date":
                coerced = coerce_column(raw, kind, date_format=self.date_formats.get(name))
            else:
                coerced = coerce_column(raw, kind)
            if kind in ("number", "date", "sequence"):
                _check_parsed(raw, coerced, name=name, kind=kind, source=source)
            out[name] = coerced
        return pd.DataFrame(out, index=df.index)

    def out_of_range(self, df: pd.DataFrame) -> dict[str, int]:
        """Number column → how many rows of ``df`` (coerced, as :meth:`check_input` returns them)
        hold a value below its training minimum or above its maximum; only columns with such rows.

        Such a value encodes exactly as the nearest training extreme does (number.py), so the
        model answers as it would there; this says when that happened.

        Example:
            >>> pre = TablePreprocessor({"x": "number"}).fit(pd.DataFrame({"x": [1.0, 5.0]}))
            >>> pre.out_of_range(pd.DataFrame({"x": [0.0, 3.0, 9.0, None]}))
            {'x': 2}
        """
        counts = {name: int(mask.sum()) for name, mask in self._out_of_range_masks(df).items()}
        return {name: n for name, n in counts.items() if n}

    def out_of_range_rows(self, df: pd.DataFrame) -> np.ndarray:
        """Bool (N,): the rows of ``df`` (coerced) with a number outside its training range in any column."""
        out = np.zeros(len(df), dtype=bool)
        for mask in self._out_of_range_masks(df).values():
            out |= mask
        return out

    def _out_of_range_masks(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        if not self.fitted:
            raise ConfigError("TablePreprocessor is not fitted; call fit() first")
        self._require(df, "the data to check")
        return {name: f.out_of_range(df[name]) for name, f in self.features.items() if isinstance(f, NumberFeature)}

    def __repr__(self) -> str:
        cols = ", ".join(f"{n}={k}" for n, k in self.columns.items())
        return f"TablePreprocessor({cols}{'' if self.fitted else '; unfitted'})"


def _concat(arrays: list[np.ndarray], axis: int, empty: np.ndarray) -> np.ndarray:
    return np.concatenate(arrays, axis=axis) if arrays else empty


def _pad_last(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Zero-pad the last axis of each array to the longest (columns of different lengths side by side)."""
    width = max((a.shape[-1] for a in arrays), default=0)
    return [a if a.shape[-1] == width else
            np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, width - a.shape[-1])]) for a in arrays]


def _check_parsed(raw: pd.Series, coerced: pd.Series, *, name: str, kind: str, source: str) -> None:
    """DataError if more than 5% of the present raw values failed to parse as ``kind``."""
    from deepfit.data.table import MISSING_TOKENS

    dtype = raw.dtype
    if (kind == "number" and pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)) or \
            (kind == "date" and pd.api.types.is_datetime64_any_dtype(dtype)):
        return  # typed values: NaN/inf/NaT are simply missing
    if kind == "sequence":  # values may be arrays: isna() would look inside them
        na = np.fromiter((v is None or (isinstance(v, float) and np.isnan(v)) for v in raw.to_numpy(dtype=object)),
                         bool, len(raw))
    else:
        na = raw.isna().to_numpy(dtype=bool)
    as_text = raw.astype(object).where(~na, "").map(lambda v: v if isinstance(v, str) else "<value>")
    tokens = as_text.str.strip().str.lower()
    skip = MISSING_TOKENS | _INF_TOKENS if kind == "number" else MISSING_TOKENS
    absent = na | tokens.isin(list(skip)).to_numpy(dtype=bool)
    bad = ~absent & coerced.isna().to_numpy(dtype=bool)
    n_bad, n_present = int(bad.sum()), int((~absent).sum())
    if n_bad and n_bad > MAX_BAD_SHARE * n_present:
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"column '{name}' in {source} should hold {kind}s, but {n_bad} of {n_present} values do not "
                        f"parse; the first is {raw.iloc[row]!r} at row {row} (counting from 0). Fix or blank those "
                        f"values (up to {MAX_BAD_SHARE:.0%} unparseable values are treated as missing)")
