"""Robust table predictions: inputs beyond the training range saturate and are reported, regression
outputs stay within the training range (+/- 5 %), the artifact migration keeps old models exact,
and ratings-like targets are regressed with a note saying why."""

import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import deepfit
from deepfit.artifact import FORMAT_VERSION, MIGRATIONS, _v2_to_v3_regression_bounds
from deepfit.errors import DataError, DeepfitWarning
from deepfit.features.number import NumberFeature
from deepfit.features.preprocessor import TablePreprocessor
from deepfit.tasks.table.labels import task_note

ROOT = Path(__file__).resolve().parents[1]
FAST = {"max_epochs": 5, "k": 2, "width": 32, "depth": 1, "progress": False, "seed": 0}


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "deepfit", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.uniform(0.0, 10.0, n), rng.normal(0.0, 1.0, n)
    c = rng.choice(["a", "b", "c"], n)
    y = 2.0 * x1 + x2 + 3.0 * (c == "a") + rng.normal(0.0, 0.3, n)
    return pd.DataFrame({"x1": x1, "x2": x2, "c": c, "y": y})


def far_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Two rows 10 training ranges beyond every number column: one above the maximum, one below the minimum."""
    rows = {}
    for col in ("x1", "x2"):
        lo, hi = df[col].min(), df[col].max()
        rows[col] = [hi + 10 * (hi - lo), lo - 10 * (hi - lo)]
    return pd.DataFrame({**rows, "c": ["a", "b"]})


def held_out(df: pd.DataFrame) -> pd.DataFrame:
    """The labelled test rows: 60 like the training rows, then the two far rows."""
    return pd.concat([table(60, 1), far_rows(df).assign(y=[0.0, 0.0])], ignore_index=True)


def inside(model, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each number column clipped to the range the model's preprocessing was fitted on
    (the fit rows: the test and validation rows are split off before)."""
    out = frame.copy()
    for name, feature in model.preprocessor.features.items():
        if isinstance(feature, NumberFeature):
            out[name] = out[name].clip(feature.min, feature.max)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    df = table(400, 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeepfitWarning)
        model = deepfit.fit(df, target="y", test=held_out(df), out=str(root / "run"), **FAST)
    assert not [w for w in caught if issubclass(w.category, DeepfitWarning)]  # training and its report: no warning
    model.save(root / "saved")
    return df, model, root


# ----------------------------------------------------------------------------- out-of-range inputs


def test_number_feature_stores_its_training_range_and_counts_values_outside():
    f = NumberFeature("x").fit(pd.Series([2.0, 5.0, np.nan, 9.0]))
    assert (f.min, f.max) == (2.0, 9.0)
    assert f.out_of_range(pd.Series([1.9, 2.0, 9.0, 9.1, np.nan, np.inf])).tolist() == \
        [True, False, False, True, False, False]  # missing and +/-inf are missing values, not out of range
    enc = f.encode(pd.Series([9.0, 1e9, 2.0, -1e9]))["num"][:, 0]
    assert enc[0] == enc[1] and enc[2] == enc[3]  # beyond the range: encoded as the nearest extreme
    state = json.loads(json.dumps(f.state_dict()))
    assert (state["min"], state["max"]) == (2.0, 9.0)
    g = NumberFeature.from_state("x", state)
    assert (g.min, g.max) == (2.0, 9.0)
    del state["min"], state["max"]  # a state saved before min/max: the ends of its quantiles
    old = NumberFeature.from_state("x", state)
    assert (old.min, old.max) == (2.0, 9.0)
    empty = NumberFeature("e").fit(pd.Series([np.nan, np.nan]))
    assert empty.min is None and not NumberFeature.from_state("e", empty.state_dict()).out_of_range(
        pd.Series([1.0])).any()
    for bad in ({"min": 3.0, "max": 1.0}, {"min": 1.0, "max": None}, {"min": "1", "max": 2.0}, {"min": 1.0}):
        with pytest.raises(DataError, match="min|lacks max"):
            NumberFeature.from_state("x", {**state, **bad})


def test_preprocessor_counts_out_of_range_rows_per_number_column():
    df = pd.DataFrame({"a": [0.0, 1.0, 2.0], "b": [10.0, 20.0, 30.0], "c": ["x", "y", "x"]})
    pre = TablePreprocessor({"a": "number", "b": "number", "c": "category"}).fit(df)
    rows = pd.DataFrame({"a": [-1.0, 1.0, 5.0, np.nan], "b": [10.0, 31.0, 40.0, 20.0], "c": ["z", "x", "y", "x"]})
    assert pre.out_of_range(rows) == {"a": 2, "b": 2}
    assert pre.out_of_range_rows(rows).tolist() == [True, True, True, False]
    assert pre.out_of_range(df) == {}
    again = TablePreprocessor.from_state(json.loads(json.dumps(pre.state_dict())))
    assert again.out_of_range(rows) == {"a": 2, "b": 2}


def test_far_rows_predict_within_the_bounds_with_a_warning_naming_the_columns(trained):
    df, model, root = trained
    loaded = deepfit.load(root / "saved")
    y = df["y"]
    span = y.max() - y.min()
    with pytest.warns(DeepfitWarning) as record:
        pred = loaded.predict(far_rows(df))
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith("2 of 2 rows hold numbers outside the training range, in 'x1' (2 rows), "
                              "'x2' (2 rows); the model treated each such value as the nearest training extreme")
    assert "nearest training extreme" in message and "predictions stay within" in message
    assert np.all(pred >= y.min() - 0.05 * span) and np.all(pred <= y.max() + 0.05 * span)
    assert np.all((pred >= loaded.target.low) & (pred <= loaded.target.high))
    # beyond the range is the training extreme: the far rows predict as the rows at the extremes
    extremes = inside(loaded, far_rows(df))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeepfitWarning)  # in range: no warning
        assert np.array_equal(loaded.predict(extremes), pred)
        loaded.predict(inside(loaded, df.drop(columns=["y"])))


def test_predict_frame_warns_once(trained):
    df, model, _ = trained
    with pytest.warns(DeepfitWarning) as record:
        frame = model.predict_frame(far_rows(df).head(1), source="new.csv")
    assert len(record) == 1 and "1 of 1 rows of new.csv" in str(record[0].message)
    assert list(frame.columns) == ["prediction"]


def test_regression_outputs_are_clipped_to_the_training_range(trained):
    df, model, _ = trained
    t = model.target
    assert t.transform == "standard" and t.low < t.high
    assert t.decode([1e3, -1e3]).tolist() == [t.high, t.low]


def test_cli_predict_prints_one_note_on_stderr(trained, tmp_path):
    df, _, root = trained
    far_rows(df).to_csv(tmp_path / "far.csv", index=False)
    proc = cli("predict", str(root / "saved"), str(tmp_path / "far.csv"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"deepfit predict: note: 2 of 2 rows of {tmp_path / 'far.csv'} hold numbers outside the training range")
    assert "in 'x1' (2 rows), 'x2' (2 rows)" in lines[0]
    pred = pd.read_csv(io.StringIO(proc.stdout))["prediction"].to_numpy()
    span = np.ptp(df["y"])
    assert np.all((pred >= df["y"].min() - 0.05 * span) & (pred <= df["y"].max() + 0.05 * span))
    inside(deepfit.load(root / "saved"), df.drop(columns=["y"]).head(5)).to_csv(tmp_path / "near.csv", index=False)
    near = cli("predict", str(root / "saved"), str(tmp_path / "near.csv"))
    assert near.returncode == 0 and near.stderr == ""


def test_report_says_how_many_test_rows_were_out_of_range(trained):
    df, model, root = trained
    x = held_out(df).drop(columns=["y"])
    n = int(model.preprocessor.out_of_range_rows(model.preprocessor.check_input(x, source="test")).sum())
    assert n >= 2  # the two far rows, and any beyond the fit rows' range
    html = (root / "run" / "report.html").read_text(encoding="utf-8")
    assert f"{n} of 62 rows of the test set hold numbers outside the training range" in html


# ----------------------------------------------------------------------------- the artifact migration


def test_v2_to_v3_adds_unbounded_standard_transform_to_regression_targets_only():
    assert MIGRATIONS[2] is _v2_to_v3_regression_bounds and FORMAT_VERSION == 3
    meta = _v2_to_v3_regression_bounds({"target": {"task": "regress", "name": "y", "mean": 0.0, "std": 1.0}})
    assert meta["target"] == {"task": "regress", "name": "y", "mean": 0.0, "std": 1.0, "transform": "standard",
                              "low": None, "high": None}
    kept = _v2_to_v3_regression_bounds({"target": {"task": "regress", "transform": "log1p", "low": 0.0, "high": 2.0}})
    assert kept["target"] == {"task": "regress", "transform": "log1p", "low": 0.0, "high": 2.0}
    classes = {"target": {"task": "classify", "name": "y", "labels": ["a", "b"], "dtype": "str"}}
    assert _v2_to_v3_regression_bounds(json.loads(json.dumps(classes))) == classes


def test_a_v2_artifact_predicts_exactly_as_before(trained, tmp_path):
    df, model, root = trained
    old_dir = tmp_path / "v2"
    old_dir.mkdir()
    meta = json.loads((root / "saved" / "deepfit.json").read_text())
    meta["format_version"] = 2
    for key in ("transform", "low", "high"):
        del meta["target"][key]
    (old_dir / "deepfit.json").write_text(json.dumps(meta))
    (old_dir / "model.safetensors").write_bytes((root / "saved" / "model.safetensors").read_bytes())
    old = deepfit.load(old_dir)
    assert (old.target.transform, old.target.low, old.target.high) == ("standard", None, None)
    rows = pd.concat([df.drop(columns=["y"]).head(30), far_rows(df)], ignore_index=True)
    _, inputs = model._encode(rows, "rows")
    raw = model._predict_tensor(inputs).numpy().astype(np.float64) * model.target.std + model.target.mean
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeepfitWarning)
        assert np.array_equal(old.predict(rows), raw)  # no bounds: the unclipped values, as format 2 gave
        assert np.array_equal(model.predict(rows), np.clip(raw, model.target.low, model.target.high))


# ----------------------------------------------------------------------------- ratings-like targets


def ratings(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    quality = rng.normal(size=n)
    rating = np.clip(np.round(3 + 1.2 * quality + rng.normal(0, 0.5, n)), 1, 5).astype(int)
    return pd.DataFrame({"quality": quality, "price": rng.uniform(1, 50, n), "rating": rating})


def test_a_1_to_5_rating_is_regressed_with_a_note_saying_why():
    df = ratings()
    assert sorted(df["rating"].unique()) == [1, 2, 3, 4, 5]
    model = deepfit.fit(df, target="rating", **FAST)
    assert model.task == "regress"
    assert task_note(model.info["notes"]) == (
        "task: regression, because 'rating' holds the integers 1..5, a ratings-like scale; pass task='classify' "
        "(CLI --task classify) to predict it as classes")
    pred = model.predict(df.drop(columns=["rating"]).head(10))
    assert pred.dtype == np.float64 and np.all((pred >= 0.8) & (pred <= 5.2))  # 1..5 widened by 5 % of 4
    classes = deepfit.fit(df, target="rating", task="classify", **FAST)
    assert classes.task == "classify" and classes.classes == [1, 2, 3, 4, 5]
    assert task_note(classes.info["notes"]) is None  # the task was given: nothing to explain


def test_class_codes_from_0_are_classified_with_a_note_naming_task_regress():
    df = ratings()
    df["rating"] = df["rating"] - 1  # 0..4: codes, not a scale
    model = deepfit.fit(df, target="rating", **FAST)
    assert model.task == "classify"
    assert task_note(model.info["notes"]) == (
        "task: classification, because 'rating' holds only 5 distinct integers (0..4); pass task='regress' "
        "(CLI --task regress) to predict it as a number")


def test_cli_train_says_the_task_and_why(tmp_path):
    ratings().to_csv(tmp_path / "ratings.csv", index=False)
    proc = cli("train", str(tmp_path / "ratings.csv"), "--target", "rating", "--out", str(tmp_path / "run"),
               "--epochs", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    at = lines.index("task: regression, because 'rating' holds the integers 1..5, a ratings-like scale; "
                     "pass task='classify' (CLI --task classify) to predict it as classes")
    assert lines[at + 1].startswith("test_rmse=")
    assert json.loads((tmp_path / "run" / "deepfit.json").read_text())["task"] == "regress"
    assert "a ratings-like scale" in (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
