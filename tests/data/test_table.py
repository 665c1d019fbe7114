"""Column-type inference, overrides, coercion, column lookup and task inference."""

import json
import string

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepfit.data.table import (
    IMAGE_EXTENSIONS,
    KINDS,
    MISSING_TOKENS,
    ColumnInfo,
    coerce_column,
    find_column,
    infer_task,
    infer_types,
    task_reason,
)
from deepfit.errors import ColumnNotFound, ConfigError, DataError

N = 80  # > 50 rows, so id rules apply


def s(values) -> pd.Series:
    return pd.Series(values, dtype=str)


def kind_of(values, name="col", **kw) -> str:
    return infer_types(pd.DataFrame({name: values}), **kw)[name].kind


def info_of(values, name="col", **kw) -> ColumnInfo:
    return infer_types(pd.DataFrame({name: values}), **kw)[name]


# ----------------------------------------------------------------------------- kinds


def test_every_kind_on_a_realistic_table():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "rownames": s([str(i + 1) for i in range(N)]),
        "x": s([f"{v:.3f}" for v in rng.normal(size=N)]),
        "color": s(rng.choice(["red", "green", "blue"], N)),
        "smoker": s(rng.choice(["yes", "no"], N)),
        "day": s([str(pd.Timestamp("2021-03-01") + pd.Timedelta(days=int(i)))[:10] for i in range(N)]),
        "photo": s([f"img/{i}.JPG" for i in range(N)]),
        "review": s([f"this product was fine and arrived on day {i}" for i in range(N)]),
        "email": s([f"user{i}@x.org" for i in range(N)]),
        "country": s(["US"] * N),
        "blank": s(["NA"] * N),
    })
    infos = infer_types(df, source="t.csv")
    assert list(infos) == list(df.columns)
    got = {name: info.kind for name, info in infos.items()}
    assert got == {"rownames": "id", "x": "number", "color": "category", "smoker": "binary", "day": "date",
                   "photo": "image", "review": "text", "email": "id", "country": "constant", "blank": "empty"}
    assert [n for n, i in infos.items() if not i.used] == ["rownames", "email", "country", "blank"]
    assert "excluded" in infos["rownames"].note and "types={'rownames': 'number'}" in infos["rownames"].note
    assert "excluded" in infos["country"].note and "'US'" in infos["country"].note
    assert infos["blank"].n_missing == N and infos["blank"].n_unique == 0
    assert infos["day"].date_format == "%Y-%m-%d"


@pytest.mark.parametrize("token", sorted(MISSING_TOKENS) + ["NA", " N/A ", "NULL", "None", "NaN", "MISSING"])
def test_missing_tokens_are_case_insensitive_and_stripped(token):
    info = info_of(s(["1", "2.5", "3", token]))
    assert info.kind == "number" and info.n_missing == 1


def test_missing_values_from_typed_columns():
    assert info_of(pd.Series([1.0, np.nan, 3.0, 4.0])).n_missing == 1
    assert info_of(pd.Series([1, None, 3, 4], dtype="Int64")).n_missing == 1
    assert info_of(pd.Series(["a", None, "b", "c"], dtype=object)).n_missing == 1


def test_mixed_type_column_above_95_percent_is_number_with_note():
    values = [str(i) for i in range(97)] + ["abc", "x", "abc"]
    info = info_of(s(values), name="age")
    assert info.kind == "number" and info.n_missing == 3 and info.n_unique == 97
    assert info.note == "3 non-numeric values ('abc', 'x') treated as missing"
    coerced = coerce_column(s(values), "number")
    assert coerced.isna().sum() == 3 and coerced.iloc[5] == 5.0


def test_mixed_type_column_below_95_percent_is_category_with_fix():
    values = [str(i) for i in range(70)] + ["abc"] * 10
    info = info_of(s(values), name="age")
    assert info.kind == "category"
    assert "70 of 80 values are numbers" in info.note and "types={'age': 'number'}" in info.note


def test_binary_and_inf():
    assert kind_of(s(["0", "1", "1", "NA"])) == "binary"
    assert kind_of(pd.Series([True, False, True])) == "binary"
    assert kind_of(pd.Series([2.5, 7.0, 2.5])) == "binary"
    info = info_of(s(["1", "inf", "-inf", "2", "3"]))
    assert info.kind == "number" and info.n_missing == 2 and info.n_unique == 3


def test_one_value_plus_missing_is_category_not_constant():
    info = info_of(s(["yes", "", "yes", ""]))
    assert info.kind == "category" and info.used and "present vs missing" in info.note


def test_id_rules():
    consecutive = s([str(i) for i in range(100, 100 + N)])
    assert kind_of(consecutive, "n") == "id"
    spread = s([str(i * i) for i in range(N)])  # all distinct integers, not consecutive
    assert kind_of(spread, "sqft") == "number"
    assert kind_of(spread, "CustomerId") == "id" and kind_of(spread, "user_id") == "id"
    assert kind_of(s([str(i) for i in range(40)]), "n") == "number"  # <= 50 rows: never id
    assert kind_of(s([f"{i}.5" for i in range(N)]), "id") == "number"  # not integers
    assert kind_of(s([f"k{i}" for i in range(N)] + [""]), "k") == "category"  # a missing value: not an id
    repeated = s([str(i // 4 + 1) for i in range(4 * N)])  # persons seen four times each
    assert kind_of(repeated, "id") == "category" and kind_of(repeated, "HouseholdId") == "category"
    assert kind_of(repeated, "visits") == "number"  # not named like an id: a quantity


def test_a_pandas_category_dtype_is_a_category_whatever_its_values():
    codes = pd.Series(pd.Categorical(np.arange(300) % 60 + 1))  # a district coded 1..60
    assert infer_types(pd.DataFrame({"district": codes}))["district"].kind == "category"
    two = pd.Series(pd.Categorical([1, 2] * 50))
    assert infer_types(pd.DataFrame({"urban": two}))["urban"].kind == "binary"


def test_dates():
    assert kind_of(s(["2020-01-05", "2020-02-05", "2021-03-07", ""])) == "date"
    info = info_of(s(["25/12/2020", "01/02/2021", "13/01/2021"]))
    assert info.kind == "date" and info.date_format == "%d/%m/%Y"
    assert kind_of(s(["2020", "2021", "2022"])) == "number"  # pure numbers are not dates
    assert kind_of(s(["March", "April", "May"])) == "category"  # no year: not a date
    assert kind_of(pd.Series(pd.date_range("2020", periods=5, tz="Europe/Paris"))) == "date"
    tz = coerce_column(s(["2020-01-01T00:00:00+01:00", "2020-01-01T12:00:00+00:00", "x"]), "date")
    assert tz.dtype == "datetime64[ns]" and tz.iloc[0] == pd.Timestamp("2019-12-31 23:00") and pd.isna(tz.iloc[2])


def test_text_and_image_thresholds():
    assert kind_of(s(["short words here", "two words", "x y z"])) == "category"
    assert kind_of(s(["a long sentence of more than twenty chars", "another one with a few words", "z"])) == "text"
    assert kind_of(s(["a/b.png", "c.JPEG", "d.tiff", "e.gif"])) == "image"


def test_image_column_suffixes_are_the_folder_readers_suffixes():
    """One suffix list: a column of paths is an image column for every suffix a folder of images lists."""
    from deepfit.data.images.readers import IMAGE_SUFFIXES

    assert IMAGE_EXTENSIONS == IMAGE_SUFFIXES
    assert kind_of(s(["a/b.ppm", "c.PGM", "d.pbm", "e.jfif"])) == "image"


# ----------------------------------------------------------------------------- target


def test_target_single_value_is_error():
    df = pd.DataFrame({"x": s(["1", "2"]), "y": s(["a", "a"])})
    with pytest.raises(DataError, match=r"target 'y' has a single value 'a' in data\.csv: nothing to learn"):
        infer_types(df, target="y", source="data.csv")


def test_target_all_missing_is_error():
    df = pd.DataFrame({"x": s(["1", "2"]), "y": s(["", "NA"])})
    with pytest.raises(DataError, match=r"target 'y' in d\.csv has no values \(all 2 rows missing\)"):
        infer_types(df, target="y", source="d.csv")


def test_target_is_never_excluded():
    df = pd.DataFrame({"price": s([str(1000 + 7 * i * i) for i in range(N)]),
                       "id": s([str(i) for i in range(N)]), "name": s([f"u{i}" for i in range(N)])})
    assert infer_types(df, target="id")["id"].kind == "number"
    assert infer_types(df, target="name")["name"].kind == "category"
    info = infer_types(df.assign(price=df["price"].where(df.index > 2, "")), target="price")["price"]
    assert info.kind == "number" and "3 rows without a target value" in info.note


def test_target_not_found_suggests():
    df = pd.DataFrame({"price": [1, 2], "size": [3, 4]})
    with pytest.raises(ColumnNotFound, match=r"target column 'prce' not in h\.csv; did you mean 'price'\?"):
        infer_types(df, target="prce", source="h.csv")


# ----------------------------------------------------------------------------- overrides


def test_overrides():
    df = pd.DataFrame({"zip": s(["01234", "02345", "01234", "9"]), "y": s(["a", "b", "a", "b"])})
    info = infer_types(df, overrides={"zip": "category"})["zip"]
    assert info.kind == "category" and info.overridden and info.note.startswith("set by types=")
    assert coerce_column(df["zip"], "category").tolist() == ["01234", "02345", "01234", "9"]
    assert not infer_types(df, overrides={"zip": "id"})["zip"].used
    num = infer_types(df.assign(zip=s(["1", "x", "2", "3"])), overrides={"zip": "number"})["zip"]
    assert num.kind == "number" and num.n_missing == 1 and "'x'" in num.note


@pytest.mark.parametrize("overrides, error, fragment", [
    ({"zip": "categorical"}, ConfigError, "'categorical' is not a column kind; use one of number, category"),
    ({"zpi": "category"}, ColumnNotFound, "type override column 'zpi' not in data; did you mean 'zip'?"),
    ({"zip": "binary"}, ConfigError, "holds 3 distinct values"),
    ({"y": "number"}, ConfigError, "none of its values in data parse as numbers"),
    ({"zip": "date"}, ConfigError, "none of its values in data parse as dates"),
    ({"y": "id"}, ConfigError, "target 'y' cannot be of kind 'id'"),
])
def test_bad_overrides(overrides, error, fragment):
    df = pd.DataFrame({"zip": s(["01234", "02345", "9"]), "y": s(["a", "b", "c"])})
    with pytest.raises(error) as err:
        infer_types(df, target="y", overrides=overrides)
    assert fragment in str(err.value)


# ----------------------------------------------------------------------------- find_column


def test_find_column():
    df = pd.DataFrame({"price": [1], "Size": [2], "a": [3]})
    assert find_column(df, "price") == "price"
    with pytest.warns(UserWarning, match="using 'Size'"):
        assert find_column(df, " size", role="target") == "Size"
    with pytest.raises(ColumnNotFound) as err:
        find_column(df, "prce", role="target", source="data/houses.csv")
    assert str(err.value) == ("target column 'prce' not in data/houses.csv; did you mean 'price'? "
                              "Columns: price, Size, a")
    assert isinstance(err.value, KeyError) and isinstance(err.value, DataError)
    with pytest.raises(ColumnNotFound, match="pick one of the columns below. Columns: price"):
        find_column(df, "zzzzzz")
    with pytest.raises(ColumnNotFound, match="several columns match up to case: 'A', 'a'"):
        find_column(pd.DataFrame({"A": [1], "a": [2]}), "A ")


# ----------------------------------------------------------------------------- coerce_column


def test_coerce_number_date_and_strings():
    x = coerce_column(pd.Series([" 1.5 ", "NA", "abc", "inf", "-2"], name="x", index=[5, 6, 7, 8, 9]), "number")
    assert x.dtype == np.float64 and x.name == "x" and x.index.tolist() == [5, 6, 7, 8, 9]
    assert x.tolist()[0] == 1.5 and x.tolist()[4] == -2.0 and x.isna().tolist() == [False, True, True, True, False]
    assert coerce_column(pd.Series([1, 2], dtype="Int64"), "number").dtype == np.float64
    assert coerce_column(pd.Series([True, False]), "number").tolist() == [1.0, 0.0]
    d = coerce_column(s(["2020-01-02", "?", "1200-01-01"]), "date")
    assert d.dtype == "datetime64[ns]" and d.isna().tolist() == [False, True, True]  # out of ns range -> NaT
    c = coerce_column(pd.Series([" a ", None, "null", 3]), "category")
    assert c.dtype == object and c.iloc[0] == "a" and c.iloc[3] == "3"
    assert c.iloc[1] is np.nan and c.iloc[2] is np.nan  # np.nan, never pd.NA
    assert coerce_column(pd.Series([1.0, np.nan]), "binary").tolist()[0] == "1.0"
    with pytest.raises(ConfigError, match="'float' is not a column kind"):
        coerce_column(s(["1"]), "float")


def test_date_format_pins_day_month_order():
    v = s(["01/02/2021"])
    assert coerce_column(v, "date").iloc[0] == pd.Timestamp("2021-01-02")
    assert coerce_column(v, "date", date_format="%d/%m/%Y").iloc[0] == pd.Timestamp("2021-02-01")


# ----------------------------------------------------------------------------- infer_task & state


def test_infer_task():
    assert infer_task(ColumnInfo("y", "binary", 0, 2), s(["a", "b"])) == "classify"
    assert infer_task(ColumnInfo("y", "number", 0, 4), s(["1", "2", "3", "4"])) == "classify"  # too few for ratings
    assert infer_task(ColumnInfo("y", "number", 0, 5), s(["1", "2", "3", "4", "5"])) == "regress"  # ratings 1..5
    assert infer_task(ColumnInfo("y", "number", 0, 11), s([str(i) for i in range(11)])) == "regress"
    assert infer_task(ColumnInfo("y", "number", 0, 3), s(["0.5", "1", "2"])) == "regress"
    with pytest.raises(DataError, match="target 'y' is a date column"):
        infer_task(ColumnInfo("y", "date", 0, 3), s(["2020-01-01"]))


@pytest.mark.parametrize("values, task", [
    (range(1, 6), "regress"),  # 1..5 stars
    (range(1, 8), "regress"),  # 1..7 Likert
    (range(1, 11), "regress"),  # 1..10
    (range(0, 10), "classify"),  # digits 0..9: class codes start at 0
    (range(0, 11), "regress"),  # 11 distinct: many values
    (range(0, 5), "classify"),  # 0..4
    (range(1, 5), "classify"),  # 1..4: fewer than 5 levels
    ([1, 2, 3, 5, 6], "classify"),  # a gap: not a scale
    ([2, 3, 4, 5, 6, 7], "classify"),  # starts at 2
    ([-2, -1, 0, 1, 2], "classify"),
    ([1.0, 2.0, 3.0, 4.0, 5.0], "regress"),  # integer-valued floats are integers
])
def test_ratings_like_integers_regress_and_class_codes_classify(values, task):
    values = list(values)
    column = s([str(v) for v in values * 3])
    assert infer_task(ColumnInfo("rating", "number", 0, len(values)), column) == task
    got, why = task_reason(ColumnInfo("rating", "number", 0, len(values)), column)
    assert got == task and why.startswith(f"task: {'regression' if task == 'regress' else 'classification'}, "
                                          "because 'rating' holds ")
    assert ("task='classify' (CLI --task classify)" if task == "regress" else
            "task='regress' (CLI --task regress)") in why


def test_task_reasons_say_what_the_column_holds():
    def why(kind, values):
        return task_reason(ColumnInfo("y", kind, 0, len(set(values))), s(values))[1]

    assert why("number", ["1", "2", "3", "4", "5"]) == (
        "task: regression, because 'y' holds the integers 1..5, a ratings-like scale; pass task='classify' "
        "(CLI --task classify) to predict it as classes")
    assert why("number", ["0", "1", "2", "0"]) == (
        "task: classification, because 'y' holds only 3 distinct integers (0..2); pass task='regress' "
        "(CLI --task regress) to predict it as a number")
    assert "only 5 distinct integers (1, 2, 3, 5, 6)" in why("number", ["1", "2", "3", "5", "6"])
    assert "holds 12 distinct numbers (more than 10)" in why("number", [str(i) for i in range(12)])
    assert "numbers that are not all integers" in why("number", ["0.5", "1", "2"])
    assert why("category", ["a", "b", "c"]) == "task: classification, because 'y' holds categories (not numbers)"
    assert why("binary", ["a", "b"]) == "task: classification, because 'y' holds two values"


def test_column_info_json_roundtrip_and_validation():
    info = info_of(s(["1", "x", "2", "3"]))
    back = ColumnInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    assert back == info and back.used
    with pytest.raises(DataError, match="kind 'blob'"):
        ColumnInfo.from_dict({**info.to_dict(), "kind": "blob"})
    with pytest.raises(DataError, match="unknown keys"):
        ColumnInfo.from_dict({**info.to_dict(), "extra": 1})


# ----------------------------------------------------------------------------- fuzzing

_TOKENS = st.one_of(
    st.sampled_from(["", "NA", "?", " none ", "yes", "no", "2020-01-05", "05/01/2020", "a.png", "inf", "0", "1"]),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(-10**6, 10**6).map(str),
    st.text(string.printable, max_size=12),
)
_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.lists(_TOKENS, min_size=1, max_size=60))
def test_fuzz_inference_invariants(tokens):
    values = s(tokens)
    info = infer_types(pd.DataFrame({"c": values}))["c"]
    assert info.kind in KINDS and 0 <= info.n_missing <= len(tokens) and info.n_unique >= 0
    assert ColumnInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
    typed = coerce_column(values, info.kind, date_format=info.date_format)
    assert len(typed) == len(tokens) and typed.index.equals(values.index)
    if info.kind == "number":
        assert typed.dtype == np.float64 and int(typed.isna().sum()) == info.n_missing
        assert np.isfinite(typed.dropna()).all()
    elif info.kind == "date":
        assert typed.dtype == "datetime64[ns]" and int(typed.isna().sum()) == info.n_missing
    else:
        assert typed.dtype == object and int(typed.isna().sum()) == info.n_missing
        assert all(isinstance(v, str) or v is np.nan for v in typed)


@_FUZZ
@given(st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=3, max_size=40, unique=True))
def test_fuzz_number_strings_are_numbers_exactly(xs):
    values = s([repr(x) for x in xs])
    info = infer_types(pd.DataFrame({"v": values}), target="v")["v"]
    assert info.kind == "number"
    assert coerce_column(values, "number").tolist() == xs
