"""TablePreprocessor: fixed three-array output, spec, JSON state, predict-time input checks."""

import json

import numpy as np
import pandas as pd
import pytest

from deepfit.errors import ConfigError, DataError
from deepfit.features.preprocessor import TablePreprocessor

KINDS = {"n": "number", "c": "category", "b": "binary", "d": "date", "t": "text", "img": "image"}


def coerced_frame(n=120, seed=0):
    """Columns as coerce_column would give them (float64 / datetime64 / object with np.nan)."""
    rng = np.random.default_rng(seed)
    num = rng.normal(size=n)
    num[::10] = np.nan
    cat = rng.choice(["red", "green", "blue"], size=n).astype(object)
    cat[::7] = np.nan
    return pd.DataFrame({
        "n": num,
        "c": pd.Series(cat, dtype=object),
        "b": pd.Series(rng.choice(["no", "yes"], size=n), dtype=object),
        "d": pd.to_datetime("2021-01-01") + pd.to_timedelta(rng.integers(0, 400, n), unit="D"),
        "t": pd.Series(rng.choice(["nice and cheap", "awful!!", "OK"], size=n), dtype=object),
        "img": pd.Series(["a.png"] * n, dtype=object),
        "extra": np.zeros(n),
    })


def test_transform_shapes_and_spec():
    df = coerced_frame()
    pre = TablePreprocessor(KINDS).fit(df.iloc[:100])
    num, cat, text = pre.transform(df)
    assert num.dtype == np.float32 and cat.dtype == np.int64 and text.dtype == np.int64
    # number: value + missing indicator; binary: 1; date: trend + 3 sin/cos pairs; text: 12 style numbers
    assert num.shape == (120, 2 + 1 + 7 + 12) and cat.shape == (120, 1) and text.shape[:2] == (120, 1)
    assert pre.input_names() == ("num", "cat", "text", "text_w", "tokens")
    arrays = pre.arrays(df)
    assert len(arrays) == 5 and arrays[3].shape == text.shape and arrays[3].dtype == np.float32
    spec = pre.spec()
    assert spec["n_num"] == 22 and len(spec["num_bins"]) == 22
    assert spec["num_bins"][0] is not None and spec["num_bins"][1] is None  # value has bins, indicator not
    assert spec["cat_cardinalities"] == [4] and spec["n_text"] == 1
    assert spec["text_buckets"] == pre.features["t"].ngram_vocab_size() and text.max() < spec["text_buckets"]
    assert pre.ignored == ["img"]
    assert json.loads(json.dumps(spec)) == spec


def test_state_roundtrip_gives_identical_encodings():
    df = coerced_frame()
    pre = TablePreprocessor(KINDS).fit(df.iloc[:80])
    state = json.loads(json.dumps(pre.state_dict(), allow_nan=False))
    again = TablePreprocessor.from_state(state)
    for a, b in zip(pre.arrays(df), again.arrays(df), strict=True):
        np.testing.assert_array_equal(a, b)
    assert again.spec() == pre.spec()
    assert again.state_dict() == pre.state_dict()


@pytest.mark.parametrize("keep", [["n"], ["c"], ["t"], []])
def test_zero_column_groups(keep):
    df = coerced_frame(20)
    pre = TablePreprocessor({k: KINDS[k] for k in keep}).fit(df)
    num, cat, text = pre.transform(df)
    assert len(num) == len(cat) == len(text) == 20
    assert num.shape[1] == (2 if "n" in keep else 0) + (12 if "t" in keep else 0)  # text: style numbers
    assert cat.shape[1] == (1 if "c" in keep else 0)
    assert text.shape[1] == (1 if "t" in keep else 0)


def test_unseen_categories_and_errors():
    df = coerced_frame(50)
    pre = TablePreprocessor({"c": "category"}).fit(df)
    new = pd.DataFrame({"c": pd.Series(["purple", np.nan, "red"], dtype=object)})
    codes = pre.transform(new)[1][:, 0]
    assert codes[0] == 0 and codes[1] == 0 and codes[2] > 0
    with pytest.raises(ConfigError, match="kind 'sound'"):
        TablePreprocessor({"x": "sound"})
    with pytest.raises(DataError, match="'c'"):
        pre.transform(pd.DataFrame({"other": [1]}))
    with pytest.raises(ConfigError, match="not fitted"):
        TablePreprocessor({"c": "category"}).transform(df)
    with pytest.raises(DataError, match="format"):
        TablePreprocessor.from_state({"format": 99, "columns": []})


def test_check_input_validates_raw_rows():
    pytest.importorskip("deepfit.data.table")
    train = pd.DataFrame({"x": np.arange(40, dtype=float), "c": pd.Series(["a", "b"] * 20, dtype=object)})
    pre = TablePreprocessor({"x": "number", "c": "category"}).fit(train)
    raw = pd.DataFrame({"extra": ["?"] * 4, "c": ["a", "zebra", "", "b"], "x": ["1.5", "NA", "inf", " 3 "]})
    out = pre.check_input(raw, source="new.csv")
    assert list(out.columns) == ["x", "c"]  # fit order; extra column dropped
    assert out["x"].iloc[0] == 1.5 and np.isnan(out["x"].iloc[1]) and np.isnan(out["x"].iloc[2])
    assert pre.transform(out)[1][:, 0].tolist()[1] == 0  # unseen category → unknown bucket
    with pytest.raises(DataError, match=r"'x' in new\.csv.*'abc' at row 1"):
        pre.check_input(pd.DataFrame({"x": ["1", "abc"], "c": ["a", "b"]}), source="new.csv")
    with pytest.raises(KeyError, match="'c'"):  # ColumnNotFound is a KeyError and a DataError
        pre.check_input(pd.DataFrame({"x": [1.0]}), source="new.csv")
    typed = pre.check_input(pd.DataFrame({"x": [np.nan, np.inf], "c": ["a", None]}), source="rows")
    assert typed["x"].isna().all()
