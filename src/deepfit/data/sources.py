"""Read a table from a file, a DataFrame, a numpy array or a dict of columns.

Rules (``read_table``):

* **Text files** (``.csv``, ``.tsv``, ``.txt``, each optionally ``.gz``): the delimiter is sniffed
  among ``,`` ``\\t`` ``;`` ``|`` from the first 200 records: the first delimiter (``,`` first, or
  ``\\t`` first for ``.tsv``) that splits every sampled record, header included, into the same
  number (>= 2) of fields wins; a file where none does is read as one column. The quote
  character is ``"`` (doubled inside a quoted field), line endings may be ``\\n``, ``\\r\\n`` or
  ``\\r``. The encoding is UTF-8, with or without a byte-order mark (a UTF-16 byte-order mark is
  honoured too); ``encoding=`` overrides it. Blank lines are skipped. Header names are stripped
  of surrounding whitespace. **Every column is read as strings** (pandas ``str`` dtype, nothing
  turned into NaN): typing is done by :mod:`deepfit.data.table`, not by pandas' guess.
* **Parquet** (``.parquet``, ``.pq``) is read with pyarrow and keeps its dtypes.
* **DataFrame**: a copy, index reset to ``0..n-1`` (row positions), column names made strings.
* **2-D numpy array**: columns ``x0 .. x{d-1}`` (a structured array keeps its field names).
* **dict** of equal-length 1-D arrays or lists: one column per key.

Every input is checked the same way and a :class:`~deepfit.errors.DataError` naming the file
(or ``name=``) and the fix is raised for: a missing file, a directory, an unsupported
extension, an empty file (0 bytes or only whitespace), a header without data rows, bytes that
are not valid in the encoding (line number, byte offset and the bad bytes are shown), ragged
rows (first offending line numbers, expected and found field counts), duplicate or blank
column names, and a Parquet file pyarrow cannot read.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import itertools
import os
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from deepfit.errors import ConfigError, DataError

__all__ = ["read_table", "read_text_table", "TEXT_EXTENSIONS", "PARQUET_EXTENSIONS", "DELIMITERS"]

TEXT_EXTENSIONS = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")
PARQUET_EXTENSIONS = (".parquet", ".pq")
DELIMITERS = (",", "\t", ";", "|")
_SNIFF_RECORDS = 200
_MAX_REPORTED = 5
_DELIMITER_NAMES = {",": "','", "\t": "tab", ";": "';'", "|": "'|'"}

Source = str | os.PathLike | pd.DataFrame | np.ndarray | dict


def read_table(source: Source, *, encoding: str | None = None, name: str | None = None) -> pd.DataFrame:
    """Read a table from a path, DataFrame, 2-D numpy array or dict of columns.

    Args:
        source: path to a ``.csv``/``.tsv``/``.txt`` (optionally ``.gz``) or ``.parquet``/``.pq``
            file, a DataFrame (copied), a 2-D array, or a dict of 1-D columns.
        encoding: text encoding of a CSV file (default: UTF-8 with or without BOM), e.g.
            ``"latin-1"``. Ignored for other sources.
        name: how the data is called in error messages (default: the path, or "DataFrame",
            "array", "dict").

    Returns:
        A new DataFrame with string column names and a ``0..n-1`` index; text files give
        string columns only.

    Raises:
        DataError: the source cannot be read or is not a usable table (see the module rules).
        ConfigError: ``encoding`` is not a known codec.

    Example:
        >>> df = read_table({"x": [1, 2, 3], "y": ["a", "b", "a"]})
        >>> list(df.columns), len(df)
        (['x', 'y'], 3)
    """
    if isinstance(source, pd.DataFrame):
        return _from_frame(source, name or "DataFrame")
    if isinstance(source, np.ndarray):
        return _from_array(source, name or "array")
    if isinstance(source, dict):
        return _from_dict(source, name or "dict")
    if isinstance(source, (str, os.PathLike)):
        return _read_path(Path(os.fspath(source)).expanduser(), encoding, name)
    raise DataError(
        f"cannot read a table from a {type(source).__name__}; pass a path to a "
        f"{'/'.join(TEXT_EXTENSIONS + PARQUET_EXTENSIONS)} file, a pandas DataFrame, "
        "a 2-D numpy array or a dict of columns"
    )


# ----------------------------------------------------------------------------- in-memory sources


def _from_frame(df: pd.DataFrame, label: str) -> pd.DataFrame:
    if isinstance(df.columns, pd.MultiIndex):
        raise DataError(
            f"{label} has multi-level column names; flatten them first, e.g. "
            "df.columns = ['_'.join(map(str, c)) for c in df.columns]"
        )
    out = df.copy(deep=True).reset_index(drop=True)
    out.columns = [c if isinstance(c, str) else str(c) for c in out.columns]
    return _check_frame(out, label)


def _from_array(arr: np.ndarray, label: str) -> pd.DataFrame:
    if arr.dtype.names is not None and arr.ndim == 1:  # structured array: a table already
        return _check_frame(pd.DataFrame(arr), label)
    if arr.ndim != 2:
        raise DataError(
            f"{label} has shape {arr.shape}; a table needs a 2-D array (rows, columns): "
            "use arr.reshape(-1, 1) for one column, or pass a dict {'name': arr}"
        )
    columns = [f"x{i}" for i in range(arr.shape[1])]
    return _check_frame(pd.DataFrame(arr, columns=columns), label)


def _from_dict(data: dict, label: str) -> pd.DataFrame:
    lengths: dict[str, int] = {}
    for key, values in data.items():
        shape = np.shape(values)
        if len(shape) != 1:
            what = "a scalar" if not shape else f"shape {shape}"
            raise DataError(
                f"column {str(key)!r} of {label} is {what}; every value of the dict must be a "
                "1-D array or list with one entry per row"
            )
        lengths[str(key)] = shape[0]
    if len(set(lengths.values())) > 1:
        sizes = ", ".join(f"{k!r}: {n}" for k, n in lengths.items())
        raise DataError(f"columns of {label} have different lengths ({sizes}); give every column one value per row")
    if len(lengths) != len(data):
        raise DataError(f"{label} has keys that are equal once made strings; use distinct string keys")
    frame = pd.DataFrame({str(k): pd.Series(np.asarray(v) if not isinstance(v, pd.Series) else v.to_numpy())
                          for k, v in data.items()})
    return _check_frame(frame, label)


# ----------------------------------------------------------------------------- files


def _read_path(path: Path, encoding: str | None, name: str | None) -> pd.DataFrame:
    label = name or str(path)
    if not path.exists():
        hint = ""
        if path.parent.is_dir():
            near = sorted(p.name for p in path.parent.iterdir() if p.name.lower().startswith(path.stem[:3].lower()))
            hint = f"; similar files there: {', '.join(near[:5])}" if near else ""
        raise DataError(f"data file {label} does not exist (looked for {path.resolve()}){hint}; check the path")
    if path.is_dir():
        raise DataError(f"{label} is a directory; pass a .csv/.tsv/.parquet file inside it")
    lower = path.name.lower()
    if lower.endswith(PARQUET_EXTENSIONS):
        return _read_parquet(path, label)
    if not lower.endswith(TEXT_EXTENSIONS):
        raise DataError(
            f"{label} has an unsupported extension {''.join(path.suffixes) or '(none)'!r}; deepfit reads "
            f"{', '.join(TEXT_EXTENSIONS + PARQUET_EXTENSIONS)}: rename or convert the file"
        )
    raw = path.read_bytes()
    if lower.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{label} is not a valid gzip file ({err}); re-compress it or pass the plain .csv") from None
    return read_text_table(raw, name=label, encoding=encoding,
                           delimiter="\t" if lower.endswith((".tsv", ".tsv.gz")) else ",")


def read_text_table(raw: bytes, *, name: str, encoding: str | None = None, delimiter: str = ",") -> pd.DataFrame:
    r"""Read delimited text held in memory (e.g. a CSV request body) as :func:`read_table` reads a
    CSV file: string columns only, the delimiter sniffed (``delimiter`` preferred), the same errors.

    Example:
        >>> read_text_table(b"x,y\n1,a\n", name="the body").to_dict("records")
        [{'x': '1', 'y': 'a'}]
    """
    if not raw.strip():
        raise DataError(f"{name} is empty ({len(raw)} bytes, no header, no rows); pass a file with a header line and data rows")
    text = _decode(raw, encoding, name)
    return _parse_text(text, _sniff_delimiter(text, delimiter, name), name)


def _read_parquet(path: Path, label: str) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path, engine="pyarrow")
    except Exception as err:  # pyarrow raises many types (ArrowInvalid, OSError, ...): all mean "unreadable"
        raise DataError(
            f"{label} cannot be read as Parquet ({type(err).__name__}: {err}); check the file is complete "
            "(re-export it) or save the table as CSV"
        ) from None
    return _from_frame(df, label)


def _decode(raw: bytes, encoding: str | None, label: str) -> str:
    if encoding is None:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            codec, skip = "utf-16", 0
        else:
            codec, skip = "utf-8", 3 if raw.startswith(b"\xef\xbb\xbf") else 0
    else:
        try:
            codec = _codec_name(encoding)
        except LookupError:
            raise ConfigError(f"unknown encoding {encoding!r} for {label}; use e.g. 'utf-8', 'latin-1' or 'cp1252'") from None
        skip = 3 if codec == "utf-8" and raw.startswith(b"\xef\xbb\xbf") else 0
    try:
        text = raw[skip:].decode(codec)
    except UnicodeDecodeError as err:
        start = err.start + skip
        line = raw.count(b"\n", 0, start) + 1
        line_start = raw.rfind(b"\n", 0, start) + 1
        context = raw[max(line_start, start - 30): start + 10]
        bad = raw[start: max(err.end + skip, start + 1)]
        fix = ('read it with encoding="latin-1" (CLI: --encoding latin-1) or re-save the file as UTF-8'
               if codec == "utf-8" else "pass the file's real encoding with encoding=... (CLI: --encoding)")
        raise DataError(
            f"{label} is not valid {codec}: line {line}, byte offset {start} holds {bad!r} (in {context!r}); {fix}"
        ) from None
    if encoding is None and skip == 0 and text.startswith("\ufeff"):
        text = text[1:]
    return text


def _codec_name(encoding: str) -> str:
    name = codecs.lookup(encoding).name
    return "utf-8" if name in ("utf-8", "utf-8-sig") else name


def _records(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """Yield (first line number, fields) of every non-blank record."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"', doublequote=True)
    last = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:  # e.g. a field over csv.field_size_limit(): say where
            raise csv.Error(f"line {last + 1}: {err}") from None
        start, last = last + 1, reader.line_num
        if len(row) <= 1 and not "".join(row).strip():
            continue  # a blank (or whitespace-only) line
        yield start, row


def _sniff_delimiter(text: str, preferred: str, label: str) -> str:
    order = [preferred] + [d for d in DELIMITERS if d != preferred]
    fallback: tuple[float, str] = (0.0, preferred)
    for delimiter in order:
        try:
            counts = [len(row) for _, row in itertools.islice(_records(text, delimiter), _SNIFF_RECORDS)]
        except csv.Error:
            continue
        if not counts:
            continue
        mode, hits = Counter(counts).most_common(1)[0]
        if mode >= 2 and hits == len(counts):
            return delimiter
        if mode >= 2 and hits / len(counts) > fallback[0]:
            fallback = (hits / len(counts), delimiter)
    return fallback[1]


def _parse_text(text: str, delimiter: str, label: str) -> pd.DataFrame:
    records = _records(text, delimiter)
    try:
        first = next(records, None)
        if first is None:
            raise DataError(f"{label} holds only blank lines; pass a file with a header line and data rows")
        header = [h.strip() for h in first[1]]
        width = len(header)
        rows: list[list[str]] = []
        bad: list[tuple[int, int]] = []
        n_bad = 0
        for line, row in records:
            if len(row) != width:
                n_bad += 1
                if len(bad) < _MAX_REPORTED:
                    bad.append((line, len(row)))
                continue
            rows.append(row)
    except csv.Error as err:
        raise DataError(f"{label} cannot be parsed as delimited text ({err}); check the quoting of that line") from None
    sep = _DELIMITER_NAMES[delimiter]
    if n_bad:
        shown = ", ".join(f"line {line} has {found}" for line, found in bad)
        more = f" ({n_bad} such rows in all)" if n_bad > len(bad) else ""
        raise DataError(
            f"{label} has ragged rows: the header has {width} field{'s' * (width != 1)} (delimiter {sep}) but {shown}{more}. "
            f"Fix: quote fields that contain {sep} (e.g. \"Smith{delimiter} John\"), remove stray delimiters, "
            "or make every row have one field per column"
        )
    if not rows:
        raise DataError(
            f"{label} has a header ({_short(header)}) but no data rows; pass a file with at least one row below the header"
        )
    _check_names(header, label, first_col_values=[r[0] for r in rows[:20]])
    columns = list(zip(*rows))
    frame = pd.DataFrame({name: pd.Series(col, dtype=str) for name, col in zip(header, columns)})
    return frame


# ----------------------------------------------------------------------------- checks


def _short(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} columns)" if len(names) > limit else "")


def _check_names(names: list[str], label: str, first_col_values: list[str] | None = None) -> None:
    blank = [i + 1 for i, n in enumerate(names) if not n.strip()]
    if blank:
        where = ", ".join(str(i) for i in blank[:_MAX_REPORTED])
        hint = ""
        if blank == [1] and first_col_values is not None and first_col_values == [str(i) for i in range(len(first_col_values))]:
            hint = " It looks like a pandas index written by DataFrame.to_csv(): re-save with index=False, or name it."
        elif blank and blank[-1] == len(names):
            hint = " A blank last name usually means every line ends with a trailing delimiter: remove it."
        raise DataError(
            f"{label} has blank column names at position(s) {where} of {len(names)}.{hint} "
            "Fix: give every column a name in the header line"
        )
    seen: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        seen.setdefault(n, []).append(i + 1)
    dupes = {n: pos for n, pos in seen.items() if len(pos) > 1}
    if dupes:
        listed = "; ".join(f"{n!r} at positions {', '.join(map(str, pos))}" for n, pos in list(dupes.items())[:_MAX_REPORTED])
        raise DataError(f"{label} has duplicate column names: {listed}. Fix: rename them so every column name is unique")


def _check_frame(df: pd.DataFrame, label: str) -> pd.DataFrame:
    if df.shape[1] == 0:
        raise DataError(f"{label} has no columns; pass a table with at least one column")
    _check_names([str(c) for c in df.columns], label)
    if len(df) == 0:
        raise DataError(f"{label} has columns ({_short(list(map(str, df.columns)))}) but no rows; pass at least one row")
    return df
