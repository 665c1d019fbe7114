"""read_table: every source kind, every bad input with its message, and fuzzing."""

import gzip
import io
import string
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepfit.data.sources import read_table
from deepfit.errors import ConfigError, DataError


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


# ----------------------------------------------------------------------------- good files


def test_csv_all_columns_are_strings(tmp_path):
    df = read_table(write(tmp_path, "a.csv", "x,y,z\n1,NA,2020-01-01\n2.5,,b\n"))
    assert list(df.columns) == ["x", "y", "z"]
    assert df["x"].tolist() == ["1", "2.5"]
    assert df["y"].tolist() == ["NA", ""]  # nothing turned into NaN: typing is table.py's job
    assert all(pd.api.types.is_string_dtype(df[c].dtype) for c in df.columns)
    assert df.index.tolist() == [0, 1]


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_delimiter_sniffed(tmp_path, sep):
    text = sep.join(["a", "b", "c"]) + "\n" + sep.join(["1", "x y", "3"]) + "\n" + sep.join(["4", "5", "6"]) + "\n"
    df = read_table(write(tmp_path, "d.txt", text))
    assert list(df.columns) == ["a", "b", "c"] and df["b"].tolist() == ["x y", "5"]


def test_semicolon_file_with_decimal_commas(tmp_path):
    df = read_table(write(tmp_path, "eu.csv", "price;qty\n1,5;2\n3,25;4\n"))
    assert list(df.columns) == ["price", "qty"] and df["price"].tolist() == ["1,5", "3,25"]


def test_tsv_with_commas_in_text(tmp_path):
    df = read_table(write(tmp_path, "t.tsv", "name\tnote\nann\thello, world\nbob\tok, fine\n"))
    assert df["note"].tolist() == ["hello, world", "ok, fine"]


def test_quotes_embedded_delimiters_newlines_and_line_endings(tmp_path):
    text = 'a,b\r\n"Smith, John","say ""hi""\r\nthere"\r\n3,4\r\n'
    df = read_table(write(tmp_path, "q.csv", text))
    assert df["a"].tolist() == ["Smith, John", "3"]
    assert df["b"].tolist() == ['say "hi"\r\nthere', "4"]
    assert read_table(write(tmp_path, "cr.csv", "a,b\r1,2\r3,4\r"))["b"].tolist() == ["2", "4"]


def test_blank_lines_skipped_and_header_stripped(tmp_path):
    df = read_table(write(tmp_path, "b.csv", " a , b\n\n1,2\n   \n3,4\n\n"))
    assert list(df.columns) == ["a", "b"] and len(df) == 2


def test_single_column_file(tmp_path):
    df = read_table(write(tmp_path, "one.csv", "y\n1\n2\n3\n"))
    assert list(df.columns) == ["y"] and df["y"].tolist() == ["1", "2", "3"]


def test_bom_utf16_gzip_and_encoding_override(tmp_path):
    assert list(read_table(write(tmp_path, "bom.csv", b"\xef\xbb\xbfa,b\n1,2\n")).columns) == ["a", "b"]
    assert read_table(write(tmp_path, "u16.csv", "a,b\né,2\n".encode("utf-16")))["a"].tolist() == ["é"]
    assert read_table(write(tmp_path, "z.csv.gz", gzip.compress(b"a,b\n1,2\n")))["b"].tolist() == ["2"]
    latin = write(tmp_path, "l.csv", "a,b\ncafé,1\n".encode("latin-1"))
    assert read_table(latin, encoding="latin-1")["a"].tolist() == ["café"]
    assert read_table(str(latin), encoding="cp1252")["a"].tolist() == ["café"]


def test_parquet_keeps_dtypes(tmp_path):
    src = pd.DataFrame({"x": [1.5, 2.0], "n": [1, 2], "s": ["a", "b"]}, index=[7, 9])
    src.to_parquet(tmp_path / "p.parquet")
    df = read_table(tmp_path / "p.parquet")
    assert df["x"].dtype == np.float64 and df["n"].dtype == np.int64 and df["s"].tolist() == ["a", "b"]
    assert df.index.tolist() == [0, 1]


# ----------------------------------------------------------------------------- in-memory sources


def test_dataframe_is_copied_and_normalised():
    src = pd.DataFrame({0: [1, 2], "b": ["x", "y"]}, index=[5, 6])
    df = read_table(src)
    df.iloc[0, 0] = 99
    assert src.iloc[0, 0] == 1
    assert list(df.columns) == ["0", "b"] and df.index.tolist() == [0, 1]


def test_array_and_dict_sources():
    df = read_table(np.arange(6.0).reshape(3, 2))
    assert list(df.columns) == ["x0", "x1"] and df["x1"].tolist() == [1.0, 3.0, 5.0]
    rec = np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")])
    assert list(read_table(rec).columns) == ["a", "b"]
    df = read_table({"a": np.array([1, 2]), "b": ["u", "v"], "c": pd.Series([0.5, 1.5])})
    assert df.shape == (2, 3) and df["b"].tolist() == ["u", "v"]


@pytest.mark.parametrize(
    "source, fragment",
    [
        (np.arange(3), "reshape(-1, 1)"),
        (np.zeros((2, 2, 2)), "2-D array"),
        (np.zeros((0, 3)), "no rows"),
        (np.zeros((3, 0)), "no columns"),
        ({"a": [1, 2], "b": [1]}, "different lengths ('a': 2, 'b': 1)"),
        ({"a": 1}, "is a scalar"),
        ({}, "no columns"),
        (pd.DataFrame({"a": []}), "no rows"),
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), "duplicate column names: 'a' at positions 1, 2"),
        (pd.DataFrame([[1]], columns=pd.MultiIndex.from_tuples([("a", "b")])), "flatten"),
        ([[1, 2]], "cannot read a table from a list"),
    ],
)
def test_bad_in_memory_sources(source, fragment):
    with pytest.raises(DataError) as err:
        read_table(source, name="mydata")
    assert fragment in str(err.value)


# ----------------------------------------------------------------------------- bad files


def test_missing_file_names_path_and_similar_files(tmp_path):
    write(tmp_path, "houses.csv", "a\n1\n")
    with pytest.raises(DataError, match=r"hous\.csv does not exist.*similar files there: houses\.csv"):
        read_table(tmp_path / "hous.csv")


def test_directory_and_extension(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        read_table(tmp_path)
    with pytest.raises(DataError, match=r"unsupported extension '\.xlsx'.*\.csv"):
        read_table(write(tmp_path, "a.xlsx", "a\n1\n"))


@pytest.mark.parametrize("content", [b"", b"   \n\t\r\n  ", b"\xef\xbb\xbf"])
def test_empty_file(tmp_path, content):
    with pytest.raises(DataError, match=r"e\.csv .*(empty|only blank)"):
        read_table(write(tmp_path, "e.csv", content))


def test_header_only(tmp_path):
    with pytest.raises(DataError, match=r"h\.csv has a header \('a', 'b'\) but no data rows"):
        read_table(write(tmp_path, "h.csv", "a,b\n\n"))


def test_non_utf8_names_line_offset_bytes_and_fix(tmp_path):
    path = write(tmp_path, "bad.csv", b"name,city\nann,Paris\nbob,Z\xfcrich\n")
    with pytest.raises(DataError) as err:
        read_table(path)
    msg = str(err.value)
    assert "bad.csv is not valid utf-8" in msg and "line 3" in msg and "byte offset 25" in msg
    assert r"b'\xfc'" in msg and 'encoding="latin-1"' in msg and "--encoding" in msg
    assert read_table(path, encoding="latin-1")["city"].tolist() == ["Paris", "Zürich"]


def test_unknown_encoding_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown encoding 'klingon'"):
        read_table(write(tmp_path, "a.csv", "a\n1\n"), encoding="klingon")


def test_ragged_rows_name_lines_and_counts(tmp_path):
    text = "a,b,c\n1,2,3\n4,5\n6,7,8\n9,10,11,12\n"
    with pytest.raises(DataError) as err:
        read_table(write(tmp_path, "r.csv", text))
    msg = str(err.value)
    assert "r.csv has ragged rows" in msg and "header has 3 fields (delimiter ',')" in msg
    assert "line 3 has 2" in msg and "line 5 has 4" in msg and "quote fields" in msg


def test_ragged_many_rows_counted_and_multiline_record_line(tmp_path):
    text = "a,b\n" + '"x\ny",1\n' + "1\n" * 8
    with pytest.raises(DataError, match=r"line 4 has 1.*\(8 such rows in all\)"):
        read_table(write(tmp_path, "m.csv", text))


def test_duplicate_and_blank_names(tmp_path):
    with pytest.raises(DataError, match=r"duplicate column names: 'a' at positions 1, 3"):
        read_table(write(tmp_path, "d.csv", "a,b,a\n1,2,3\n"))
    with pytest.raises(DataError, match=r"blank column names at position\(s\) 2 of 3.*name in the header"):
        read_table(write(tmp_path, "b.csv", "a, ,c\n1,2,3\n"))
    with pytest.raises(DataError, match="pandas index written by DataFrame.to_csv.*index=False"):
        read_table(write(tmp_path, "i.csv", pd.DataFrame({"a": [5, 6]}).to_csv()))
    with pytest.raises(DataError, match="trailing delimiter"):
        read_table(write(tmp_path, "t.csv", "a,b,\n1,2,\n"))


def test_unreadable_parquet_and_gzip(tmp_path):
    with pytest.raises(DataError, match=r"x\.parquet cannot be read as Parquet.*re-export"):
        read_table(write(tmp_path, "x.parquet", b"PAR1 not really"))
    with pytest.raises(DataError, match=r"not a valid gzip file"):
        read_table(write(tmp_path, "x.csv.gz", b"not gzip"))


def test_huge_field_is_data_error(tmp_path):
    with pytest.raises(DataError, match=r"line 2: field larger than field limit"):
        read_table(write(tmp_path, "big.csv", "a,b\n1," + "x" * 200_000 + "\n"))


def test_name_replaces_path_in_messages(tmp_path):
    with pytest.raises(DataError, match=r"^train data has a header"):
        read_table(write(tmp_path, "h.csv", "a\n"), name="train data")


# ----------------------------------------------------------------------------- fuzzing

# No lone "\r": DataFrame.to_csv writes it unquoted, and every CSV reader (pandas' too) reads it as a line break.
_ALPHABET = string.printable.replace("\r", "") + "éß中\u2028\x85\u00a0"
_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def string_frames(draw, alphabet=_ALPHABET):
    name = st.text(alphabet, min_size=1, max_size=8).filter(lambda s: s.strip() != "")
    names = draw(st.lists(name, min_size=2, max_size=4, unique_by=lambda s: s.strip()))
    n_rows = draw(st.integers(1, 6))
    cell = st.text(alphabet, max_size=10)
    data = {name: draw(st.lists(cell, min_size=n_rows, max_size=n_rows)) for name in names}
    return pd.DataFrame(data)


def _roundtrip(df: pd.DataFrame, name: str, **to_csv) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        df.to_csv(path, index=False, encoding="utf-8", **to_csv)
        return read_table(path)


@_FUZZ
@given(string_frames())
def test_fuzz_to_csv_reads_back_equal(df):
    back = _roundtrip(df, "f.csv")
    assert list(back.columns) == [c.strip() for c in df.columns]
    assert back.to_numpy().tolist() == df.to_numpy().tolist()


@_FUZZ
@given(string_frames(alphabet=string.ascii_letters + string.digits + " .;\"'\n-"))
def test_fuzz_semicolon_files_read_back_equal(df):
    back = _roundtrip(df, "f.txt", sep=";")
    assert back.to_numpy().tolist() == df.to_numpy().tolist()


@_FUZZ
@given(st.binary(max_size=300), st.sampled_from(["r.csv", "r.tsv", "r.txt", "r.csv.gz", "r.parquet"]))
def test_fuzz_random_bytes_only_raise_data_error(data, name):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        try:
            df = read_table(path)
        except DataError:
            return
        assert len(df) >= 1 and df.shape[1] >= 1
        assert all(isinstance(c, str) and c.strip() for c in df.columns)


@_FUZZ
@given(st.text(string.printable + "é\x00", max_size=200))
def test_fuzz_random_text_only_raises_data_error(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        path.write_text(text, encoding="utf-8", newline="")
        try:
            read_table(path)
        except DataError:
            pass


def test_reads_file_like_io_is_rejected_clearly():
    with pytest.raises(DataError, match="cannot read a table from a StringIO"):
        read_table(io.StringIO("a\n1\n"))  # type: ignore[arg-type]
