"""deepfit.sklearn: scikit-learn's own estimator checks, then real data through scikit-learn's tools."""

import dataclasses
import io
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_diabetes, load_iris  # noqa: E402
from sklearn.dummy import DummyRegressor  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from deepfit.sklearn import DeepfitClassifier, DeepfitRegressor  # noqa: E402

# Small enough for the dozens of fits the checks make (~30 ms each on their tiny data), large
# enough for their accuracy bars (> 0.83 accuracy on blobs, R² > 0.5).
SMALL = dict(max_epochs=20, k=2, width=32, depth=1)


@parametrize_with_checks([DeepfitClassifier(**SMALL), DeepfitRegressor(**SMALL)])
def test_sklearn_estimator_checks(estimator, check, monkeypatch):
    # scikit-learn skips its array-API check (array_api_dispatch=True on NumPy inputs) unless
    # SciPy's array-API mode is announced; with NumPy arrays the mode changes nothing, so set it.
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    check(estimator)


def test_import_deepfit_does_not_import_sklearn():
    code = "import sys, deepfit; assert 'sklearn' not in sys.modules and 'deepfit.sklearn' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_defaults_are_deepfits():
    from deepfit.tasks.table import TableSettings

    defaults = {f.name: f.default for f in dataclasses.fields(TableSettings)}
    for est in (DeepfitClassifier(), DeepfitRegressor()):
        params = est.get_params()
        assert params.pop("random_state") == defaults["seed"]
        params.pop("verbose"), params.pop("types")
        assert params == {name: defaults[name] for name in params}


def test_cross_val_score_in_a_pipeline_on_iris():
    # (docs/tables.md's example, run below, cross-validates on breast_cancer as a DataFrame)
    X, y = load_iris(return_X_y=True)
    scores = cross_val_score(make_pipeline(StandardScaler(), DeepfitClassifier(**SMALL)), X, y, cv=5)
    assert scores.mean() > 0.9 and scores.min() > 0.8  # logistic regression: ~0.97


def test_grid_search_and_clone_on_iris():
    X, y = load_iris(return_X_y=True)
    clf = DeepfitClassifier(**SMALL)
    search = GridSearchCV(clf, {"width": [8, 32]}, cv=3).fit(X, y)
    assert search.best_params_["width"] in (8, 32) and search.best_score_ > 0.9
    assert (search.predict(X) == y).mean() > 0.9
    twin = clone(search.best_estimator_)
    assert twin.get_params() == search.best_estimator_.get_params() and not hasattr(twin, "predictor_")


def test_regressor_on_diabetes_beats_the_mean():
    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    reg = DeepfitRegressor(**SMALL).fit(X_train, y_train)
    assert reg.score(X_test, y_test) > 0.3  # ridge regression: ~0.36 on this split
    assert reg.score(X_test, y_test) > DummyRegressor().fit(X_train, y_train).score(X_test, y_test) + 0.3
    assert reg.predict(X_test).dtype == np.float64


def _colours(n=300, seed=0):
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "green", "blue"], size=n)
    size = pd.Categorical(rng.choice([1, 2, 3], size=n))  # a pandas categorical of numbers: a category
    x = rng.normal(size=n)
    y = np.where(colour == "red", "stop", np.where(np.asarray(size) == 3, "go", "wait"))
    return pd.DataFrame({"colour": colour, "size": size, "x": x}), y


def test_dataframe_with_categorical_columns():
    X, y = _colours()
    clf = DeepfitClassifier(**SMALL).fit(X.iloc[:200], y[:200])
    assert list(clf.feature_names_in_) == ["colour", "size", "x"] and clf.n_features_in_ == 3
    assert list(X.columns) == ["colour", "size", "x"]  # the caller's frame is not touched (no target added)
    kinds = {c["name"]: c["kind"] for c in clf.predictor_.columns}
    assert kinds["colour"] == "category" and kinds["size"] == "category" and kinds["x"] == "number"
    assert list(clf.classes_) == ["go", "stop", "wait"]
    assert (clf.predict(X.iloc[200:]) == y[200:]).mean() > 0.95
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(X[["x", "colour", "size"]])


def test_types_override_and_integer_labels_classify():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 4, size=(200, 2)).astype(float)
    y = (X[:, 0] * 5).astype(int)  # integers with a numeric look: still classes
    clf = DeepfitClassifier(**SMALL, types={"x0": "category"}).fit(X, y)
    assert {c["name"]: c["kind"] for c in clf.predictor_.columns}["x0"] == "category"
    assert list(clf.classes_) == [0, 5, 10, 15] and clf.predictor_.task == "classify"
    assert clf.score(X, y) > 0.95


def test_missing_values_and_infinity():
    X, y = load_iris(return_X_y=True)
    X = X.copy()
    X[::7, 2] = np.nan  # a missing value, as deepfit reads it
    clf = DeepfitClassifier(**SMALL).fit(X, y)
    assert clf.score(X, y) > 0.9
    X[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        clf.predict(X)
    with pytest.raises(ValueError, match="infinity"):
        clf.predict(pd.DataFrame(X))


def test_pickle_holds_the_artifact_files_not_torch_objects():
    X, y = load_iris(return_X_y=True)
    clf = DeepfitClassifier(**SMALL).fit(X, y)
    blob = pickle.dumps(clf)
    modules = []

    class Recording(pickle.Unpickler):
        def find_class(self, module, name):
            modules.append(module)
            return super().find_class(module, name)

    again = Recording(io.BytesIO(blob)).load()
    assert modules and not any(m.split(".")[0] == "torch" for m in modules), modules
    assert np.array_equal(again.predict_proba(X), clf.predict_proba(X))
    assert hasattr(clf, "predictor_")  # pickling leaves the estimator as it was


def test_bad_settings_raise_in_fit():
    X, y = load_iris(return_X_y=True)
    clf = DeepfitClassifier(k=0)  # __init__ stores it
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        clf.fit(X, y)
    with pytest.raises(ValueError, match="valid_size"):
        DeepfitRegressor(valid_size=1.5).fit(X, y)


def test_deepfit_errors_name_y_not_the_internal_column():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="target 'y' has a single value") as info:
        DeepfitRegressor(**SMALL).fit(rng.normal(size=(20, 2)), np.ones(20))
    assert "__deepfit" not in str(info.value)
    with pytest.raises(KeyError, match="Columns: x0, x1$"):  # ColumnNotFound: a ValueError and a KeyError
        DeepfitRegressor(**SMALL, types={"nope": "category"}).fit(rng.normal(size=(20, 2)), np.arange(20.0))


def test_docs_example_runs(tmp_path, monkeypatch):
    text = (Path(__file__).parents[1] / "docs" / "tables.md").read_text(encoding="utf-8")
    section = text[text.index("## scikit-learn"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/tables.md", "exec"), {})
    assert (tmp_path / "models" / "cancer" / "deepfit.json").exists()
