"""TablePreprocessor: one feature per input column → the model's fixed input tuple.

``fit`` (training rows, already coerced) fits one :class:`~deepfit.features.base.Feature` per
column; ``transform`` concatenates their groups, in fit order, into three arrays — always three,
possibly with zero columns, so the model input never changes shape:

* ``num``  float32 ``(N, Kn)``: numbers, dates, binary flags, missing indicators;
* ``cat``  int64   ``(N, Kc)``: category codes, 0 = missing/unknown;
* ``text`` int64   ``(N, T, L)``: hashed token ids, 0 = padding.

``spec()`` tells the model what it needs (widths, bins, vocabulary sizes). All state is JSON.

At predict time, :meth:`TablePreprocessor.check_input` takes RAW rows (strings from a CSV, or
any DataFrame): a missing input column is a ``ColumnNotFound`` error listing them; extra columns
are ignored; a number or date column where more than 5% of the present values do not parse is a
``DataError`` naming the column and the first bad row (up to 5% become missing); NaN and +/-inf
numbers are treated as missing; categories never seen in training go to the unknown code 0.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"x": [1.0, 2.0, None], "c": pd.Series(["a", "b", "a"], dtype=object)})
    >>> pre = TablePreprocessor({"x": "number", "c": "category"}).fit(df)
    >>> [a.shape for a in pre.transform(df)]
    [(3, 2), (3, 1), (3, 0, 64)]
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
from deepfit.features.text import BUCKETS, MAX_TOKENS, TextFeature

__all__ = ["TablePreprocessor", "SUPPORTED_KINDS", "IGNORED_KINDS", "MAX_BAD_SHARE"]

SUPPORTED_KINDS = ("number", "category", "binary", "date", "text")
IGNORED_KINDS = ("image",)  # accepted, not used by table models yet
MAX_BAD_SHARE = 0.05  # predict time: share of unparseable values above which a column is rejected
_INF_TOKENS = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})
_STATE_FORMAT = 1
_CLASSES: dict[str, type[Feature]] = {
    cls.kind: cls for cls in (NumberFeature, CategoryFeature, BinaryFeature, DateFeature, TextFeature)
}


class TablePreprocessor:
    """Column name → kind, fitted into features that encode rows for :class:`TabularModel`.

    Args:
        columns: input column name → kind (number, category, binary, date, text; image
            columns are accepted and ignored for now). Order is kept.
        date_formats: optional strftime format per date column (``ColumnInfo.date_format``),
            used by :meth:`check_input` so day/month order matches training.
    """

    def __init__(self, columns: Mapping[str, str], *, date_formats: Mapping[str, str | None] | None = None) -> None:
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
        self.features = {name: _CLASSES[kind](name).fit(df[name]) for name, kind in self.columns.items()}
        self.fitted = True
        return self

    def transform(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(num f32 (N, Kn), cat i64 (N, Kc), text i64 (N, T, L))`` for coerced rows."""
        if not self.fitted:
            raise ConfigError("TablePreprocessor is not fitted; call fit() first")
        self._require(df, "the data to transform")
        n = len(df)
        groups: dict[str, list[np.ndarray]] = {"num": [], "cat": [], "text": []}
        for name, feature in self.features.items():
            for group, array in feature.encode(df[name]).items():
                groups[group].append(array)
        num = np.concatenate(groups["num"], axis=1) if groups["num"] else np.zeros((n, 0), np.float32)
        cat = np.concatenate(groups["cat"], axis=1) if groups["cat"] else np.zeros((n, 0), np.int64)
        text = np.concatenate(groups["text"], axis=1) if groups["text"] else np.zeros((n, 0, MAX_TOKENS), np.int64)
        return num.astype(np.float32, copy=False), cat.astype(np.int64, copy=False), text.astype(np.int64, copy=False)

    def spec(self) -> dict:
        """What the model needs: ``n_num``, ``num_bins``, ``cat_cardinalities``, ``n_text``, ``text_buckets``."""
        if not self.fitted:
            raise ConfigError("TablePreprocessor is not fitted; call fit() first")
        bins: list[list[float] | None] = []
        cards: list[int] = []
        n_text = 0
        buckets = BUCKETS
        for feature in self.features.values():
            bins += feature.num_bins()
            cards += feature.cat_cardinalities()
            n_text += feature.n_text()
            if isinstance(feature, TextFeature):
                buckets = feature.buckets
        return {"n_num": len(bins), "num_bins": bins, "cat_cardinalities": cards, "n_text": n_text,
                "text_buckets": buckets}

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
        if state["format"] != _STATE_FORMAT:
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
            if kind in ("number", "date"):
                _check_parsed(raw, coerced, name=name, kind=kind, source=source)
            out[name] = coerced
        return pd.DataFrame(out, index=df.index)

    def __repr__(self) -> str:
        cols = ", ".join(f"{n}={k}" for n, k in self.columns.items())
        return f"TablePreprocessor({cols}{'' if self.fitted else '; unfitted'})"


def _check_parsed(raw: pd.Series, coerced: pd.Series, *, name: str, kind: str, source: str) -> None:
    """DataError if more than 5% of the present raw values failed to parse as ``kind``."""
    from deepfit.data.table import MISSING_TOKENS

    dtype = raw.dtype
    if (kind == "number" and pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)) or \
            (kind == "date" and pd.api.types.is_datetime64_any_dtype(dtype)):
        return  # typed values: NaN/inf/NaT are simply missing
    na = raw.isna().to_numpy(dtype=bool)
    tokens = raw.astype(object).where(~na, "").astype(str).str.strip().str.lower()
    skip = MISSING_TOKENS | _INF_TOKENS if kind == "number" else MISSING_TOKENS
    absent = na | tokens.isin(list(skip)).to_numpy(dtype=bool)
    bad = ~absent & coerced.isna().to_numpy(dtype=bool)
    n_bad, n_present = int(bad.sum()), int((~absent).sum())
    if n_bad and n_bad > MAX_BAD_SHARE * n_present:
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"column '{name}' in {source} should hold {kind}s, but {n_bad} of {n_present} values do not "
                        f"parse; the first is {raw.iloc[row]!r} at row {row} (counting from 0). Fix or blank those "
                        f"values (up to {MAX_BAD_SHARE:.0%} unparseable values are treated as missing)")
