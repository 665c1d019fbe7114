"""Targets: class labels ↔ codes, regression standardisation (or log1p), output bounds, JSON state."""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfit.errors import ConfigError, DataError
from deepfit.features.target import (ClassTarget, RegressionTarget, make_target, skewed_positive,
                                     target_from_state)


def roundtrip(target):
    return target_from_state(json.loads(json.dumps(target.state_dict(), allow_nan=False)))


@pytest.mark.parametrize(
    ("labels", "dtype", "sorted_labels"),
    [
        ([10, 2, 10, 33], "int", [2, 10, 33]),
        ([0.5, 2.0, 0.5], "float", [0.5, 2.0]),
        ([True, False, True], "bool", [False, True]),
        (["cat", "ant", "bee"], "str", ["ant", "bee", "cat"]),
    ],
)
def test_class_target_roundtrip_keeps_label_types(labels, dtype, sorted_labels):
    t = make_target("classify", "y").fit(pd.Series(labels, dtype=object))
    assert t.dtype == dtype and t.n_outputs == len(sorted_labels)
    codes = t.encode(pd.Series(labels, dtype=object))
    assert codes.dtype == np.int64
    u = roundtrip(t)
    assert isinstance(u, ClassTarget)
    np.testing.assert_array_equal(u.encode(pd.Series(labels, dtype=object)), codes)
    decoded = u.decode(np.arange(len(sorted_labels)))
    assert decoded.tolist() == sorted_labels
    assert type(decoded.tolist()[0]) is type(sorted_labels[0])


def test_class_target_accepts_text_forms_of_labels():
    t = ClassTarget("y").fit(pd.Series([1, 2, 2]))
    assert t.encode(pd.Series(["1", "2.0", 2])).tolist() == [0, 1, 1]  # labels read from a CSV are text
    b = ClassTarget("y").fit(pd.Series([True, False]))
    assert b.encode(pd.Series(["true", "False", "1"])).tolist() == [1, 0, 1]


def test_class_target_errors_name_label_and_column():
    t = ClassTarget("species").fit(pd.Series(["a", "b"]))
    with pytest.raises(DataError, match=r"'species'.*'c'"):
        t.encode(pd.Series(["a", "c"]))
    with pytest.raises(DataError, match="single value 'a'"):
        ClassTarget("species").fit(pd.Series(["a", "a"]))
    with pytest.raises(DataError, match="missing value at row 1"):
        ClassTarget("species").fit(pd.Series(["a", None, "b"]))
    with pytest.raises(DataError, match="labels"):
        target_from_state({"task": "classify", "name": "y", "labels": ["a"], "dtype": "str"})


def test_regression_target_standardises_and_decodes():
    y = pd.Series([10.0, 20.0, 30.0, 40.0])
    t = make_target("regress", "price").fit(y)
    z = t.encode(y)
    assert z.dtype == np.float32 and z.mean() == pytest.approx(0, abs=1e-6) and z.std() == pytest.approx(1, abs=1e-5)
    u = roundtrip(t)
    assert isinstance(u, RegressionTarget) and u.n_outputs == 1
    np.testing.assert_allclose(u.decode(z), y.to_numpy(), rtol=1e-6)
    const = RegressionTarget("c").fit(pd.Series([5.0, 5.0]))
    assert const.std == 1.0 and const.encode(pd.Series([6.0])).tolist() == [1.0]


def test_regression_target_rejects_missing_and_bad_state():
    with pytest.raises(DataError, match="row 1"):
        RegressionTarget("y").fit(pd.Series([1.0, np.nan]))
    with pytest.raises(DataError, match="numeric"):
        RegressionTarget("y").fit(pd.Series(["a", "b"]))
    with pytest.raises(DataError, match="std"):
        target_from_state({"task": "regress", "name": "y", "mean": 0.0, "std": 0.0})
    with pytest.raises(ConfigError, match="task"):
        make_target("cluster", "y")


# ----------------------------------------------------------------------------- bounds and log1p

FINITE = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


def test_regression_bounds_are_the_training_range_widened_by_5_percent():
    t = make_target("regress", "price").fit(pd.Series([10.0, 20.0, 30.0, 50.0]))
    assert (t.low, t.high) == (8.0, 52.0)  # range 40: 2 on each side
    assert t.decode([-100.0, 0.0, 100.0]).tolist() == [8.0, pytest.approx(27.5), 52.0]
    u = roundtrip(t)
    assert (u.transform, u.low, u.high) == ("standard", 8.0, 52.0)
    assert u.decode([100.0]).tolist() == [52.0]
    const = RegressionTarget("c").fit(pd.Series([5.0, 5.0]))
    assert (const.low, const.high) == (5.0, 5.0) and const.decode([3.0, -3.0]).tolist() == [5.0, 5.0]


def test_unbounded_regression_target_of_an_older_model_does_not_clip():
    t = target_from_state({"task": "regress", "name": "y", "mean": 1.0, "std": 2.0, "transform": "standard",
                           "low": None, "high": None})
    assert t.decode([1e6]).tolist() == [2e6 + 1.0]


def test_log1p_encodes_log1p_standardised_and_decodes_back():
    y = np.array([0.0, 1.0, 9.0, 99.0, 999.0, 12_345.678])
    t = make_target("regress", "count", transform="log1p").fit(pd.Series(y))
    ly = np.log1p(y)
    assert t.mean == pytest.approx(ly.mean(), abs=1e-12) and t.std == pytest.approx(ly.std(), abs=1e-12)
    np.testing.assert_allclose(t.scale(y), (ly - ly.mean()) / ly.std(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(t.decode(t.scale(y)), y, rtol=1e-9, atol=1e-9)  # exact up to float64 rounding
    np.testing.assert_allclose(t.decode(t.encode(pd.Series(y))), y, rtol=1e-6, atol=1e-6)  # encode is float32
    assert t.low == 0.0 and t.high == pytest.approx(12_345.678 * 1.05)  # low: max(0 - 5 % range, 0)
    assert t.decode([1e6]).tolist() == [t.high]  # expm1 overflows to inf, then is clipped
    u = roundtrip(t)
    assert u.transform == "log1p" and np.array_equal(u.decode(t.scale(y)), t.decode(t.scale(y)))
    positive = make_target("regress", "p", transform="log1p").fit(pd.Series([100.0, 200.0, 300.0]))
    assert positive.low == 90.0 and positive.high == 310.0


def test_log1p_needs_non_negative_training_values():
    with pytest.raises(ConfigError, match=r"negative values \(the smallest is -2.5, row 2\).*transform='standard'"):
        RegressionTarget("y", transform="log1p").fit(pd.Series([3.0, -1.0, -2.5, 4.0]))
    with pytest.raises(ConfigError, match="unknown regression target transform 'log'; did you mean 'log1p'"):
        RegressionTarget("y", transform="log")
    with pytest.raises(ConfigError, match="regression targets"):
        make_target("classify", "y", transform="log1p")


@pytest.mark.parametrize("change, message", [
    ({"transform": "sqrt"}, "transform 'sqrt'"),
    ({"low": 1.0}, "both be numbers or both null"),
    ({"low": 5.0, "high": 1.0}, "low <= high"),
    ({"low": "0", "high": 1.0}, "finite numbers"),
    ({"low": 0.0, "high": float("inf")}, "finite numbers"),
    ({"low": True, "high": 1.0}, "finite numbers"),
])
def test_damaged_regression_bounds_are_refused(change, message):
    state = {"task": "regress", "name": "y", "mean": 0.0, "std": 1.0, "transform": "standard",
             "low": None, "high": None, **change}
    with pytest.raises(DataError, match=message):
        target_from_state(state)
    del state["transform"]
    with pytest.raises(DataError, match="lacks transform"):
        target_from_state(state)


@settings(max_examples=60, deadline=None)
@given(st.lists(FINITE, min_size=1, max_size=40), st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=20),
       st.sampled_from(["standard", "log1p"]))
def test_decoded_values_always_lie_within_the_bounds(train, outputs, transform):
    y = np.abs(train) if transform == "log1p" else np.asarray(train)
    t = RegressionTarget("y", transform=transform).fit(pd.Series(y))
    span = y.max() - y.min()
    assert t.low <= y.min() and t.high >= y.max()
    assert t.high == pytest.approx(y.max() + 0.05 * span)
    decoded = t.decode(outputs)
    assert np.all((decoded >= t.low) & (decoded <= t.high))
    back = t.decode(t.scale(y))  # the training values come back (up to float64 rounding)
    np.testing.assert_allclose(back, y, rtol=1e-9, atol=1e-9 * max(1.0, float(np.abs(y).max())))


# ----------------------------------------------------------------------------- skewed_positive


def test_skewed_positive_on_typical_targets():
    rng = np.random.default_rng(0)
    assert skewed_positive(rng.lognormal(12.0, 1.0, 2000))  # house prices
    assert skewed_positive(rng.negative_binomial(1, 0.05, 2000).astype(float))  # counts, many small
    assert skewed_positive(rng.exponential(3.0, 2000))
    assert not skewed_positive(rng.normal(170.0, 10.0, 2000))  # heights
    assert not skewed_positive(rng.uniform(0.0, 10.0, 2000))
    assert not skewed_positive(rng.poisson(3.0, 2000).astype(float))  # skewness ~0.6
    assert not skewed_positive(-rng.lognormal(0.0, 1.0, 2000))  # negative
    assert not skewed_positive(rng.lognormal(0.0, 1.0, 19))  # too few values to tell
    assert not skewed_positive(np.full(100, 3.0))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(1.2, 3.0), st.floats(-5.0, 12.0), st.integers(300, 2000))
def test_lognormal_values_are_skewed_positive(seed, sigma, mu, n):
    assert skewed_positive(np.random.default_rng(seed).lognormal(mu, sigma, n))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(1e-3, 1e4), st.floats(5.0, 100.0), st.integers(30, 2000))
def test_normal_and_uniform_values_are_not(seed, sd, ratio, n):
    rng = np.random.default_rng(seed)
    assert not skewed_positive(rng.normal(ratio * sd, sd, n))  # mean at least 5 sd above 0
    assert not skewed_positive(rng.uniform(0.0, sd, n))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1e6), min_size=0, max_size=200), st.integers(-20, 20))
def test_skewed_positive_ignores_units_and_refuses_negatives(values, power):
    x = np.asarray(values, dtype=np.float64)
    assert skewed_positive(x) == skewed_positive(x * 2.0**power)  # cents or thousands: the same answer
    if len(x):
        assert not skewed_positive(np.append(x, -1.0))
