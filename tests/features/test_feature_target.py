"""Targets: class labels ↔ codes, regression standardisation, JSON state."""

import json

import numpy as np
import pandas as pd
import pytest

from deepfit.errors import ConfigError, DataError
from deepfit.features.target import ClassTarget, RegressionTarget, make_target, target_from_state


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
