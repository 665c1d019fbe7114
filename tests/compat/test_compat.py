"""Run directories and artifacts written by deepfit at commit cd228c3 still load, predict and resume.

The fixtures in ``fixtures/`` were written once by ``make_fixtures.py`` on that code (see its
docstring; never regenerate them). Predictions after loading must equal the recorded ones
exactly; interrupted runs must resume to a complete, loadable run — bit-for-bit the recorded
complete run when this CPU trains with the same precision as the one that wrote them.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import deepfit
from deepfit.artifact import FORMAT_VERSION, ArtifactError, read_meta

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
_spec = importlib.util.spec_from_file_location("compat_make_fixtures", HERE / "make_fixtures.py")
make = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make)
MANIFEST = json.loads((FIXTURES / "MANIFEST.json").read_text(encoding="utf-8"))


def _same_training_precision() -> bool:
    """Whether this CPU trains as the one that wrote the fixtures did (bf16 autocast only with native
    bf16): only then can a resumed run match the recorded complete run bit for bit."""
    from deepfit.engine.precision import cpu_has_fast_bf16

    return cpu_has_fast_bf16() == MANIFEST["cpu_fast_bf16"]


def copy_case(name: str, tmp_path: Path) -> Path:
    """A writable copy of ``fixtures/<name>`` (resuming writes into the run folder)."""
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


# Float results are equal to the last bit on the CPU that wrote the fixtures; another CPU model
# (oneDNN and the BLAS pick kernels by instruction set) differs in the last bits of float32 — seen
# here: 6e-8 on an AMD EPYC for fixtures written on another x86_64. So: equal within float32
# rounding, not bit for bit.
RTOL, ATOL = 1e-5, 1e-6  # values and probabilities
W_RTOL, W_ATOL = 1e-4, 1e-5  # weights after resumed training steps (the last-bit differences add up)


def assert_frames_equal(got: pd.DataFrame, expected_csv: Path) -> None:
    """Same columns, same labels, probabilities / values equal within float32 rounding."""
    expected = pd.read_csv(expected_csv)
    assert list(got.columns) == list(expected.columns)
    for column in expected.columns:
        if pd.api.types.is_float_dtype(expected[column]):
            a, b = got[column].to_numpy(np.float64), expected[column].to_numpy(np.float64)
            assert np.allclose(a, b, rtol=RTOL, atol=ATOL), f"{column}: max abs diff {np.abs(a - b).max()}"
        else:
            assert list(got[column].astype(str)) == list(expected[column].astype(str)), column


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k].float(), rtol=W_RTOL, atol=W_ATOL), \
            f"{k}: max abs diff {(wa[k].float() - wb[k].float()).abs().max()}"


def assert_lm_as_before(got: dict, expected: dict) -> None:
    """make_fixtures.lm_expected's record: the same ids and generated text; scores and logits
    within float32 rounding."""
    assert got["prompt_ids"] == expected["prompt_ids"]
    assert got["greedy"] == expected["greedy"] and got["sampled_seed0"] == expected["sampled_seed0"]
    assert got["evaluate"].keys() == expected["evaluate"].keys()
    for k, v in expected["evaluate"].items():
        assert np.isclose(got["evaluate"][k], v, rtol=RTOL, atol=ATOL), (k, got["evaluate"][k], v)
    assert np.allclose(got["logits_after_prompt"], expected["logits_after_prompt"], rtol=RTOL, atol=ATOL)


def image_frame(predictor: object, images: Path) -> pd.DataFrame:
    frame = predictor.predict_frame(str(images))
    frame["path"] = [Path(p).resolve().relative_to(images.resolve()).as_posix() for p in frame["path"]]
    return frame


# ----------------------------------------------------------------------------- artifacts load and predict


@pytest.mark.parametrize("case", ["table", "table_regress", "text"])
def test_table_artifacts_predict_exactly_what_they_predicted(case):
    folder = FIXTURES / case
    predictor = deepfit.load(folder / "run")
    assert_frames_equal(predictor.predict_frame(str(folder / "rows.csv")), folder / "expected.csv")
    assert predictor.metrics == json.loads((folder / "run" / "metrics.json").read_text())


def test_text_artifact_is_a_bag_of_models_with_ngram_priors():
    predictor = deepfit.load(FIXTURES / "text" / "run")
    assert predictor.info["bags"] == 2
    weights = load_file(FIXTURES / "text" / "run" / "model.safetensors")
    assert {"bags.0.text_prior", "bags.1.text_prior", "bags.0.text_linear.weight"} <= set(weights)


def test_image_artifact_predicts_exactly_what_it_predicted():
    folder = FIXTURES / "image"
    predictor = deepfit.load(folder / "run")
    assert_frames_equal(image_frame(predictor, folder / "images"), folder / "expected.csv")
    assert predictor.evaluate(str(folder / "images"))["accuracy"] >= 0.9  # it learned the three digits


def test_lm_artifact_scores_and_generates_exactly_as_before():
    folder = FIXTURES / "lm"
    expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    assert_lm_as_before(make.lm_expected(deepfit.load(folder / "run"), folder / "corpus.txt"), expected)


def test_bundled_run_without_deepfit_json_loads_through_its_migration_and_predicts_as_before():
    run = FIXTURES / "bundled" / "digits"
    with pytest.raises(ArtifactError, match="has no deepfit.json"):
        read_meta(run)  # written before bundled runs were artifacts ...
    model = deepfit.load(run)  # ... it loads through deepfit.tasks.arrays.predictor.load_legacy_run
    assert model.kind == "arrays" and model.classes == [str(i) for i in range(10)]
    logits, _ = make.bundled_logits(run)
    expected = pd.read_csv(FIXTURES / "bundled" / "expected.csv").to_numpy(np.float64)
    assert np.allclose(logits.double().numpy(), expected, rtol=RTOL, atol=ATOL)
    from deepfit import datasets

    x = datasets.load("digits").x_test
    probs = model.predict_proba(x[:50])
    assert np.allclose(probs, torch.softmax(torch.from_numpy(expected).float(), dim=1).numpy(), rtol=RTOL, atol=ATOL)
    accuracy = model.evaluate("digits")["accuracy"]  # the whole test split
    assert accuracy == pytest.approx(json.loads((run / "metrics.json").read_text())["test_accuracy"], abs=1e-12)


@pytest.mark.parametrize("case", ["table", "image", "lm"])
def test_a_newer_format_version_is_a_clear_error(case, tmp_path):
    run = Path(shutil.copytree(FIXTURES / case / "run", tmp_path / "run"))
    meta = json.loads((run / "deepfit.json").read_text(encoding="utf-8"))
    meta["format_version"] = FORMAT_VERSION + 1
    (run / "deepfit.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ArtifactError, match=rf"format_version {FORMAT_VERSION + 1}.*Upgrade deepfit"):
        deepfit.load(run)


# ----------------------------------------------------------------------------- interrupted runs resume


def _check_resumed(folder: Path) -> Path:
    run = folder / "interrupted"
    assert (run / "deepfit.json").exists() and not (folder / "interrupted.incomplete").exists()
    assert not list(run.glob("*.ckpt"))
    return run


def test_interrupted_table_run_resumes_to_a_complete_run(tmp_path):
    from deepfit.tasks.table import TableSettings, fit_table

    folder = copy_case("table", tmp_path)
    predictor = fit_table(str(folder / "train.csv"), TableSettings(target="y"), out=str(folder / "interrupted"),
                          resume=True, progress=False)
    run = _check_resumed(folder)
    assert predictor.info["epochs"] == make.TABLE["max_epochs"]
    loaded = deepfit.load(run)
    if _same_training_precision():
        assert_same_weights(run, folder / "run")
        assert_frames_equal(loaded.predict_frame(str(folder / "rows.csv")), folder / "expected.csv")


def test_interrupted_image_run_resumes_to_a_complete_run(tmp_path):
    from deepfit.tasks.images import ImageSettings, fit_images

    folder = copy_case("image", tmp_path)
    fit_images(str(folder / "images"), ImageSettings(), out=str(folder / "interrupted"), resume=True, progress=False)
    run = _check_resumed(folder)
    loaded = deepfit.load(run)
    if _same_training_precision():
        assert_same_weights(run, folder / "run")
        assert_frames_equal(image_frame(loaded, folder / "images"), folder / "expected.csv")


def test_interrupted_lm_run_resumes_to_a_complete_run(tmp_path):
    from deepfit.tasks.lm import fit_lm

    folder = copy_case("lm", tmp_path)
    predictor = fit_lm(str(folder / "corpus.txt"), out=str(folder / "interrupted"), resume=True, progress=False)
    run = _check_resumed(folder)
    assert predictor.info["steps"] == make.LM["steps"]
    loaded = deepfit.load(run)
    if _same_training_precision():
        assert_same_weights(run, folder / "run")
        expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
        assert_lm_as_before(make.lm_expected(loaded, folder / "corpus.txt"), expected)


def test_the_fixtures_were_written_by_the_recorded_commit_and_stay_small():
    assert MANIFEST["source_commit"] == make.COMMIT == "cd228c3"
    size = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert size < 2_000_000, f"tests/compat/fixtures holds {size} bytes; keep it under 2 MB"
