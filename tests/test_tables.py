"""deepfit.fit on real tables, from Python: learns, predicts on raw rows, round-trips, refuses bad input."""

import numpy as np
import pandas as pd
import pytest

import deepfit
from deepfit import datasets
from deepfit.errors import DataError


@pytest.fixture(scope="module")
def iris_model():
    df = datasets.rdataset("datasets", "iris", keep_rownames=True)  # rownames: an id column to leave out
    return df, deepfit.fit(df, target="Species", seed=0, progress=False, time_limit=60)


def test_classification_learns_and_reports(iris_model):
    df, model = iris_model
    assert model.task == "classify"
    assert model.metrics["test_accuracy"] >= 0.85  # 30 test rows; logistic regression gets 0.90 on this split
    used = {c["name"]: c["kind"] for c in model.columns}
    assert used["rownames"] == "id" and used["Sepal.Length"] == "number"
    assert set(model.classes) == {"setosa", "versicolor", "virginica"}


def test_predict_on_raw_rows(iris_model):
    df, model = iris_model
    rows = df.drop(columns=["Species"]).iloc[[0, 60, 120]]
    assert list(model.predict(rows)) == ["setosa", "versicolor", "virginica"]
    proba = model.predict_proba(rows)
    assert list(proba.columns) == model.classes and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    # a single row as a dict, extra columns ignored, a missing value tolerated
    one = {"Sepal.Length": 5.0, "Sepal.Width": 3.4, "Petal.Length": 1.5, "Petal.Width": None, "note": "x"}
    assert model.predict(one)[0] == "setosa"


def test_evaluate_reports_metrics(iris_model):
    df, model = iris_model
    metrics = model.evaluate(df)
    assert set(metrics) >= {"accuracy", "log_loss", "f1", "auroc"}
    assert metrics["accuracy"] > 0.9 and metrics["log_loss"] < 0.5


def test_save_and_load_predict_the_same(iris_model, tmp_path):
    df, model = iris_model
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["deepfit.json", "model.safetensors"]
    again = deepfit.load(tmp_path / "m")
    x = df.drop(columns=["Species"])
    assert np.array_equal(model.predict_proba(x).to_numpy(), again.predict_proba(x).to_numpy())
    assert again.metrics == pytest.approx(model.metrics)


def test_regression_learns_in_target_units():
    df = datasets.rdataset("MASS", "Boston")
    model = deepfit.fit(df, target="medv", seed=0, progress=False, time_limit=60)
    assert model.task == "regress"
    assert model.metrics["test_r2"] > 0.75 and model.metrics["test_rmse"] < 5.0
    pred = model.predict(df.head(50))
    assert pred.dtype.kind == "f" and 5 < pred.mean() < 50


def test_mixed_column_types_and_missing_values():
    rng = np.random.default_rng(0)
    n = 600
    color = rng.choice(["red", "green", "blue"], n)
    x = rng.normal(size=n)
    day = pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D")
    y = np.where((color == "red") ^ (x > 0.3), "yes", "no")
    x_missing = np.where(rng.random(n) < 0.1, np.nan, x)
    df = pd.DataFrame({"color": color, "x": x_missing, "day": day.astype(str), "const": 7, "empty": np.nan, "y": y})
    model = deepfit.fit(df, target="y", seed=1, progress=False, time_limit=60)
    kinds = {c["name"]: c["kind"] for c in model.columns}
    assert kinds == {"color": "category", "x": "number", "day": "date", "const": "constant", "empty": "empty",
                     "y": "binary"}
    assert model.metrics["test_accuracy"] > 0.85
    unseen = pd.DataFrame({"color": ["purple"], "x": [1.0], "day": ["2024-05-05"]})
    assert model.predict(unseen)[0] in ("yes", "no")  # unseen category → unknown bucket


def test_numeric_labels_keep_their_type():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    df = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": (x[:, 0] > 0).astype(int) * 3 + 1})
    model = deepfit.fit(df, target="label", seed=0, progress=False, time_limit=30)
    pred = model.predict(df.head(5))
    assert set(pred) <= {1, 4} and all(isinstance(p, (int, np.integer)) for p in pred)


def test_wrong_target_name_suggests_close_names():
    df = datasets.rdataset("datasets", "iris")
    with pytest.raises(DataError, match=r"'Specis' .*did you mean 'Species'"):
        deepfit.fit(df, target="Specis", progress=False)


def test_single_class_target_is_refused():
    df = pd.DataFrame({"x": range(100), "y": ["a"] * 100})
    with pytest.raises(DataError, match="single value"):
        deepfit.fit(df, target="y", progress=False)


def test_predict_time_errors_name_the_column(iris_model):
    df, model = iris_model
    with pytest.raises(DataError, match="Petal.Width"):
        model.predict(df.drop(columns=["Species", "Petal.Width"]))
    bad = df.drop(columns=["Species"]).head(20).astype({"Petal.Length": object})
    bad["Petal.Length"] = "long"
    with pytest.raises(DataError, match="Petal.Length"):
        model.predict(bad)
    inf = df.drop(columns=["Species"]).head(3).copy()
    inf.loc[:, "Sepal.Width"] = [np.inf, -np.inf, np.nan]  # treated as missing
    assert len(model.predict(inf)) == 3


def test_output_directory_appears_complete_or_not_at_all(tmp_path):
    df = datasets.rdataset("datasets", "iris")
    with pytest.raises(DataError):
        deepfit.fit(df, target="nope", out=str(tmp_path / "run"), progress=False)
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.incomplete").exists()
    model = deepfit.fit(df, target="Species", out=str(tmp_path / "run"), progress=False, time_limit=30)
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["deepfit.json", "history.csv", "metrics.json", "model.safetensors", "report.html", "run.json"]
    assert not (tmp_path / "run.incomplete").exists()
    report = (tmp_path / "run" / "report.html").read_text()
    for part in ("Columns", "Confusion matrix", "Worst-predicted", "<svg"):
        assert part in report
    assert deepfit.load(tmp_path / "run").metrics == pytest.approx(model.metrics)


def test_rows_without_a_target_are_left_out_and_said_so():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = np.where(x > 0, "pos", "neg").astype(object)
    y[:7] = ["", "NA", None, "?", "nan", "  ", np.nan]
    model = deepfit.fit(pd.DataFrame({"x": x, "y": y}), target="y", progress=False, time_limit=10)
    assert model.info["rows"] == 193
    assert any("7 rows without a 'y' value" in n for n in model.info["notes"])
    assert set(model.classes) == {"neg", "pos"}


def test_report_notes_escape_names_from_the_data(tmp_path):
    import numpy as np
    import pandas as pd

    from deepfit.tasks.table import TableSettings, fit_table

    rng = np.random.default_rng(0)
    x = rng.normal(size=80)
    y = np.where(x > 0, "a", "b").astype(object)
    y[5] = None  # a row without a target: its note names the target column
    df = pd.DataFrame({"x": x, "<b>y</b>": y})
    fit_table(df, TableSettings(target="<b>y</b>", max_epochs=2, k=2, width=8), out=tmp_path / "run", progress=False)
    report = (tmp_path / "run" / "report.html").read_text()
    assert "without a '&lt;b&gt;y&lt;/b&gt;' value" in report or "without a &#x27;&lt;b&gt;y&lt;/b&gt;&#x27; value" in report
    assert "<b>y</b>" not in report
