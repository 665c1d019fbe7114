"""Chapter 6 — Sequence models: a character-level GPT on 2.2 million characters of tweets; what
"nats per character" measures; how temperature and top-p trade sense for variety."""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["run"]


def _unigram_nats(train: str, valid: str) -> float:
    """Cross-entropy (nats per character) of a model that knows only each character's frequency."""
    counts = Counter(train)
    total, vocab = sum(counts.values()), len(counts) + 1
    return -sum(math.log((counts.get(c, 0) + 1) / (total + vocab)) for c in valid) / len(valid)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def run(out_dir: str | Path, quick: bool = False) -> dict[str, Any]:
    import csv
    import shutil

    from deepfit.datasets import tweets_corpus
    from deepfit.learn._common import pyplot, save, table
    from deepfit.tasks.lm import LMSettings, fit_lm

    out_dir = Path(out_dir)
    lines = tweets_corpus().splitlines()
    if quick:
        lines = lines[:3000]
    cut = int(0.9 * len("\n".join(lines)))
    text = "\n".join(lines) + "\n"
    train_text, valid_text = text[:cut], text[cut:]
    print(f"tweets: {len(text):,} characters, {len(set(text))} distinct; the first 90% train, the last 10% validate")
    uniform = math.log(len(set(train_text)))
    unigram = _unigram_nats(train_text, valid_text)
    print(f"baseline 1, every character equally likely: ln({len(set(train_text))}) = {uniform:.3f} nats/char")
    print(f"baseline 2, each character's frequency alone: {unigram:.3f} nats/char")

    settings = LMSettings(tokenizer="char", steps=100, eval_every=50, valid_windows=16) if quick else \
        LMSettings(tokenizer="char", time_limit=50, eval_every=100)
    shutil.rmtree(out_dir / "runs" / "lm", ignore_errors=True)  # a run directory is created afresh
    lm = fit_lm(lines, settings, out=out_dir / "runs" / "lm", progress=False)
    nats = float(lm.metrics["valid_nats_per_char"])
    print(f"character GPT ({sum(p.numel() for p in lm.model.parameters()):,} parameters): {nats:.3f} nats/char "
          f"= {nats / math.log(2):.3f} bits/char; perplexity e^{nats:.2f} = {math.exp(nats):.1f} "
          f"(as unsure as a fair choice among {math.exp(nats):.1f} characters)")

    # Sampling: the same model, the same prompt, different temperatures and a top-p cut.
    known = set(_words(train_text))
    rows, samples = [], {}
    n_chars = 100 if quick else 600
    for temperature, top_p in ((0.0, None), (0.5, None), (0.8, None), (1.0, None), (1.0, 0.9), (1.5, None)):
        name = "greedy" if temperature == 0 else f"T={temperature}" + (f", top-p {top_p}" if top_p else "")
        sample = lm.generate("I will", max_tokens=n_chars, temperature=temperature, top_p=top_p, seed=0)
        words = _words(sample)
        rows.append({"sampling": name, "words": len(words),
                     "known words": sum(w in known for w in words) / max(len(words), 1),
                     "distinct words": len(set(words)) / max(len(words), 1)})
        samples[name] = sample
    print()
    table(rows)
    print()
    for name, sample in samples.items():
        shown = ("I will" + sample[:110]).replace("\n", " | ")  # a | marks the end of a tweet
        print(f"{name:>14s}: {shown}")

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    history = out_dir / "runs" / "lm" / "history.csv"
    if history.exists():
        with open(history, newline="") as f:
            hist = list(csv.DictReader(f))
        key = next((k for k in hist[0] if "nats" in k), None) if hist else None
        if key:
            ax1.plot([int(h["epoch"]) * settings.eval_every for h in hist], [float(h[key]) for h in hist],
                     marker="o", label="character GPT")
    ax1.axhline(uniform, color="grey", linestyle=":", label="uniform guess")
    ax1.axhline(unigram, color="tab:red", linestyle="--", label="character frequencies")
    ax1.set(xlabel="training step", ylabel="validation nats per character", title="Learning to predict the next character")
    ax1.legend(fontsize=8)
    xs = range(len(rows))
    ax2.plot(xs, [r["known words"] for r in rows], marker="o", label="share of words seen in training")
    ax2.plot(xs, [r["distinct words"] for r in rows], marker="s", label="share of distinct words")
    ax2.set_xticks(list(xs), [r["sampling"].replace(", ", "\n") for r in rows], fontsize=8)
    ax2.set(ylabel="share", title="Temperature: sense against variety", ylim=(0, 1.05))
    ax2.legend(fontsize=8)
    save(fig, out_dir, "sequence.png")
    return {"uniform": uniform, "unigram": unigram, "nats_per_char": nats,
            "sampling": {r["sampling"]: {"known": r["known words"], "distinct": r["distinct words"]} for r in rows}}
