"""Artifacts load without running code, and bad ones fail with clear errors before weights are read."""

import json
import os
import pickle
import shutil

import pandas as pd
import pytest

import deepfit
from deepfit.artifact import ArtifactError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    df = pd.DataFrame({"x": [float(i % 17) for i in range(120)], "y": ["lo" if i % 17 < 8 else "hi" for i in range(120)]})
    model = deepfit.fit(df, target="y", progress=False, time_limit=20)
    path = tmp_path_factory.mktemp("a") / "model"
    model.save(path)
    return path


def _copy(saved, tmp_path):
    dst = tmp_path / "m"
    shutil.copytree(saved, dst)
    return dst


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickle_instead_of_weights_cannot_run_code(saved, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = _copy(saved, tmp_path)
    (m / "model.safetensors").write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ArtifactError, match="not a readable safetensors file"):
        deepfit.load(m)
    assert not (tmp_path / "pwned").exists()


def test_newer_format_version_is_refused(saved, tmp_path):
    m = _copy(saved, tmp_path)
    meta = json.loads((m / "deepfit.json").read_text())
    meta["format_version"] = 99
    (m / "deepfit.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="format_version 99.*Upgrade deepfit"):
        deepfit.load(m)


@pytest.mark.parametrize("mutate, message", [
    (lambda meta: meta.pop("preprocessor"), "field 'preprocessor' is missing"),
    (lambda meta: meta.update(format="something-else"), "is not a deepfit artifact"),
    (lambda meta: meta["model"].update(name="os.system"), "unknown model 'os.system'"),
    (lambda meta: meta["model"]["config"].update(width=8), "does not match|shape"),
])
def test_tampered_json_is_refused(saved, tmp_path, mutate, message):
    m = _copy(saved, tmp_path)
    meta = json.loads((m / "deepfit.json").read_text())
    mutate(meta)
    (m / "deepfit.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=message):
        deepfit.load(m)


def test_missing_or_garbled_files(saved, tmp_path):
    m = _copy(saved, tmp_path)
    (m / "deepfit.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        deepfit.load(m)
    m2 = tmp_path / "m2"
    shutil.copytree(saved, m2)
    (m2 / "model.safetensors").unlink()
    with pytest.raises(ArtifactError, match="missing: the artifact is incomplete"):
        deepfit.load(m2)
    with pytest.raises(ArtifactError, match="does not exist"):
        deepfit.load(tmp_path / "nowhere")


def test_save_refuses_to_overwrite(saved, tmp_path):
    model = deepfit.load(saved)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep")
    with pytest.raises(ArtifactError, match="already exists and is not empty"):
        model.save(tmp_path / "busy")
    assert (tmp_path / "busy" / "x").read_text() == "keep"
