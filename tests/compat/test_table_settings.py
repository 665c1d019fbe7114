"""Table run.json migrations: a version-1 run.json (written before settings had a version)
resumes with the values of its time; an unknown settings key is an error naming it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import deepfit
from deepfit.errors import ConfigError
from deepfit.tasks.runner import file_sha256
from deepfit.tasks.table import TableSettings, fit_table

# The seven keys a version-1 run.json may lack, and the values runs of that time trained with
# (TableSettings' migration 1 -> 2, _v1_to_v2_before_version_b_embeddings).
BEFORE = {"ple_version": "a", "mix_bags": False, "monitor": "metric", "text_bags": 1, "wide_lr_scale": 1.0,
          "ngram_c": None, "ngram_nb": False}
SMALL = {"max_epochs": 3, "k": 2, "width": 16, "depth": 1}


@pytest.fixture()
def text_csv(tmp_path):
    rng = np.random.default_rng(0)
    good, bad = ["great", "fine", "lovely", "happy"], ["awful", "sad", "poor", "bad"]
    label = rng.integers(0, 2, 160)
    text = [" ".join(rng.choice(good if y else bad, 3)) + " " + " ".join(rng.choice(["the", "a", "it"], 2))
            for y in label]
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"text": text, "n": rng.normal(size=160), "y": np.where(label, "pos", "neg")}).to_csv(path, index=False)
    return path


def _v1_run(out, csv, settings: dict) -> None:
    """An interrupted run as deepfit <= cd228c3 left it before any checkpoint: run.json only."""
    work = out.with_name(out.name + ".incomplete")
    work.mkdir(parents=True)
    (work / "run.json").write_text(json.dumps({"settings": settings, "data": str(csv), "data_sha256": file_sha256(csv),
                                               "test": None}), encoding="utf-8")


def test_a_version_1_run_json_resumes_with_the_settings_of_its_time(tmp_path, text_csv):
    stored = {k: v for k, v in TableSettings(target="y", **SMALL).flat_json().items()
              if k != "version" and k not in BEFORE and k != "text_encoder"}  # text_encoder: version 5
    out = tmp_path / "run"
    _v1_run(out, text_csv, stored)
    resumed = fit_table(str(text_csv), TableSettings(target="y"), out=str(out), resume=True, progress=False)
    # The model of that time: version-"a" embeddings, one model for a text table, no n-gram prior.
    assert resumed.model.ple_version == "a" and resumed.model.ngram_prior is False
    assert resumed.info["bags"] == 1 and resumed.info["ensemble_k"] == 2  # no ensemble_k stored: the asked k
    # ... the very run those settings start today.
    fresh = fit_table(str(text_csv), TableSettings(target="y", **SMALL, **BEFORE, text_encoder="ngrams"),
                      progress=False)  # text_encoder: migration 4 -> 5
    rows = pd.read_csv(text_csv).drop(columns=["y"])
    assert np.array_equal(resumed.predict_proba(rows).to_numpy(), fresh.predict_proba(rows).to_numpy())
    # The finished run is a model, and resuming it again returns it.
    again = fit_table(str(text_csv), TableSettings(target="y"), out=str(out), resume=True, progress=False)
    assert np.array_equal(again.predict_proba(rows).to_numpy(), fresh.predict_proba(rows).to_numpy())
    assert deepfit.load(out).model.ple_version == "a"


def test_keys_present_in_a_version_1_run_json_keep_their_values():
    old = {k: v for k, v in TableSettings(target="y", text_bags=2).flat_json().items() if k != "version"}
    assert TableSettings.from_json(old) == TableSettings(target="y", text_bags=2)


def test_an_unknown_settings_key_in_run_json_is_an_error_naming_it(tmp_path, text_csv):
    stored = {**TableSettings(target="y", **SMALL).to_json(), "colour": "blue"}
    out = tmp_path / "run"
    _v1_run(out, text_csv, stored)
    with pytest.raises(ConfigError, match=r"stored TableSettings has unknown key\(s\) 'colour'"):
        fit_table(str(text_csv), TableSettings(target="y"), out=str(out), resume=True, progress=False)
    with pytest.raises(ConfigError, match="'colour'"):
        TableSettings.from_json({"target": "y", "colour": "blue"})  # a version-1 file too


def test_settings_from_a_newer_deepfit_are_refused():
    newer = TableSettings.VERSION + 1
    with pytest.raises(ConfigError, match=f"version {newer}, newer than this deepfit reads.*upgrade deepfit"):
        TableSettings.from_json({**TableSettings(target="y").to_json(), "version": newer})


def test_a_version_4_run_json_resumes_reading_its_text_through_ngrams():
    """Version 5 added ``text_encoder`` (default "auto"); a version-4 run (the fixture, as
    commit 189b062 wrote it) read its text columns through n-grams only, and keeps doing so."""
    from pathlib import Path

    stored = json.loads((Path(__file__).parent / "fixtures" / "table_settings" / "v4_run_settings.json").read_text())
    assert stored["version"] == 4 and "text_encoder" not in stored["text"]
    s = TableSettings.from_json(stored)
    assert s.text_encoder == "ngrams" and TableSettings(target="score").text_encoder == "ngrams"
    assert s == TableSettings(target="score", time_limit=60, text_bags=2, ngram_c=1.0, text_encoder="ngrams")
    assert TableSettings.from_json(s.to_json()) == s and s.to_json()["version"] == 5
