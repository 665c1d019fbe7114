import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=ROOT):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "deepfit", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_help_and_version_do_not_import_torch():
    code = (
        "import sys, contextlib, io\n"
        "from deepfit.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    help_text = run("--help").stdout
    for command in ("train", "demo", "datasets"):
        assert command in help_text
    from deepfit import __version__

    assert run("--version").stdout.strip() == f"deepfit {__version__}"


def test_train_writes_a_complete_run_directory(tmp_path):
    out = tmp_path / "run"
    proc = run("train", "digits", "--out", str(out), "--epochs", "8", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "test_accuracy=" in proc.stdout and str(out) in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.93
    for name in ("run.json", "model.safetensors", "history.csv", "report.html", "last.ckpt", "best.ckpt"):
        assert (out / name).exists(), name
    assert "<svg" in (out / "report.html").read_text()
    # --resume on a finished run changes nothing and reports the same metrics
    proc = run("train", "digits", "--out", str(out), "--resume", "--quiet")
    assert proc.returncode == 0 and f"test_accuracy={metrics['test_accuracy']:.4f}" in proc.stdout


def test_train_refuses_non_empty_out_without_resume(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    proc = run("train", "digits", "--out", str(tmp_path))
    assert proc.returncode == 1
    assert "already exists and is not empty" in proc.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_unknown_dataset_and_resume_without_run(tmp_path):
    proc = run("train", "digitz")
    assert proc.returncode == 2 and "unknown data 'digitz'" in proc.stderr and "did you mean 'digits'" in proc.stderr
    proc = run("train", "digits", "--out", str(tmp_path / "none"), "--resume")
    assert proc.returncode == 1 and "no interrupted run for" in proc.stderr
    proc = run("train", "digits", "--out", str(tmp_path / "x"), "--resume", "--epochs", "3")
    assert proc.returncode == 2 and "drop --epochs" in proc.stderr


def test_datasets_lists_bundled_names():
    assert run("datasets").stdout.split() == ["digits", "mnist1d"]


@pytest.mark.slow
def test_demo_runs(tmp_path):
    proc = run("demo", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("test accuracy") == 4 and "nats/char" in proc.stdout
    for run_dir in ("credit_data", "digits_images", "tweets", "mnist1d", "lm"):
        assert (tmp_path / run_dir / "report.html").exists(), run_dir


def test_a_bundled_dataset_run_is_a_model_predict_and_evaluate_open(tmp_path):
    import numpy as np
    import pandas as pd

    from deepfit import datasets

    out = tmp_path / "digits"
    assert run("train", "digits", "--out", str(out), "--epochs", "3", "--quiet").returncode == 0
    meta = json.loads((out / "deepfit.json").read_text())
    assert meta["kind"] == "arrays" and meta["model"]["name"] == "mlp"
    proc = run("evaluate", str(out), "digits", "--json")  # the dataset's name: its test split
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert metrics["accuracy"] == pytest.approx(json.loads((out / "metrics.json").read_text())["test_accuracy"])
    d = datasets.load("digits")
    np.savez(tmp_path / "rows.npz", x=d.x_test[:20], y=d.y_test[:20])
    proc = run("predict", str(out), str(tmp_path / "rows.npz"), "--out", str(tmp_path / "p.csv"))
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_csv(tmp_path / "p.csv")
    assert len(frame) == 20 and list(frame.columns)[:2] == ["prediction", "proba_0"]
    assert (frame["prediction"].to_numpy() == d.y_test[:20]).mean() > 0.8
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=d.x_test[:3, :10])
    proc = run("predict", str(out), str(bad))
    assert proc.returncode == 1 and "the model takes (64,)" in proc.stderr
