"""Language models: corpus reading, training that learns, the artifact, generation, the CLI, bad input."""

import json
import math

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfit.cli import main
from deepfit.errors import ConfigError, DataError
from deepfit.predict import load
from deepfit.tasks.lm import LMPredictor, LMSettings, encode_text, fit_lm, read_corpus, unigram_entropy

# A tiny model: trains in a few seconds at one thread.
TINY = dict(dim=64, layers=1, heads=2, context=32, batch_size=16, eval_every=60, valid_windows=32)


@pytest.fixture(scope="module")
def corpus() -> str:
    """60,000 characters of real text: the first tweets of the benchmark corpus."""
    from deepfit.datasets import tweets_corpus

    return tweets_corpus()[:60_000]


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """The default tokenizer (byte-level BPE), a tiny model, 180 steps (~5 s)."""
    out = tmp_path_factory.mktemp("lm") / "run"
    lm = fit_lm([corpus], LMSettings(vocab_size=512, steps=180, lr=3e-3, **TINY), out=out, progress=False)
    return lm, out


@pytest.fixture(scope="module")
def char_lm(corpus):
    return fit_lm([corpus], LMSettings(tokenizer="char", steps=60, lr=3e-3, **TINY), progress=False)


# ----------------------------------------------------------------------------- reading


def test_read_corpus_file_folder_table_and_list(tmp_path):
    (tmp_path / "a.txt").write_text("first file\r\nline two", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("\ufeffsecond file\n", encoding="utf-8")
    (tmp_path / "skip.md").write_text("not a txt", encoding="utf-8")
    text, source = read_corpus(tmp_path)
    assert text == "first file\nline two\nsecond file\n" and "2 .txt files" in source
    assert read_corpus(tmp_path / "a.txt")[0] == "first file\nline two"
    frame = pd.DataFrame({"id": [1, 2, 3], "text": ["one", None, "three"]})
    assert read_corpus(frame)[0] == "one\nthree\n"
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert read_corpus(tmp_path / "t.csv", text_column="text")[0] == "one\nthree\n"
    with pytest.raises(DataError, match="say which holds the text"):
        read_corpus(pd.DataFrame({"a": ["x"], "b": ["y"]}))
    assert read_corpus(["x", "y\n"])[0] == "x\ny\n"


@settings(max_examples=40, deadline=None)
@given(st.text(min_size=1, max_size=60).filter(lambda t: t.strip() and "\r" not in t and not t.startswith("\ufeff")))
def test_read_corpus_round_trips_any_utf8_file(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("c") / "c.txt"
    path.write_bytes(text.encode("utf-8"))
    assert read_corpus(path)[0] == text


def test_bad_corpora_raise_clear_errors(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        read_corpus(tmp_path / "empty.txt")
    (tmp_path / "latin.txt").write_bytes("caf\xe9 ok\nna\xefve".encode("latin-1"))
    with pytest.raises(DataError, match=r"not valid UTF-8: line 1, byte offset 3 .*iconv"):
        read_corpus(tmp_path / "latin.txt")
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="without .txt files"):
        read_corpus(tmp_path / "none")
    with pytest.raises(DataError, match="does not exist"):
        read_corpus(tmp_path / "missing.txt")
    with pytest.raises(DataError, match="too small.*context window of 64"):
        fit_lm(["a short corpus, far less than one window of 64 tokens"], LMSettings(tokenizer="char"), progress=False)
    with pytest.raises(ConfigError, match="tokenizer"):
        LMSettings(tokenizer="word")


# ----------------------------------------------------------------------------- training and the artifact


def test_fit_learns_far_below_theunigram_entropy(trained, corpus):
    lm, out = trained
    unigram = unigram_entropy(corpus[: int(0.9 * len(corpus))])
    assert 3.2 < unigram < 3.6
    assert lm.metrics["valid_nats_per_char"] < unigram - 0.8, lm.metrics  # measured: 2.33 vs 3.40
    assert math.isclose(lm.metrics["valid_bits_per_char"], lm.metrics["valid_nats_per_char"] / math.log(2))
    history = pd.read_csv(out / "history.csv")
    assert history["valid_nats_per_char"].iloc[-1] < history["valid_nats_per_char"].iloc[0]
    assert json.loads((out / "metrics.json").read_text())["valid_nats_per_char"] == lm.metrics["valid_nats_per_char"]
    assert "Samples" in (out / "report.html").read_text(encoding="utf-8")


def test_artifact_keeps_the_tokenizer_and_reproduces_the_model(trained, corpus):
    lm, out = trained
    meta = json.loads((out / "deepfit.json").read_text())
    assert meta["kind"] == "lm" and meta["model"]["name"] == "gpt" and meta["tokenizer"]["kind"] == "bpe"
    again = load(out)
    assert isinstance(again, LMPredictor)
    sample = corpus[1000:1400]
    assert again.tokenizer.encode(sample) == lm.tokenizer.encode(sample)
    assert again.tokenizer.decode(again.tokenizer.encode(sample)) == sample
    assert again.tokenizer.vocab_size == lm.tokenizer.vocab_size == again.model.vocab_size
    assert again.generate("I will", max_tokens=40, seed=3) == lm.generate("I will", max_tokens=40, seed=3)
    scored = again.evaluate([corpus[-5000:]])
    assert scored["nats_per_char"] < 3.0 and scored["unknown_chars"] == 0
    with pytest.raises(DataError, match="deepfit generate"):
        again.predict_frame(out / "deepfit.json")


def test_generate_options_and_bad_arguments(trained):
    lm, _ = trained
    greedy = lm.generate("Thank", max_tokens=20, temperature=0)
    assert greedy == lm.generate("Thank", max_tokens=20, temperature=0) and len(greedy) >= 20  # >= 1 char a token
    assert lm.generate("Thank", max_tokens=30, top_k=5, seed=1) == lm.generate("Thank", max_tokens=30, top_k=5, seed=1)
    assert len(lm.generate("", max_tokens=25, top_p=0.9, seed=0)) >= 25
    # Past the context window (32 tokens): the window slides and generation goes on.
    assert len(lm.generate("a" * 100, max_tokens=3 * lm.context, temperature=0.5, seed=0)) >= 3 * lm.context
    assert lm.generate("x", max_tokens=0) == ""
    for bad in ({"max_tokens": -1}, {"temperature": -0.5}, {"top_k": 0}, {"top_p": 1.5}):
        with pytest.raises(ConfigError):
            lm.generate("a", **bad)


def test_bpe_model_reads_any_prompt(trained):
    lm, _ = trained
    assert lm.tokenizer.kind == "bpe" and lm.info["chars_per_token"] > 1.5
    ids = encode_text(lm.tokenizer, "héllo ☃\nworld\n")
    assert lm.tokenizer.decode(ids.tolist()) == "héllo ☃\nworld\n"
    assert isinstance(lm.generate("snow ☃ man", max_tokens=10, seed=0), str)


def test_char_model_refuses_unseen_prompt_characters(char_lm, corpus):
    assert char_lm.tokenizer.kind == "char"
    text = corpus[2000:2300]
    assert char_lm.tokenizer.decode(encode_text(char_lm.tokenizer, text).tolist()) == text
    with pytest.raises(DataError, match=r"never saw in training: '☃'.*tokenizer='bpe'"):
        char_lm.generate("snow ☃ man")
    scored = char_lm.evaluate(["snow ☃ man"])
    assert scored["unknown_chars"] == 1


# ----------------------------------------------------------------------------- command line


def test_cli_train_then_generate(tmp_path, corpus, capsys):
    data = tmp_path / "corpus.txt"
    data.write_text(corpus[:40_000], encoding="utf-8")
    out = tmp_path / "runs" / "lm"
    assert main(["train", str(data), "--task", "lm", "--out", str(out), "--time-limit", "4", "--quiet"]) == 0
    assert "valid_nats_per_char=" in capsys.readouterr().out
    assert main(["generate", str(out), "--prompt", "Hello", "--max-tokens", "12", "--seed", "0"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("Hello") and len(first) > 6
    assert main(["generate", str(out), "--prompt", "Hello", "--max-tokens", "12", "--seed", "0"]) == 0
    assert capsys.readouterr().out == first
    assert main(["evaluate", str(out), str(data)]) == 0
    assert "nats_per_char" in capsys.readouterr().out
    assert main(["predict", str(out), str(data)]) == 1
    assert "deepfit generate" in capsys.readouterr().err
    assert main(["generate", str(out), "--max-tokens", "-3"]) == 1
    assert "max_tokens" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\xfe broken")
    assert main(["train", str(bad), "--task", "lm", "--out", str(tmp_path / "x"), "--quiet"]) == 1
    assert "line 2" in capsys.readouterr().err and not (tmp_path / "x.incomplete").exists()


def test_exact_resume_gives_the_same_weights(tmp_path, corpus, monkeypatch):
    """A run killed mid-way and resumed ends with the weights of an uninterrupted run."""
    import deepfit.tasks.lm.task as lm_module

    s = LMSettings(tokenizer="char", steps=40, **{**TINY, "eval_every": 20})
    text = [corpus[:20_000]]
    full = fit_lm(text, s, out=tmp_path / "full", progress=False)
    calls = {"n": 0}
    real_loss = lm_module.lm_loss

    def dying_loss(output, target):  # a kill during the second epoch (after epoch 1's checkpoint)
        calls["n"] += 1
        if calls["n"] == 30:
            raise KeyboardInterrupt
        return real_loss(output, target)

    monkeypatch.setattr(lm_module, "lm_loss", dying_loss)
    with pytest.raises(KeyboardInterrupt):
        fit_lm(text, s, out=tmp_path / "part", progress=False)
    monkeypatch.setattr(lm_module, "lm_loss", real_loss)
    assert (tmp_path / "part.incomplete" / "last.ckpt").exists() and not (tmp_path / "part").exists()
    again = fit_lm(text, out=tmp_path / "part", resume=True, progress=False)  # settings come from run.json
    assert again.info["steps"] == 40
    for (k, a), b in zip(full.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_time_limit_ends_the_run_with_the_learning_rate_decayed(corpus):
    lm = fit_lm([corpus[:30_000]], LMSettings(tokenizer="char", time_limit=4.0, warmup=5,
                                              **{**TINY, "eval_every": 10}), progress=False)
    # The budget covers reading, tokenizing and training (the final scoring comes after it).
    assert lm.info["stopped_by_time_limit"] and lm.info["tokenize_seconds"] + lm.info["train_seconds"] < 4.0 + 1.5
    assert lm.info["steps"] > 20  # time, not the (unbounded) step count, ended it


def test_time_cosine_follows_elapsed_time():
    from deepfit.engine.schedules import TimeCosine

    clock = {"now": 0.0}
    schedule = TimeCosine(1e-2, 10, 0.1, clock=lambda: clock["now"] / 100.0)  # a 100 s budget
    lrs = []
    for step, now in [(0, 0.0), (9, 1.0), (20, 2.0), (500, 50.0), (900, 99.0), (901, 150.0)]:
        clock["now"] = now
        lrs.append(schedule.lr(step, 10**6))
    assert lrs[0] < lrs[1] < 1e-2  # warm-up by steps
    assert lrs[2] == pytest.approx(1e-2 * (0.1 + 0.9 * (1 + math.cos(math.pi * 0.02)) / 2))
    assert lrs[3] == pytest.approx(1e-2 * 0.55)  # half the budget spent: half-way down the cosine
    assert lrs[4] > lrs[5] == pytest.approx(1e-3)  # budget spent: the final rate


def test_window_batches_give_each_rank_its_own_share_of_the_global_batch():
    from deepfit.data.corpus import WindowBatches

    tokens = torch.arange(1000)
    one = list(WindowBatches(tokens, context=8, batch_size=6, steps=3, seed=1).iterate(0))
    ranks = [list(WindowBatches(tokens, context=8, batch_size=3, steps=3, seed=1, rank=r, world_size=2).iterate(0))
             for r in (0, 1)]
    for i, (x, y) in enumerate(one):
        a, b = ranks[0][i], ranks[1][i]
        assert torch.equal(torch.cat([a[0], b[0]]), x) and torch.equal(torch.cat([a[1], b[1]]), y)
        assert not torch.equal(a[0], b[0])
