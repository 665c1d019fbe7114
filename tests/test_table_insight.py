"""What a table model tells about itself: permutation feature importance, the report's curves
(ROC, precision-recall, calibration; predicted-against-true, residuals), every bagged model's
learning curves and the bag's progress lines."""

import re

import numpy as np
import pandas as pd
import pytest

import deepfit
from deepfit.errors import ColumnNotFound, DataError
from deepfit.tasks.table import TableSettings, fit_table

SMALL = {"k": 4, "width": 32, "depth": 1, "seed": 0}


def _synthetic(n: int = 600, *, classify: bool, seed: int = 0) -> pd.DataFrame:
    """y depends on x1 only; x2 and the category c are noise."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = np.where(x1 > 0, "pos", "neg") if classify else 3 * x1 + 0.1 * rng.normal(size=n)
    return pd.DataFrame({"x1": x1, "x2": x2, "c": rng.choice(list("abc"), n), "y": y})


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    df = _synthetic(classify=False)
    out = tmp_path_factory.mktemp("regress") / "run"
    return df, fit_table(df, TableSettings(target="y", max_epochs=40, **SMALL), out=out, progress=False), out


@pytest.fixture(scope="module")
def classification(tmp_path_factory):
    df = _synthetic(classify=True)
    out = tmp_path_factory.mktemp("classify") / "run"
    return df, fit_table(df, TableSettings(target="y", max_epochs=30, **SMALL), out=out, progress=False), out


@pytest.mark.parametrize("fitted", ["regression", "classification"])
def test_importance_finds_the_column_the_target_depends_on(fitted, request):
    df, model, _ = request.getfixturevalue(fitted)
    table = model.feature_importance(df.tail(300), repeats=4, seed=1)
    assert list(table.columns) == ["column", "importance_mean", "importance_std"]
    assert sorted(table["column"]) == ["c", "x1", "x2"] and table["column"][0] == "x1"
    assert table["importance_mean"].is_monotonic_decreasing
    imp = table.set_index("column")["importance_mean"]
    assert imp["x1"] > 0.3 and abs(imp["x2"]) < 0.1 * imp["x1"] and abs(imp["c"]) < 0.1 * imp["x1"]
    assert (table["importance_std"] >= 0).all()
    assert table.attrs["metric"] == ("rmse" if fitted == "regression" else "log_loss")
    # seeded: the same seed gives the same table, another seed other shuffles
    again = model.feature_importance(df.tail(300), repeats=4, seed=1)
    pd.testing.assert_frame_equal(table, again)
    other = model.feature_importance(df.tail(300), repeats=4, seed=2)
    assert not np.allclose(other.set_index("column")["importance_mean"].loc[imp.index], imp)


def test_importance_matches_a_plain_loop_of_shuffles(regression):
    """The batched shuffles give what shuffling one column at a time and calling evaluate gives."""
    df, model, _ = regression
    rows = df.head(150).reset_index(drop=True)
    table = model.feature_importance(rows, repeats=3, seed=5).set_index("column")
    base = model.evaluate(rows)["rmse"]
    rng = np.random.default_rng(5)
    for column in model.preprocessor.columns:  # the method's order: the model's columns, 3 shuffles each
        drops = []
        for _ in range(3):
            shuffled = rows.copy()
            shuffled[column] = rows[column].to_numpy()[rng.permutation(len(rows))]
            drops.append(model.evaluate(shuffled)["rmse"] - base)
        assert table.loc[column, "importance_mean"] == pytest.approx(np.mean(drops), abs=1e-4)
        assert table.loc[column, "importance_std"] == pytest.approx(np.std(drops), abs=1e-4)


def test_importance_refuses_rows_it_cannot_score(regression):
    df, model, _ = regression
    with pytest.raises(ColumnNotFound, match="target column 'y'"):
        model.feature_importance(df.drop(columns=["y"]))
    with pytest.raises(DataError, match="no rows to compute feature importance on"):
        model.feature_importance(df.head(0))
    with pytest.raises(DataError, match="target column 'y' in rows has no values to compute feature importance on"):
        model.feature_importance(df.head(5).assign(y=np.nan))
    with pytest.raises(ValueError, match="repeats must be an integer >= 1"):
        model.feature_importance(df, repeats=0)


def _svg_titles(page: str) -> list[str]:
    return re.findall(r'<text [^>]*font-weight="bold">([^<]*)</text>', page)


def test_classification_report_has_importance_roc_pr_and_calibration(classification):
    _, _, out = classification
    page = (out / "report.html").read_text(encoding="utf-8")
    for part in ("Feature importance (permutation, validation rows)", "ROC, precision-recall and calibration (test rows)",
                 "Confusion matrix (test rows)", "Worst-predicted test rows"):
        assert f"<h2>{part}</h2>" in page, part
    titles = _svg_titles(page)
    assert "rise in log-loss when the column is shuffled" in titles
    assert {"ROC curve", "Precision-recall curve", "Calibration (reliability)"} <= set(titles)
    assert "the curves of the positive class &#x27;pos&#x27; (against &#x27;neg&#x27;)" in page
    assert re.search(r"AUC (0\.9\d\d|1\.000)", page) and "ECE " in page
    importance = page[page.index("Feature importance (permutation"):page.index("ROC, precision-recall")]
    assert importance.index(">x1<") < importance.index(">x2<")  # the bars, largest first


def test_regression_report_has_importance_and_both_scatter_plots(regression):
    _, _, out = regression
    page = (out / "report.html").read_text(encoding="utf-8")
    for part in ("Feature importance (permutation, validation rows)", "Predicted against true (test rows)",
                 "Residuals against predicted (test rows)"):
        assert f"<h2>{part}</h2>" in page, part
    titles = _svg_titles(page)
    assert "rise in RMSE of y when the column is shuffled" in titles
    assert "y: predicted vs true" in titles and "y: true − predicted" in titles
    assert "ROC curve" not in page


def test_multiclass_curves_are_one_vs_rest_per_class():
    from deepfit.tasks.table.insight import classification_curves

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, 300)
    probs = np.full((300, 3), 0.2)
    probs[np.arange(300), codes] = 0.6
    title, body = classification_curves(probs, codes, ["a", "b", "c"], which="test")
    assert title == "ROC, precision-recall and calibration (test rows)"
    assert body.count("(AUC 1.000)") == 3 and "one curve per class, that class against the rest" in body
    assert "top-class probability, 10 bins (ECE 0.400)" in body  # always 0.6 sure, always right
    many = np.full((300, 12), 0.5 / 11)
    many[np.arange(300), codes] = 0.5
    assert "micro-average over the 12 classes" in classification_curves(many, codes, [str(i) for i in range(12)],
                                                                         which="test")[1]


def test_a_bag_reports_every_models_curves_and_names_the_model_in_progress(tmp_path, capsys):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 3))
    df = pd.DataFrame(x, columns=["a", "b", "c"]).assign(y=np.where(x[:, 0] + x[:, 1] ** 2 > 1, "yes", "no"))
    settings = TableSettings(target="y", time_limit=30, patience=2, max_bags=2, k=2, width=16, depth=1, seed=0)
    model = fit_table(df, settings, out=tmp_path / "run", progress=True)
    assert model.info["bags"] == 2  # early stopping left plenty of the budget
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("epoch 1  step ") for line in lines)  # the first model: whether more follow is open
    assert any(line.startswith("model 2  epoch 1  step ") for line in lines), lines[-3:]
    page = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    titles = _svg_titles(page)
    assert "valid_loss, every model" in titles and "valid_accuracy, every model" in titles
    chart = page[page.index("valid_loss, every model"):]
    chart = chart[:chart.index("</svg>")]
    assert chart.count("<polyline") == 2 and ">model 1<" in chart and ">model 2<" in chart
    assert "<h2>History (model 1)</h2>" in page


def test_bag_labels_count_models_when_the_bag_size_is_fixed():
    from deepfit.tasks.table.ensemble import BagRule

    fixed = BagRule(TableSettings(target="y", text_bags=3), cross_fit=True, first_limit=None, first_seconds=0.0)
    assert BagRule.first_label(fixed.settings, True) == "model 1/3" and fixed.label(1) == "model 2/3"
    timed = TableSettings(target="y", time_limit=60)
    assert BagRule.first_label(timed, True) == "" == BagRule.first_label(TableSettings(target="y"), False)
    assert BagRule(timed, cross_fit=False, first_limit=object(), first_seconds=1.0).label(2) == "model 3"


def test_importance_on_a_real_table_ranks_petals_first():
    """iris: the petal measurements separate the species; the sepals add little once they are known."""
    from deepfit import datasets

    df = datasets.rdataset("datasets", "iris")
    model = deepfit.fit(df, target="Species", max_epochs=40, progress=False, **SMALL)
    table = model.feature_importance(df, repeats=3)
    assert table["column"][0].startswith("Petal"), table


def test_docs_example_runs(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "tables.md").read_text(encoding="utf-8")
    section = text[text.index("## Importance and plots"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/tables.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    assert printed.index("x1") < printed.index("x2")
    assert "Feature importance (permutation, validation rows)" in (tmp_path / "runs" / "xy" / "report.html").read_text()
