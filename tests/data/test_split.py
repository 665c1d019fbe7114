"""split_indices: random, stratified, time-ordered and grouped splits, and their errors."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepfit.data.split import split_indices
from deepfit.errors import ColumnNotFound, ConfigError, DataError


def check_partition(train, test, n):
    assert train.dtype == np.int64 and test.dtype == np.int64
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)  # sorted, no repeats
    assert len(np.intersect1d(train, test)) == 0
    assert np.array_equal(np.union1d(train, test), np.arange(n))


def test_random_split_is_deterministic_in_seed():
    df = pd.DataFrame({"y": np.arange(50.0)})
    a = split_indices(df, target="y", task="regress", seed=3)
    b = split_indices(df, target="y", task="regress", seed=3)
    c = split_indices(df, target="y", task="regress", seed=4)
    check_partition(*a, 50)
    assert len(a[1]) == 10 and np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])
    assert len(split_indices(df, target=None, task="classify", seed=0, test_size=0.3)[1]) == 15


def test_stratified_keeps_class_shares_and_singletons_in_train():
    y = ["a"] * 60 + ["b"] * 30 + ["c"] * 9 + ["solo"]
    df = pd.DataFrame({"y": y})
    train, test = split_indices(df, target="y", task="classify", seed=0)
    check_partition(train, test, 100)
    counts = pd.Series(np.array(y)[test]).value_counts().to_dict()
    assert counts == {"a": 12, "b": 6, "c": 2} and 99 in train


def test_stratified_tiny_classes_still_give_a_test_row():
    df = pd.DataFrame({"y": ["a", "a", "b", "b", "c", "c"]})
    train, test = split_indices(df, target="y", task="classify", seed=0, test_size=0.1)
    check_partition(train, test, 6)
    assert len(test) == 1


def test_stratified_all_singletons_is_error():
    with pytest.raises(DataError, match="every class of target 'y' has a single row"):
        split_indices(pd.DataFrame({"y": ["a", "b", "c"]}), target="y", task="classify", seed=0)


def test_time_ordered_by_date_and_number():
    dates = pd.date_range("2020-01-01", periods=10).astype(str).tolist()
    df = pd.DataFrame({"d": dates[::-1], "t": [str(v) for v in [5, 1, 9, 3, 7, 2, 8, 0, 6, 4]], "y": range(10)})
    train, test = split_indices(df, target="y", task="regress", seed=0, by="d", test_size=0.3)
    assert test.tolist() == [0, 1, 2]  # the three latest dates sit in the first rows
    train, test = split_indices(df, target="y", task="regress", seed=0, by="t", test_size=0.3)
    assert sorted(df["t"].iloc[test].astype(int)) == [7, 8, 9]
    typed = pd.DataFrame({"d": pd.to_datetime(dates), "y": range(10)})
    assert split_indices(typed, target="y", task="regress", seed=9, by="d")[1].tolist() == [8, 9]


def test_time_ordered_keeps_ties_together():
    df = pd.DataFrame({"t": [1, 1, 1, 2, 2, 2, 2, 3, 3, 3]})
    train, test = split_indices(df, target=None, task="regress", seed=0, by="t", test_size=0.2)
    assert test.tolist() == [7, 8, 9]
    train, test = split_indices(pd.DataFrame({"t": [1] * 8 + [2] * 2}), target=None, task="regress",
                                seed=0, by="t", test_size=0.5)
    assert test.tolist() == [8, 9]


def test_time_ordered_missing_value_is_error():
    df = pd.DataFrame({"d": ["2020-01-01", "", "2020-01-03", "2020-01-04"]})
    with pytest.raises(DataError, match=r"split-by column 'd' has 1 missing or unparseable values \(rows 1\)"):
        split_indices(df, target=None, task="regress", seed=0, by="d")


def test_grouped_split_never_cuts_a_group():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user": rng.integers(0, 12, 200).astype(str), "y": rng.normal(size=200)})
    train, test = split_indices(df, target="y", task="regress", seed=5, group="user")
    check_partition(train, test, 200)
    assert not set(df["user"].iloc[train]) & set(df["user"].iloc[test])
    assert 20 <= len(test) <= 70
    with pytest.raises(DataError, match="group column 'user' holds a single group"):
        split_indices(df.assign(user="u"), target="y", task="regress", seed=0, group="user")


@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"test_size": 0.0}, ConfigError, "test_size=0.0 must be a fraction strictly between 0 and 1"),
    ({"test_size": 1}, ConfigError, "test_size=1 must be"),
    ({"test_size": float("nan")}, ConfigError, "test_size=nan"),
    ({"test_size": True}, ConfigError, "test_size=True"),
    ({"task": "cluster"}, ConfigError, "task='cluster' is not known"),
    ({"by": "time", "group": "time"}, ConfigError, "not both"),
    ({"by": "tme"}, ColumnNotFound, "split-by column 'tme' not in data; did you mean 'time'?"),
    ({"group": "usr"}, ColumnNotFound, "group column 'usr' not in data"),
    ({"target": "yy"}, ColumnNotFound, "target column 'yy' not in data; did you mean 'y'?"),
])
def test_errors(kwargs, error, fragment):
    df = pd.DataFrame({"time": [1, 2, 3, 4], "y": ["a", "b", "a", "b"]})
    args = {"target": "y", "task": "classify", "seed": 0, **kwargs}
    with pytest.raises(error) as err:
        split_indices(df, **args)
    assert fragment in str(err.value)


def test_too_few_rows():
    with pytest.raises(DataError, match="cannot split 1 row into train and test"):
        split_indices(pd.DataFrame({"y": [1]}), target="y", task="regress", seed=0)
    train, test = split_indices(pd.DataFrame({"y": [1, 2]}), target="y", task="regress", seed=0)
    assert len(train) == 1 and len(test) == 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 60), st.floats(0.01, 0.99), st.integers(0, 2**31), st.sampled_from(["random", "strat", "group"]))
def test_fuzz_split_is_a_partition(n, test_size, seed, how):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"y": rng.choice(["a", "b", "c"], n), "g": rng.integers(0, 2 + n // 3, n)})
    kwargs = {"group": "g"} if how == "group" else {}
    task = "classify" if how == "strat" else "regress"
    try:
        train, test = split_indices(df, target="y", task=task, seed=seed, test_size=test_size, **kwargs)
    except DataError:
        singletons = how == "strat" and df["y"].value_counts().max() == 1
        assert singletons or (how == "group" and df["g"].nunique() < 2)
        return
    check_partition(train, test, n)
    again = split_indices(df, target="y", task=task, seed=seed, test_size=test_size, **kwargs)
    assert np.array_equal(test, again[1])
