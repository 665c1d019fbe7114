"""Image tasks where users meet them: deepfit train/predict/evaluate on a folder of real digits,
deepfit.fit on a table with an image column plus numbers, artifacts, bad files, multi-label."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import deepfit
from deepfit.cli import main
from deepfit.errors import DataError
from deepfit.predict import load
from deepfit.tasks.images import ImagePredictor, ImageSettings, fit_images, recipe


def _write_digits(root, classes=(0, 1, 2, 3), per_class=50, scale=4):
    """Real scikit-learn digits as PNGs in class folders (a subset, to stay fast)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    paths, labels = [], []
    for c in classes:
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(d.target == c)[:per_class]:
            grey = np.round(d.images[i] * 255 / 16).astype(np.uint8)
            p = root / str(c) / f"{i:04d}.png"
            Image.fromarray(grey).resize((8 * scale, 8 * scale), Image.BILINEAR).save(p)
            paths.append(str(p))
            labels.append(c)
    return paths, labels


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    data = root / "data"
    paths, labels = _write_digits(data, per_class=40)
    out = root / "run"
    code = main(["train", str(data), "--out", str(out), "--epochs", "5", "--batch-size", "16", "--quiet"])
    assert code == 0
    return data, out, paths, labels


def test_cli_train_on_a_folder_learns_and_writes_a_complete_run(digits_run, capsys):
    data, out, _, _ = digits_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.9  # 4 digit classes, 40 test images, chance 0.25
    assert {"deepfit.json", "model.safetensors", "report.html", "run.json", "history.csv"} <= {p.name for p in out.iterdir()}
    page = (out / "report.html").read_text()
    for part in ("Sample training images", "Confusion matrix", "Worst-predicted test images", "data:image/png;base64"):
        assert part in page
    history = pd.read_csv(out / "history.csv")
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0] * 0.6
    assert not (out.parent / "run.incomplete").exists()


def test_cli_evaluate_and_predict_on_folders_and_csv(digits_run, capsys, tmp_path):
    data, out, paths, labels = digits_run
    assert main(["evaluate", str(out), str(data), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] >= 0.9 and set(metrics) >= {"accuracy", "log_loss", "f1", "auroc"}
    # a flat folder of images
    assert main(["predict", str(out), str(data / "2")]) == 0
    frame = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert list(frame.columns[:2]) == ["path", "prediction"] and len(frame) == 40
    assert {f"proba_{c}" for c in range(4)} <= set(frame.columns)
    assert (frame["prediction"] == 2).mean() >= 0.9
    assert np.allclose(frame[[f"proba_{c}" for c in range(4)]].sum(axis=1), 1.0, atol=1e-5)
    # a CSV with relative paths
    csv = data / "list.csv"
    pd.DataFrame({"path": [str(p).replace(str(data) + "/", "") for p in paths[:5]]}).to_csv(csv, index=False)
    assert main(["predict", str(out), str(csv), "--out", str(tmp_path / "p.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == 5


def test_loaded_artifact_predicts_exactly_like_training_and_lists(digits_run):
    data, out, paths, labels = digits_run
    predictor = load(out)
    assert isinstance(predictor, ImagePredictor) and predictor.classes == ["0", "1", "2", "3"]  # folder names
    probs = predictor.predict_proba(paths[:20])
    again = ImagePredictor.load(out).predict_proba(paths[:20])
    assert np.array_equal(probs.to_numpy(), again.to_numpy())
    assert list(predictor.predict(paths[:3])) == ["0", "0", "0"]


def test_bad_image_at_predict_time_is_an_error_naming_it(digits_run, tmp_path):
    _, out, paths, _ = digits_run
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="broken.png"):
        load(out).predict([paths[0], str(bad)])


def test_train_skips_unreadable_files_and_reports_them(tmp_path):
    data = tmp_path / "data"
    _write_digits(data, classes=(0, 1), per_class=20, scale=2)
    (data / "0" / "zero.png").write_bytes(b"")
    (data / "1" / "junk.jpg").write_bytes(b"\xff\xd8garbage")
    predictor = deepfit.fit(data, target="label", time_limit=4, out=str(tmp_path / "run"), progress=False)
    assert isinstance(predictor, ImagePredictor)  # deepfit.fit on a folder trains an image model
    reasons = {s["path"].rsplit("/", 1)[-1] for s in predictor.info["skipped"]}
    assert {"zero.png", "junk.jpg"} <= reasons
    assert "junk.jpg" in (tmp_path / "run" / "report.html").read_text()


def test_fit_on_a_dataframe_with_an_image_column_and_numbers_uses_both(tmp_path):
    # The label is decided by a number column; the images are noise: only the joint model can learn.
    rng = np.random.default_rng(0)
    rows = []
    for i in range(160):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(p)
        x = rng.normal()
        rows.append({"photo": str(p), "x": x, "noise": rng.normal(), "y": "hi" if x > 0 else "lo"})
    df = pd.DataFrame(rows)
    predictor = deepfit.fit(df, target="y", seed=0, time_limit=12, progress=False)  # the budget plans the epochs
    assert isinstance(predictor, ImagePredictor) and predictor.preprocessor is not None
    assert predictor.metrics["test_accuracy"] >= 0.85
    pred = predictor.predict(df.drop(columns=["y"]).head(8))
    assert list(pred) == list(df["y"].head(8))


def test_multilabel_targets_from_a_table(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for i in range(120):
        red, blue = bool(rng.integers(2)), bool(rng.integers(2))
        a = np.zeros((16, 16, 3), np.uint8)
        a[..., 0] = 220 if red else 20
        a[..., 2] = 220 if blue else 20
        Image.fromarray(a).save(tmp_path / f"{i}.png")
        rows.append({"file": f"{i}.png", "tags": "|".join(t for t, on in (("red", red), ("blue", blue)) if on) or "none"})
    csv = tmp_path / "tags.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    # through the CLI's image entry point (a table with an image-path column)
    from deepfit.cli import main

    args = ["train", str(csv), "--target", "tags", "--epochs", "6", "--batch-size", "16",
            "--out", str(tmp_path / "run"), "--quiet"]
    assert main(args) == 0
    predictor = load(tmp_path / "run")
    assert predictor.task == "multilabel" and predictor.classes == ["blue", "none", "red"]
    assert predictor.metrics["test_accuracy"] >= 0.9
    assert predictor.predict([str(tmp_path / "0.png")])[0] == rows[0]["tags"]


def test_recipe_by_image_size():
    s = ImageSettings()
    assert recipe(8 * 4, 1293, s)["backbone"] == "small_cnn" and recipe(32, 1293, s)["size"] == 32
    assert recipe(64, 5000, s)["size"] == 64 and recipe(500, 5000, s)["size"] == 128
    assert recipe(500, 100, s)["epochs"] == 60 and recipe(500, 100_000, s)["epochs"] == 20
    assert recipe(32, 100, ImageSettings(epochs=3, model="resnet18"))["epochs"] == 3


def test_resnet_recipe_and_fine_tuning_from_local_safetensors(tmp_path):
    # 72 px photos-like images pick the ResNet recipe; its backbone then seeds a fine-tuning run.
    from safetensors.torch import save_file

    rng = np.random.default_rng(2)
    for label, channel in (("red", 0), ("green", 1)):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(12):
            a = rng.integers(0, 90, (72, 72, 3), dtype=np.uint8)
            a[..., channel] += 150
            Image.fromarray(a).save(tmp_path / "data" / label / f"{i}.jpg")
    first = fit_images(tmp_path / "data", ImageSettings(epochs=1, batch_size=8, test_size=0.25, pretrained="none"),
                       progress=False)
    assert first.info["plan"]["backbone"] == "resnet" and first.info["plan"]["size"] == 64
    save_file({k: v.contiguous() for k, v in first.model.backbone.state_dict().items()}, tmp_path / "backbone.safetensors")
    tuned = fit_images(tmp_path / "data", ImageSettings(epochs=2, batch_size=8, test_size=0.25,
                                                        pretrained=str(tmp_path / "backbone.safetensors")),
                       progress=False)
    assert any("initialised from" in n for n in tuned.info["notes"])
    stem = "backbone.stem.0.0.weight"
    assert tuned.model.state_dict()[stem].shape == first.model.state_dict()[stem].shape
    assert all(p.requires_grad for p in tuned.model.parameters())  # unfrozen after the first epoch


def test_sets_larger_than_the_memory_budget_stream_from_files(tmp_path):
    data = tmp_path / "data"
    _write_digits(data, classes=(0, 1), per_class=30, scale=4)
    predictor = fit_images(data, ImageSettings(epochs=4, batch_size=16, num_workers=0, max_memory_gb=1e-6),
                           out=tmp_path / "run", progress=False)
    assert predictor.info["streamed"] and predictor.metrics["test_accuracy"] >= 0.8  # 0 vs 1, 12 test images
    page = (tmp_path / "run" / "report.html").read_text()
    assert page.count("data:image/png;base64") >= 24  # pictures decoded from the files


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
    import os
    import subprocess
    import sys

    from cli_support import kill_at_first_checkpoint
    from safetensors.torch import load_file

    data = tmp_path / "data"
    _write_digits(data, classes=(0, 1, 2), per_class=30, scale=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--epochs", "4", "--batch-size", "16", "--checkpoint-every", "3", "--quiet"]

    def cli(*extra, wait=True):
        cmd = [sys.executable, "-m", "deepfit", "train", str(data), *extra]
        if wait:
            return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    full = cli("--out", str(tmp_path / "full"), *args, wait=False)
    run, work = tmp_path / "run", tmp_path / "run.incomplete"
    proc = cli("--out", str(run), *args, wait=False)
    kill_at_first_checkpoint(proc, work)
    assert not run.exists()
    resumed = cli("--out", str(run), "--resume", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert full.wait(timeout=300) == 0
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(run / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)


def test_multilabel_target_round_trips():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from deepfit.tasks.images import MultiLabelTarget

    names = st.text(alphabet="abcxyz _-", min_size=1, max_size=6).map(str.strip).filter(bool)
    rows = st.lists(st.sets(names, min_size=1, max_size=4), min_size=1, max_size=20)

    @settings(max_examples=60, deadline=None)
    @given(rows)
    def check(label_sets):
        values = pd.Series(["|".join(sorted(s)) for s in label_sets])
        target = MultiLabelTarget("tags", sorted({x for s in label_sets for x in s} | {"zz1", "zz2"}))
        onehot = target.encode(values)
        assert onehot.sum() == sum(len(s) for s in label_sets)
        assert list(target.decode_multi(onehot)) == list(values)

    check()


@pytest.mark.parametrize("mix", [{"mixup": 0.4}, {"cutmix": 1.0}])
def test_mixup_and_cutmix_train_end_to_end(tmp_path, mix):
    data = tmp_path / "data"
    _write_digits(data, classes=(0, 1), per_class=30, scale=2)
    predictor = fit_images(data, ImageSettings(epochs=6, batch_size=16, **mix), progress=False)
    assert predictor.metrics["test_accuracy"] >= 0.8  # 0 against 1, 12 test images


def test_an_image_run_json_from_before_versions_migrates_and_resumes_with_its_settings(tmp_path):
    # The interrupted run in tests/compat was written by cd228c3: run.json without a version,
    # settings with `workers` (now `num_workers`). tests/compat resumes it to the recorded weights.
    import shutil
    from pathlib import Path

    from deepfit.errors import ConfigError
    from deepfit.tasks.runner import read_run_json

    fixture = Path(__file__).parent / "compat" / "fixtures" / "image"
    stored = json.loads((fixture / "interrupted.incomplete" / "run.json").read_text())
    assert "version" not in stored and "workers" in stored["settings"]
    run = read_run_json(stored, "image", where="fixture")
    settings = ImageSettings.from_json(run["settings"])
    assert settings.num_workers == 0 and settings.epochs == 10 and settings.checkpoint_every == 6
    assert run["plan"] == stored["plan"] and run["data_sha256"] == stored["data_sha256"]
    with pytest.raises(ConfigError, match="unknown key.*'colour'"):
        ImageSettings.from_json({**stored["settings"], "colour": "red"})
    # --resume with a setting that differs from the stored one is refused, naming it; nothing is trained.
    folder = Path(shutil.copytree(fixture, tmp_path / "image"))
    with pytest.raises(ConfigError, match=r"epochs=3 \(the run has 10\)"):
        fit_images(str(folder / "images"), ImageSettings(epochs=3), out=str(folder / "interrupted"), resume=True,
                   progress=False)
    assert (folder / "interrupted.incomplete" / "last.ckpt").exists() and not (folder / "interrupted").exists()
