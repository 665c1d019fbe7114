"""Column features: number, category, binary, date, text, sequence — fit, encode, JSON state round-trips."""

import json

import numpy as np
import pandas as pd
import pytest

from deepfit.errors import DataError
from deepfit.features import FEATURES, BinaryFeature, CategoryFeature, DateFeature, NumberFeature, TextFeature
from deepfit.features.category import MAX_VOCABULARY
from deepfit.features.number import N_BINS


def roundtrip(feature):
    state = json.loads(json.dumps(feature.state_dict(), allow_nan=False))
    return type(feature).from_state(feature.name, state)


def _columns():
    rng = np.random.default_rng(0)
    n = 300

    def pick(options):  # strings with ~1/3 missing (np.nan, as coerce_column gives)
        values = rng.choice(options + [""], size=n).astype(object)
        values[values == ""] = np.nan
        return pd.Series(values, dtype=object)

    return {
        "number": pd.Series(np.where(rng.random(n) < 0.1, np.nan, rng.lognormal(size=n))),
        "category": pick(["a", "b", "c"]),
        "binary": pick(["no", "yes"]),
        "date": pd.Series(pd.to_datetime("2020-01-01") + pd.to_timedelta(rng.integers(0, 2000, n), unit="D")),
        "text": pick(["Good stuff!", "BAD, very bad"]),
        "sequence": pd.Series([np.nan if i % 7 == 0 else rng.normal(size=(2, 5 + i % 4)) for i in range(n)], dtype=object),
    }


FLOAT_GROUPS = {"num", "text_w", "seq", "seq_mask"}


@pytest.mark.parametrize("kind", ["number", "category", "binary", "date", "text", "sequence"])
def test_every_feature_conforms(kind):
    values = _columns()[kind]
    cls = FEATURES[kind]
    f = cls("col").fit(values[:200])
    out = f.encode(values)
    assert set(out) <= {"num", "cat", "text", "text_w", "tokens", "seq", "seq_mask"}
    for group, arr in out.items():
        assert len(arr) == len(values)
        assert arr.dtype == (np.float32 if group in FLOAT_GROUPS else np.int64)
        assert np.isfinite(arr).all()
    widths = {g: a.shape[1] for g, a in out.items()}
    assert widths.get("num", 0) == len(f.num_bins())
    assert widths.get("cat", 0) == len(f.cat_cardinalities())
    assert widths.get("text", 0) == f.n_text()
    g = roundtrip(f)
    for group, arr in g.encode(values).items():
        np.testing.assert_array_equal(arr, out[group])
    assert g.state_dict() == f.state_dict()


def test_number_quantile_normal_and_missing_indicator():
    x = pd.Series(np.arange(1.0, 1001.0))
    f = NumberFeature("x").fit(x)
    assert not f.missing_indicator  # no missing in training: one column, fixed at fit time
    z = f.encode(pd.Series([1.0, 500.5, 1000.0, np.nan, np.inf, -1e9, 1e9]))["num"][:, 0]
    assert z[1] == pytest.approx(0.0, abs=1e-6)  # the median
    assert z[0] < -3 and z[2] > 3 and abs(z[0]) <= 5 and abs(z[2]) <= 5
    assert z[3] == 0 and z[4] == 0  # missing and inf → 0
    assert z[5] == z[0] and z[6] == z[2]  # out of range clips to the extreme quantiles
    enc = NumberFeature("x").fit(pd.Series([1.0, np.nan, 3.0])).encode(pd.Series([1.0, np.nan]))["num"]
    assert enc.shape == (2, 2) and enc[:, 1].tolist() == [0.0, 1.0]


def test_number_bins_are_sorted_unique_and_capped():
    f = NumberFeature("x").fit(pd.Series(np.random.default_rng(1).normal(size=5000)))
    assert 2 <= len(f.bins) <= N_BINS + 1
    assert all(b > a for a, b in zip(f.bins, f.bins[1:]))
    few = NumberFeature("k").fit(pd.Series([1.0, 2.0, 2.0, 3.0] * 10))
    assert len(few.bins) == 3  # one edge per distinct value, no interpolated edges
    const = NumberFeature("c").fit(pd.Series([7.0] * 10))
    assert const.bins is None and const.encode(pd.Series([7.0, 9.0]))["num"].tolist() == [[0.0], [0.0]]
    empty = NumberFeature("e").fit(pd.Series([np.nan, np.nan]))
    assert empty.bins is None and empty.encode(pd.Series([1.0, np.nan]))["num"].tolist() == [[0.0, 0.0], [0.0, 1.0]]


def test_number_rejects_strings_and_bad_state():
    with pytest.raises(DataError, match="coerce_column"):
        NumberFeature("x").fit(pd.Series(["a", "b"]))
    with pytest.raises(DataError, match="bins"):
        NumberFeature.from_state("x", {"quantiles": [0.0, 1.0], "bins": [1.0, 0.0], "missing_indicator": False})
    with pytest.raises(DataError, match="lacks"):
        NumberFeature.from_state("x", {"quantiles": []})


def test_category_unknown_and_missing_go_to_zero():
    f = CategoryFeature("c").fit(pd.Series(["b", "a", "b", np.nan, "c", "b", "a"], dtype=object))
    assert f.vocabulary == ["b", "a", "c"]  # by frequency, ties by text
    codes = roundtrip(f).encode(pd.Series(["a", "zzz", np.nan, "b", "c"], dtype=object))["cat"][:, 0]
    assert codes.tolist() == [2, 0, 0, 1, 3]
    assert f.cat_cardinalities() == [4]


def test_category_vocabulary_cap_is_reported():
    values = pd.Series([f"v{i}" for i in range(MAX_VOCABULARY + 5)] + ["v0"] * 3, dtype=object)
    f = CategoryFeature("c").fit(values)
    assert len(f.vocabulary) == MAX_VOCABULARY and f.vocabulary[0] == "v0"
    state = f.state_dict()
    assert state["n_rare"] == 5 and "5 rarer values" in state["note"]


def test_binary_codes_and_errors():
    f = BinaryFeature("b").fit(pd.Series(["yes", "no", np.nan], dtype=object))
    enc = f.encode(pd.Series(["no", "yes", np.nan, "maybe"], dtype=object))["num"]
    assert enc.tolist() == [[0.0, 0.0], [1.0, 0.0], [0.5, 1.0], [0.5, 0.0]]
    with pytest.raises(DataError, match="category"):
        BinaryFeature("b").fit(pd.Series(["x", "y", "z"], dtype=object))


def test_date_features_are_cyclic_and_trend_extrapolates():
    days = pd.Series(pd.to_datetime(["2020-01-01", "2020-07-01", "2021-01-01", None]))
    f = DateFeature("d").fit(days)
    assert f.missing_indicator and not f.has_time
    enc = f.encode(pd.Series(pd.to_datetime(["2020-01-01", "2021-01-01", "2030-01-01", None])))["num"]
    assert enc.shape == (4, 8)
    assert enc[0, 1:3].tolist() == pytest.approx([0.0, 1.0])  # January: sin 0, cos 1
    assert enc[0, 0] < enc[1, 0] < enc[2, 0]  # the trend keeps increasing past the training range
    assert enc[3].tolist() == [0.0] * 7 + [1.0]
    timed = DateFeature("t").fit(pd.Series(pd.to_datetime(["2020-01-01 06:00", "2020-01-02 18:30"])))
    assert timed.has_time and timed.encode(pd.Series(pd.to_datetime(["2020-01-01 06:00"])))["num"].shape == (1, 9)


def test_text_ngrams_are_tfidf_weighted_and_stable():
    train = pd.Series(["Hello world", "hello WORLD!", "Hello there", "world peace"] * 3, dtype=object)
    f = TextFeature("t").fit(train)
    out = f.encode(pd.Series(["Hello world", np.nan, "zzz qqq"], dtype=object))
    ids, w = out["text"][:, 0], out["text_w"][:, 0]
    assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < f.ngram_vocab_size()
    assert np.sqrt((w[0] ** 2).sum()) == pytest.approx(1.0, abs=1e-5)  # L2-normalised TF-IDF
    assert (ids[1] > 0).sum() == 0 and out["num"][1, -1] == 0.0  # missing: no n-grams (no missing in training)
    assert (w[ids == 0] == 0).all()
    # Case is kept in character n-grams: "Hello" and "hello" share lower-cased words only.
    a = set(f.encode(pd.Series(["Hello"], dtype=object))["text"][0, 0]) - {0}
    b = set(f.encode(pd.Series(["hello"], dtype=object))["text"][0, 0]) - {0}
    assert a != b and a & b
    # BPE tokens keep case and decode back.
    tokens = out["tokens"][0, 0]
    assert f.tokenizer.decode(tokens[tokens > 0]) == "Hello world"
