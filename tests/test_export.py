"""deepfit export: ONNX graphs match the predictors (onnxruntime vs deepfit on raw values), for every kind.

Every run here is tiny (a few epochs, fixed seeds). Parity is checked twice: by export_onnx's own
verification (its report), and here, independently, the way a consumer meets the file: raw
values mapped to inputs with nothing but export.json, run by onnxruntime, compared with what
``predict_proba`` / ``predict`` answer on the same rows.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import onnxruntime as ort  # noqa: E402

import deepfit  # noqa: E402
from deepfit.cli import main  # noqa: E402
from deepfit.errors import ConfigError, DeepfitError, ExportError  # noqa: E402
from deepfit.export import export_onnx  # noqa: E402
from deepfit.export.graphs import interp, ndtri  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "compat" / "fixtures"
TINY_TABLE = dict(k=2, width=16, depth=1, max_epochs=3, progress=False)


def table_frame(n: int, seed: int) -> pd.DataFrame:
    """Numbers with missing values, a category, a binary column, a date with times, and ``y``."""
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(size=n).round(3)
    colour = rng.choice(["red", "green", "blue", "grey"], size=n)
    member = rng.choice(["yes", "no"], size=n)
    day = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 365 * 24 * 60, size=n), unit="min")
    score = np.log(amount) + (colour == "red") - (colour == "blue") + (member == "yes") + np.sin(day.day_of_year / 58)
    frame = pd.DataFrame({"amount": amount, "colour": colour, "member": member,
                          "day": day.strftime("%Y-%m-%d %H:%M"), "y": np.where(score > 0.5, "a", "b"),
                          "price": (10 * amount + 3 * (colour == "red") + rng.normal(size=n)).round(2)})
    frame.loc[rng.choice(n, 12, replace=False), "amount"] = np.nan
    frame.loc[rng.choice(n, 6, replace=False), "colour"] = None
    frame.loc[rng.choice(n, 4, replace=False), "day"] = None
    return frame


def perturb(predictor) -> None:
    """Give the linear part weights and a real share of the output, whatever training chose,
    so the graph's blend is tested."""
    models = getattr(predictor.model, "bags", [predictor.model])
    g = torch.Generator().manual_seed(0)
    for m in models:
        if m.linear:
            for name in ("lin_ple", "lin_x", "lin_cat", "lin_bias"):
                buf = getattr(m, name)
                buf.copy_(torch.randn(buf.shape, generator=g) * 0.3)
            m.lin_alpha.fill_(0.35)


def consumer_inputs(spec: dict, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """What a consumer does with export.json alone: raw column values → the graph's inputs."""
    feeds = {}
    for inp in spec["inputs"]:
        values = rows[inp["column"]]
        if inp["kind"] == "number":
            feeds[inp["name"]] = pd.to_numeric(values, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        elif inp["kind"] == "category":
            codes = {v: i + 1 for i, v in enumerate(inp["vocabulary"])}
            feeds[inp["name"]] = np.array([codes.get(str(v), 0) if pd.notna(v) else 0 for v in values], np.int64)
        elif inp["kind"] == "binary":
            codes = {v: i + 1 for i, v in enumerate(inp["vocabulary"])}
            feeds[inp["name"]] = np.array([codes.get(str(v), -1) if pd.notna(v) else 0 for v in values], np.int64)
        elif inp["kind"] == "date":
            d = pd.to_datetime(values)
            feeds[inp["name"]] = ((d - pd.Timestamp("1970-01-01")) / pd.Timedelta(seconds=1)).to_numpy(
                np.float64, na_value=np.nan)
        else:
            raise AssertionError(inp["kind"])
    return feeds


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def no_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".onnx") or p.name.startswith(".deepfit-export")
                  or p.name in ("export.json", "tokenizer.json"))


# ----------------------------------------------------------------------------- the pieces


def test_ndtri_and_interp_match_torch_and_numpy():
    p = torch.cat([torch.tensor([1e-7, 1 - 1e-7, 0.5, 0.135335283236613, 0.864664716763387]),
                   torch.rand(20_000, generator=torch.Generator().manual_seed(0)) * (1 - 2e-7) + 1e-7]).double()
    assert float((ndtri(p) - torch.special.ndtri(p)).abs().max()) < 1e-12
    rng = np.random.default_rng(0)
    xp = np.sort(np.concatenate([rng.normal(size=40), np.full(5, 0.25), [1.0, 1.0]]))  # ties, as quantiles have
    fp = np.linspace(0, 1, len(xp))
    x = np.concatenate([rng.normal(scale=2, size=5000), xp, [-9.0, 9.0]])
    got = interp(torch.from_numpy(x), torch.from_numpy(xp), torch.from_numpy(fp)).numpy()
    assert np.array_equal(got, np.interp(x, xp, fp))


# ----------------------------------------------------------------------------- tables


@pytest.fixture(scope="module")
def table_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    frame = table_frame(400, seed=0)
    runs = {}
    for name, target, drop in (("classify", "y", "price"), ("regress", "price", "y")):
        fitted = deepfit.fit(frame.drop(columns=[drop]), target=target, types={"day": "date"}, **TINY_TABLE)
        perturb(fitted)
        runs[name] = fitted.save(root / name)
    return root, frame, runs


def test_table_classifier_export_matches_predict_proba(table_runs, tmp_path):
    _, frame, runs = table_runs
    out = tmp_path / "credit.onnx"
    report = export_onnx(runs["classify"], out)
    assert report.max_abs_diff <= 1e-5 and report.rows >= 1000 and report.batch_sizes[0] == 1
    assert max(report.batch_sizes) >= 1000 and report.exporter == "torchscript" and report.opset == 18
    spec = json.loads((tmp_path / "export.json").read_text())
    assert spec["model"] == "credit.onnx" and spec["classes"] == ["a", "b"] and spec["opset"] == 18
    assert {i["name"]: i["kind"] for i in spec["inputs"]} == {"amount": "number", "colour": "category",
                                                              "member": "binary", "day": "date"}
    assert all(i["shape"][0] == "batch" for i in spec["inputs"])
    assert spec["verification"]["max_abs_diff"] == report.max_abs_diff and spec["deepfit_version"] == deepfit.__version__
    # a consumer's rows: real ones, with an unseen category, a missing and an out-of-range number
    rows = table_frame(1200, seed=1).drop(columns=["y", "price"])
    rows.loc[0, "colour"], rows.loc[1, "amount"], rows.loc[2, "amount"] = "purple", np.nan, 1e6
    rows.loc[3, "member"], rows.loc[4, "day"] = "maybe", None
    predictor = deepfit.load(runs["classify"])
    with pytest.warns(deepfit.DeepfitWarning):
        want = predictor.predict_proba(rows).to_numpy()
    got = session(out).run(None, consumer_inputs(spec, rows))[0]
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-5
    one = session(out).run(None, consumer_inputs(spec, rows.iloc[:1]))[0]
    assert np.abs(one - want[:1]).max() < 1e-5


def test_table_regression_export_gives_values_in_target_units(table_runs, tmp_path):
    _, frame, runs = table_runs
    report = export_onnx(runs["regress"], tmp_path / "price.onnx", data=frame.drop(columns=["y"]))
    assert report.rows_from_data == 400 and report.rows == 1000 and report.max_abs_diff <= 1e-5
    spec = json.loads((tmp_path / "export.json").read_text())
    assert spec["outputs"][0]["name"] == "value" and spec["outputs"][0]["dtype"] == "float64"
    rows = table_frame(1000, seed=2).drop(columns=["y", "price"])
    rows.loc[0, "amount"] = 1e9  # far out of range: the graph bounds the value like predict does
    with pytest.warns(deepfit.DeepfitWarning):
        want = deepfit.load(runs["regress"]).predict(rows)
    got = session(tmp_path / "price.onnx").run(None, consumer_inputs(spec, rows))[0]
    assert got.dtype == np.float64 and np.abs(got - want).max() < 1e-5 * max(1.0, np.abs(want).max())
    assert spec["bounds"]["low"] <= got.min() and got.max() <= spec["bounds"]["high"]
    # one export per folder: another model exported beside it would overwrite its export.json
    before = (tmp_path / "export.json").read_bytes()
    with pytest.raises(ConfigError, match=r"already holds an export .*'price.onnx'.*export into another folder"):
        export_onnx(runs["classify"], tmp_path / "other.onnx")
    assert (tmp_path / "export.json").read_bytes() == before and not (tmp_path / "other.onnx").exists()
    export_onnx(runs["regress"], tmp_path / "price.onnx")  # re-exporting the same file replaces it


def test_sequence_columns_export(tmp_path):
    rng = np.random.default_rng(0)
    n = 240
    signals = [rng.normal(size=int(rng.integers(5, 20))) + (i % 2) for i in range(n)]
    frame = pd.DataFrame({"signal": [" ".join(f"{v:.3f}" for v in s) for s in signals],
                          "x": rng.normal(size=n), "y": np.where(np.arange(n) % 2, "up", "down")})
    fitted = deepfit.fit(frame, target="y", types={"signal": "sequence"}, **TINY_TABLE)
    perturb(fitted)
    report = export_onnx(fitted, tmp_path / "seq.onnx", data=frame)
    assert report.max_abs_diff <= 1e-5 and report.rows_from_data == n
    spec = json.loads((tmp_path / "export.json").read_text())
    assert [(i["name"], i["dtype"], i["shape"]) for i in spec["inputs"]][:2] == [
        ("signal", "float32", ["batch", 1, 19]), ("signal:length", "int64", ["batch"])]


def test_text_column_cannot_be_exported_and_nothing_is_written(tmp_path):
    with pytest.raises(ExportError, match=r"column 'review' of this table model is a text column"):
        export_onnx(FIXTURES / "text" / "run", tmp_path / "text.onnx")
    assert no_leftovers(tmp_path) == []


def test_a_graph_that_does_not_match_writes_nothing(table_runs, tmp_path):
    _, _, runs = table_runs
    with pytest.raises(ExportError, match=r"does not match the model: max abs difference .* nothing was written"):
        export_onnx(runs["classify"], tmp_path / "strict.onnx", tolerance=0.0)
    assert no_leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- images


def write_digit_pngs(root: Path, per_class: int = 12) -> list[Path]:
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    paths = []
    for c in (0, 1, 2):
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(d.target == c)[:per_class]:
            p = root / str(c) / f"{i:04d}.png"
            Image.fromarray(np.round(d.images[i] * 255 / 16).astype(np.uint8), mode="L").save(p)
            paths.append(p)
    return paths


def test_image_export_with_test_time_views_matches(tmp_path):
    from deepfit.data.images import decode_images

    data = tmp_path / "digits"
    paths = write_digit_pngs(data)
    run = tmp_path / "run"
    assert main(["train", str(data), "--out", str(run), "--epochs", "2", "--batch-size", "8", "--quiet"]) == 0
    predictor = deepfit.load(run)
    predictor.tta, predictor.flip = True, True  # every view of ImagePredictor._views in the graph
    report = export_onnx(predictor, tmp_path / "img.onnx", data=str(data))
    assert report.rows_from_data == 36 and report.max_abs_diff <= 1e-5
    spec = json.loads((tmp_path / "export.json").read_text())
    size = spec["image"]["size"]
    assert spec["inputs"][0]["shape"] == ["batch", 3, size, size] and "mirror" in spec["image"]["tta"]
    images, _, _ = decode_images([str(p) for p in paths], size, crop=spec["image"]["crop"])
    got = session(tmp_path / "img.onnx").run(None, {"image": images.numpy().astype(np.float32)})[0]
    assert np.abs(got - predictor.predict_proba([str(p) for p in paths]).to_numpy()).max() < 1e-5


# ----------------------------------------------------------------------------- arrays


def test_cli_exports_a_digits_run_and_prints_the_figure(tmp_path, capsys):
    from deepfit import datasets
    from deepfit.tasks.arrays import ArraysSettings
    from deepfit.tasks.runner import fit

    run = tmp_path / "digits"
    fit("arrays", "digits", ArraysSettings(data="digits", epochs=1, hidden=(16,)), out=run, progress=False)
    assert main(["export", str(run), "--format", "onnx"]) == 0
    printed = capsys.readouterr().out
    figure = float(re.search(r"max abs difference ([0-9.e+-]+)", printed).group(1))
    assert figure <= 1e-5 and "the test split of digits" in printed and "batch sizes 1, " in printed
    spec = json.loads((run / "export.json").read_text())
    assert spec["verification"]["rows_from_data"] > 300 and spec["verification"]["rows"] == 1000
    x = datasets.load("digits").x_test.astype(np.float32)
    got = session(run / "model.onnx").run(None, {"x": x.reshape(len(x), *spec["inputs"][0]["shape"][1:])})[0]
    assert np.abs(got - deepfit.load(run).predict_proba("digits")).max() < 1e-5


def test_resnet1d_arrays_model_exports(tmp_path):
    from deepfit.tasks.arrays.predictor import ArraysPredictor, build_model

    config = {"in_channels": 1, "out_features": 10, "widths": [8, 16], "strides": [1, 2], "stem_kernel": 5}
    torch.manual_seed(0)
    predictor = ArraysPredictor(model=build_model("resnet1d", config), name="resnet1d", config=config,
                                classes=[str(i) for i in range(10)], input_shape=[40], data="mnist1d")
    report = export_onnx(predictor, tmp_path / "signal.onnx", verify_rows=1200)
    assert report.rows == 1200 and report.max_abs_diff <= 1e-5 and report.rows_from_data > 0


# ----------------------------------------------------------------------------- language models


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    from deepfit.datasets import tweets_corpus
    from deepfit.tasks.lm import LMSettings, fit_lm

    root = tmp_path_factory.mktemp("lm")
    (root / "corpus.txt").write_text(tweets_corpus()[:20_000], encoding="utf-8")
    settings = LMSettings(vocab_size=300, context=16, dim=16, layers=1, heads=2, batch_size=8, steps=20,
                          eval_every=20, valid_windows=8)
    fit_lm([str(root / "corpus.txt")], settings, out=root / "run", progress=False)
    return root


def test_lm_export_gives_the_models_logits_for_any_window(lm_run, tmp_path):
    from tokenizers import Tokenizer

    out = tmp_path / "lm.onnx"
    assert main(["export", str(lm_run / "run"), "--out", str(out), "--data", str(lm_run / "corpus.txt")]) == 0
    spec = json.loads((tmp_path / "export.json").read_text())
    assert spec["verification"]["max_abs_diff"] <= 1e-5 and spec["verification"]["rows_from_data"] == 1000
    assert spec["exporter"].startswith("torch.onnx.export(dynamo=True)")  # RMSNorm: TorchScript has no conversion
    tok = Tokenizer.from_file(str(tmp_path / spec["tokenizer"]["file"]))
    predictor = deepfit.load(lm_run / "run")
    start = spec["tokenizer"]["document_start"]
    ids = start + tok.encode("I will make America").ids
    assert ids[len(start):] == predictor.tokenizer.encode("I will make America")  # deepfit's own ids
    window = np.array([ids[: spec["context"]]], dtype=np.int64)  # batch 1, a window shorter than the context
    got = session(out).run(None, {"ids": window})[0]
    with torch.inference_mode():
        want = predictor.model(torch.from_numpy(window)).numpy()
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-4


def test_layernorm_gpt_exports_with_torchscript(tmp_path):
    from deepfit.features.tokenizer import Tokenizer
    from deepfit.models.gpt import GPT
    from deepfit.tasks.lm import LMPredictor

    tok = Tokenizer.train(["hello world, hello there"] * 5, kind="char")
    torch.manual_seed(0)
    predictor = LMPredictor(GPT(vocab_size=tok.vocab_size, context=8, dim=16, layers=1, heads=2, norm="layernorm"),
                            tok)
    report = export_onnx(predictor, tmp_path / "ln.onnx")
    assert report.exporter == "torchscript" and report.max_abs_diff <= 1e-5 and report.rows == 1000


# ----------------------------------------------------------------------------- bad runs


def test_missing_and_corrupt_runs_are_clear_errors_with_no_output(table_runs, tmp_path, capsys):
    _, _, runs = table_runs
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "x.onnx")]) == 1
    assert "is not a deepfit model directory" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(runs["classify"], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(DeepfitError, match="model.safetensors"):
        export_onnx(broken, tmp_path / "b.onnx")
    assert main(["export", str(broken)]) == 1
    assert "error:" in capsys.readouterr().err
    assert no_leftovers(tmp_path) == [] and no_leftovers(broken) == []


# ----------------------------------------------------------------------------- docs


def test_docs_example_runs(table_runs, tmp_path, monkeypatch):
    text = (ROOT / "docs" / "export.md").read_text(encoding="utf-8")
    section = text[text.index("## Using the file"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    _, frame, runs = table_runs
    export_onnx(runs["classify"], tmp_path / "model.onnx")
    frame.drop(columns=["y", "price"]).head(5).to_csv(tmp_path / "new.csv", index=False)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "docs/export.md", "exec"), scope)
    want = deepfit.load(runs["classify"]).predict_proba(tmp_path / "new.csv").to_numpy()
    assert np.abs(scope["probabilities"] - want).max() < 1e-5
