"""Text columns in tables, as a user meets them: deepfit.fit and deepfit train on real tweets."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import deepfit
from deepfit import datasets
from deepfit.features.text import TextFeature, ngram_hashes

ROOT = Path(__file__).resolve().parents[1]


def tweets(n=1600):
    """Android vs iPhone tweets (BENCHMARKS.md §4 protocol), the first ``n`` rows."""
    df = datasets.rdataset("dslabs", "trump_tweets")
    df = df[df["source"].isin(["Twitter for Android", "Twitter for iPhone"])].drop_duplicates("text")
    df = df[["text", "source"]].reset_index(drop=True)
    return df.sample(n, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def tweet_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tweets"
    df = tweets()
    model = deepfit.fit(df, target="source", seed=0, progress=False, time_limit=10, out=str(out))
    return df, model, out


def test_text_model_beats_the_majority_class_clearly(tweet_model):
    df, model, _ = tweet_model
    assert {c["name"]: c["kind"] for c in model.columns}["text"] == "text"
    majority = df["source"].value_counts(normalize=True).max()  # ~0.54
    assert model.metrics["test_accuracy"] >= majority + 0.2  # TF-IDF + LR reaches ~0.82 on these 320 test rows


def test_saved_text_model_predicts_raw_rows_exactly_as_trained(tweet_model):
    df, model, out = tweet_model
    rows = df.drop(columns=["source"]).iloc[:50]
    loaded = deepfit.load(out)
    np.testing.assert_array_equal(loaded.predict_proba(rows).to_numpy(), model.predict_proba(rows).to_numpy())
    meta = json.loads((out / "deepfit.json").read_text())
    state = meta["preprocessor"]["columns"][0]["state"]
    assert state["tokenizer"]["kind"] == "bpe" and isinstance(state["ngrams"], str)  # all in the JSON
    assert len(loaded.predict(pd.DataFrame({"text": ["Thank you!", None, "x" * 2000]}))) == 3  # missing, very long


def test_report_lists_the_worst_classified_texts(tweet_model):
    df, _, out = tweet_model
    report = (out / "report.html").read_text()
    assert "Worst-classified texts (test rows)" in report
    section = report[report.index("Worst-classified texts"):]
    assert sum(t[:30].replace("&", "&amp;")[:20] in section for t in df["text"]) >= 5  # real tweets are listed


def test_ngram_hashes_are_positional_and_deterministic():
    docs, hashes = ngram_hashes(["ab", "ba", ""])
    assert docs.tolist().count(2) == 0  # the empty text has no n-grams
    a, b = set(hashes[docs == 0]), set(hashes[docs == 1])
    assert len(a) == len(b) == 4  # characters a, b; the character bigram; the word itself
    assert len(a & b) == 2  # the single characters are shared; "ab"/"ba" (characters or words) are not
    again = ngram_hashes(["ab"])[1]
    assert set(again) == a


def test_text_feature_needs_some_training_text():
    from deepfit.errors import DataError

    with pytest.raises(DataError, match="no text"):
        TextFeature("t").fit(pd.Series([None, None], dtype=object))


@pytest.mark.slow
def test_cli_train_on_a_tweets_csv(tmp_path):
    path = tmp_path / "tweets.csv"
    tweets(800).to_csv(path, index=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "deepfit", "train", str(path), "--target", "source", "--out",
                           str(tmp_path / "run"), "--time-limit", "8", "--quiet"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.7


def test_character_level_tokens_option():
    texts = pd.Series(["Hello World!", "bye now", "MAKE IT GREAT"] * 4, dtype=object)
    f = TextFeature("t", tokenizer="char").fit(texts)
    tokens = f.encode(pd.Series(["Hello"], dtype=object))["tokens"][0, 0]
    assert (tokens > 0).sum() == 5 and f.tokenizer.decode(tokens) == "Hello"  # one id per character, case kept
    again = TextFeature.from_state("t", json.loads(json.dumps(f.state_dict())))
    assert again.tokenizer.kind == "char"
    with pytest.raises(Exception, match="'bpe' or 'char'"):
        TextFeature("t", tokenizer="word")


def test_wide_learning_rate_scale_puts_the_ngram_logits_in_their_own_group():
    import torch

    from deepfit.engine.optim import build_optimizer
    from deepfit.models.tabular import TabularModel
    from deepfit.tasks.table.text import wide_optimizer

    spec = {"n_num": 1, "num_bins": [None], "cat_cardinalities": [], "n_text": 1, "text_buckets": 50,
            "token_vocab": 10, "max_tokens": 4}
    model = TabularModel(spec, n_outputs=2, k=2, width=8)
    opt = build_optimizer(wide_optimizer(model.text_linear.weight, 10.0), model, lr=2e-3, weight_decay=3e-4)
    scaled = [g for g in opt.param_groups if g.get("lr_scale") == 10.0]
    assert len(scaled) == 1 and scaled[0]["params"] == [model.text_linear.weight]
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    assert isinstance(opt, torch.optim.AdamW)


def test_text_tables_average_models_early_stopped_on_their_own_validation_rows():
    from deepfit.data.split import split_indices
    from deepfit.errors import ConfigError
    from deepfit.models.tabular import TabularBag
    from deepfit.predict import Predictor
    from deepfit.tasks.table import TableSettings, fit_table

    df = tweets(500)
    settings = TableSettings(target="source", seed=3, test_size=0, max_epochs=4, k=4, width=32, text_bags=2)
    model = fit_table(df, settings, progress=False)  # no time limit: text_bags models
    assert isinstance(model.model, TabularBag) and model.info["bags"] == 2 and len(model.info["bag_epochs"]) == 2
    assert any("own validation rows" in n for n in model.info["notes"])
    first, second = model.model.bags
    # Trained on different rows: the n-gram weights differ (same rows and seeds would not change them much).
    assert not torch_allclose(first.text_linear.weight, second.text_linear.weight)
    # Validation figures are the first model's alone, on its own held-out rows.
    _, valid_rows = split_indices(df, target="source", task="classify", seed=settings.seed + 1, test_size=0.2)
    alone = Predictor(task="classify", target=model.target, preprocessor=model.preprocessor, model=first,
                      columns=model.columns, model_name="tabular")
    expected = alone.evaluate(df.iloc[valid_rows].reset_index(drop=True))["accuracy"]
    assert model.metrics["valid_accuracy"] == pytest.approx(expected)
    one = fit_table(df, TableSettings(target="source", seed=3, test_size=0, max_epochs=2, k=4, width=32, text_bags=1),
                    progress=False)
    assert one.info["bags"] == 1
    for bad in (0, 17, True, 2.0):
        with pytest.raises(ConfigError, match="text_bags"):
            TableSettings(target="source", text_bags=bad)


def torch_allclose(a, b) -> bool:
    import torch

    return bool(torch.allclose(a, b, atol=1e-4))


def test_ngram_prior_is_the_naive_bayes_log_count_ratio():
    import math

    import torch

    from deepfit.models.tabular import ngram_prior

    # Texts: {1, 2} class 0; {1, 3} class 1; {2} class 1. Id 0 is padding.
    ids = torch.tensor([[[1, 2, 0]], [[1, 3, 0]], [[2, 0, 0]]])
    r = ngram_prior(ids, torch.tensor([0, 1, 1]), buckets=4, n_classes=2)
    # Class 1 against class 0, each count + 1: p = (2, 2, 2) / 6, q = (2, 2, 1) / 5.
    expected = [0.0, abs(math.log((2 / 6) / (2 / 5))), abs(math.log((2 / 6) / (2 / 5))), abs(math.log((2 / 6) / (1 / 5)))]
    assert r[:, 1].tolist() == pytest.approx(expected, abs=1e-6)
    assert r[:, 0].tolist() == pytest.approx(expected, abs=1e-6)  # two classes: the same magnitude


def test_ngram_weights_are_penalised_like_a_logistic_regression():
    from deepfit.errors import ConfigError
    from deepfit.models.tabular import TabularModel
    from deepfit.tasks.table import TableSettings, fit_table

    df = tweets(400)

    def wide_norm(**kw) -> float:
        settings = TableSettings(target="source", seed=0, test_size=0, max_epochs=3, patience=10, k=2, width=16,
                                 text_bags=1, **kw)
        model = fit_table(df, settings, progress=False).model
        assert isinstance(model, TabularModel) and model.ngram_prior == kw.get("ngram_nb", True)
        return float((model.text_linear.weight * (model.text_prior if model.ngram_prior else 1)).detach().norm())

    free, strong = wide_norm(ngram_c=None), wide_norm(ngram_c=0.01)
    assert strong < 0.5 * free  # a small C holds the effective n-gram weights down
    assert wide_norm(ngram_c=None, ngram_nb=False) > 0
    for bad in (0, -1.0, True, "3"):
        with pytest.raises(ConfigError, match="ngram_c"):
            TableSettings(target="source", ngram_c=bad)
    old = TableSettings.from_json({"target": "source"})  # a run.json written before these settings
    assert (old.ngram_c, old.ngram_nb, old.wide_lr_scale, old.text_bags) == (None, False, 1.0, 1)
