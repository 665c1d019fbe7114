"""Language models: a text corpus in, a GPT that continues text out (``deepfit train --task lm``).

The path: read the corpus (a UTF-8 text file, a folder of ``.txt`` files, a text column of a
table, or a list of strings) → the first 90% of its characters train, the last 10% validate →
train a tokenizer on the training part (byte-level BPE by default) → train a GPT
(``deepfit.models.gpt``) on random windows of the token stream with AdamW, warm-up + cosine
decay and gradient clipping, within an optional time budget → score the whole validation part
→ write the artifact, ``metrics.json``, ``history.csv`` and ``report.html`` (with samples).

Validation loss is reported in **nats per character** (and bits per character): the summed
next-token loss divided by the number of characters scored, so models with different
tokenizers compare fairly (a BPE token covering 2.4 characters is not "easier" than one).

Time budget: with ``time_limit`` the budget covers reading, tokenizing and training; the
learning-rate schedule then follows the elapsed time (warm-up by steps, cosine decay by
``max(step / steps, elapsed / budget)``), so the rate has decayed when the budget is spent.
Without it the run takes ``steps`` optimizer steps, and a resumed run ends with the very weights
an uninterrupted run would have (``--resume``). Under ``torchrun`` each rank trains on its own
share of every global batch (DDP) and rank 0 writes the run directory.

Generation (:meth:`LMPredictor.generate`) reads the prompt as the start of a document (after
a line break), runs it once and then extends a key/value cache one token at a time. Prompts
longer than the context window keep their last ``context`` tokens; when the generated text
fills the window, the last half of it is kept and the cache rebuilt from it, so any
``max_tokens`` works. A character-level model refuses prompts with characters it never saw.

Example:
    >>> from deepfit.tasks.lm import LMSettings, fit_lm
    >>> lm = fit_lm(["the cat sat on the mat"] * 300, LMSettings(steps=50), progress=False)  # doctest: +SKIP
    >>> lm.generate("the c", max_tokens=20, temperature=0)                                    # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepfit.data.corpus import WindowBatches, corpus_lines, encode_text, read_corpus, valid_windows
from deepfit.errors import ConfigError, DataError
from deepfit.tasks.base import BasePredictor, Task
from deepfit.tasks.lm.predictor import LMPredictor
from deepfit.tasks.lm.report import write_lm_report
from deepfit.tasks.lm.settings import LMSettings
from deepfit.tasks.runner import Run

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from deepfit.features.tokenizer import Tokenizer

__all__ = ["LMTask", "fit_lm", "lm_loss", "nats_metric", "unigram_entropy", "generate_cli", "demo"]


# ----------------------------------------------------------------------------- training pieces


def lm_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    return F.cross_entropy(output.flatten(0, 1).float(), target.flatten())  # mean nats per token


def nats_metric() -> type:
    """The LM's validation metric class (defined lazily: the metrics import torch)."""
    from deepfit.metrics import Metric

    class NatsPerChar(Metric):
        """Validation loss per character: nats/token x tokens/char of the validation text."""

        name = "nats_per_char"
        higher_is_better = False

        def __init__(self, tokens_per_char: float) -> None:
            super().__init__()
            self.tokens_per_char = tokens_per_char

        def _update(self, output: torch.Tensor, target: torch.Tensor) -> None:
            import torch.nn.functional as F

            self._add("nll", F.cross_entropy(output.flatten(0, 1), target.flatten(), reduction="sum"))
            self._add("n", target.new_tensor(target.numel()))

        def compute(self) -> float:
            return float(self.state["nll"] / self.state["n"]) * self.tokens_per_char

    return NatsPerChar


def unigram_entropy(text: str) -> float:
    """Entropy (nats/char) of the character frequencies: what a model without context reaches."""
    from collections import Counter

    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log(c / n) for c in counts.values())


# ----------------------------------------------------------------------------- the task


class LMTask(Task):
    """Train a GPT on a corpus (see the module docstring); runs under torchrun."""

    kind = "lm"
    Settings = LMSettings
    Predictor = LMPredictor
    distributed = True
    describe = "a text corpus (a .txt file, a folder of .txt files, or a table's text column) with task='lm'"

    @classmethod
    def accepts(cls, data: Any, hints: dict[str, Any]) -> bool:
        return hints.get("task") == "lm"

    @classmethod
    def settings_from_cli(cls, args: argparse.Namespace, given: dict[str, Any]) -> dict[str, Any]:
        if "epochs" in given:
            raise ConfigError("--epochs does not apply to --task lm; use --time-limit S (or LMSettings(steps=...))")
        other = sorted(set(given) - {"task", "target", "time_limit", "seed", "batch_size", "lr", "checkpoint_every"})
        if other:
            raise ConfigError(f"--{other[0].replace('_', '-')} does not apply to --task lm")
        chosen = {k: v for k, v in given.items() if k not in ("task", "target")}
        if "target" in given:
            chosen["text_column"] = given["target"]  # a table's text column
        return chosen

    @staticmethod
    def default_out(data: Any) -> str:
        return f"runs/{Path(str(data)).stem or 'lm'}"

    def identity(self, data: Any) -> str | None:
        return None  # the corpus text is fingerprinted once read (see train)

    @staticmethod
    def summary_line(predictor: BasePredictor) -> str:
        m = predictor.metrics
        return (f"valid_nats_per_char={m['valid_nats_per_char']:.4f} valid_bits_per_char={m['valid_bits_per_char']:.4f}"
                "  (try: deepfit generate RUN --prompt ...)")

    def train(self, data: Any, run: Run, *, test: Any = None) -> BasePredictor:
        from deepfit.engine import distributed

        if test is not None:
            raise ConfigError("a language model validates on the last part of its corpus; drop test=")
        s = self.settings
        ddp = distributed.setup()  # under torchrun every rank trains on its own windows of each batch
        text, source = read_corpus(data, text_column=s.text_column)
        cut = int(len(text) * (1 - s.valid_size))
        train_text, valid_text = text[:cut], text[cut:]
        if not train_text.strip():
            raise DataError(f"{source}: the training part (first {1 - s.valid_size:.0%}) holds no text")
        t0 = time.perf_counter()
        tok = self._tokenizer(train_text, run)
        train_ids, valid_ids = encode_text(tok, train_text), encode_text(tok, valid_text)
        tokenize_s = time.perf_counter() - t0
        self._check_sizes(source, train_text, valid_text, train_ids, valid_ids)
        run.start(s, data=source, data_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                  plan={"tokenizer": tok.state_dict()})
        predictor, learner, history, train_s, limit = self._fit(tok, train_ids, valid_ids, len(valid_text), run,
                                                                rank=ddp.rank, world_size=ddp.world_size)
        t_eval = time.perf_counter()
        nats = predictor.score_tokens(valid_ids)
        predictor.metrics = {"valid_nats_per_char": nats / len(valid_text),
                             "valid_bits_per_char": nats / len(valid_text) / math.log(2),
                             "valid_nats_per_token": nats / (len(valid_ids) - 1)}
        predictor.info = {
            "source": source, "chars": len(text), "train_chars": len(train_text), "valid_chars": len(valid_text),
            "train_tokens": len(train_ids), "valid_tokens": len(valid_ids),
            "chars_per_token": round(len(train_text) / len(train_ids), 4), "tokenizer": tok.kind,
            "vocab_size": tok.vocab_size, "parameters": predictor.model.num_parameters(), "steps": learner.step,
            "stopped_by_time_limit": bool(limit and limit.stopped), "tokenize_seconds": round(tokenize_s, 2),
            "train_seconds": round(train_s, 2), "eval_seconds": round(time.perf_counter() - t_eval, 2),
            "fit_seconds": round(run.elapsed(), 2), "compiled": bool(learner.compiled),
            "unigram_nats_per_char": round(unigram_entropy(train_text), 4),
        }
        run.report = lambda path, p: write_lm_report(path, p, s, history)
        return predictor

    def _tokenizer(self, train_text: str, run: Run) -> Tokenizer:
        """The stored tokenizer when resuming, else one trained on the training text."""
        from deepfit.features.tokenizer import Tokenizer

        if run.resuming and "tokenizer" in run.plan:
            return Tokenizer.from_state(run.plan["tokenizer"])
        return Tokenizer.train(corpus_lines(train_text), kind=self.settings.tokenizer, vocab_size=self.settings.vocab_size)

    def _check_sizes(self, source: str, train_text: str, valid_text: str, train_ids: torch.Tensor,
                     valid_ids: torch.Tensor) -> None:
        s, T = self.settings, self.settings.context
        if len(train_ids) < T + 1:
            raise DataError(
                f"{source} is too small: its training part has {len(train_ids)} tokens ({len(train_text)} characters), "
                f"fewer than one context window of {T} tokens plus one. Give more text (roughly "
                f"{math.ceil((T + 1) * len(train_text) / max(len(train_ids), 1) / (1 - s.valid_size))}+ "
                f"characters), or lower the context (LMSettings(context=...))")
        if len(valid_ids) < 2:
            raise DataError(f"{source}: the validation part (last {s.valid_size:.0%}, {len(valid_text)} "
                            "characters) is shorter than 2 tokens; give more text")

    def _fit(self, tok: Tokenizer, train_ids: torch.Tensor, valid_ids: torch.Tensor, valid_chars: int, run: Run,
             *, rank: int, world_size: int) -> tuple[LMPredictor, Any, list[dict], float, Any]:
        """Train the GPT; returns (predictor, learner, history, train seconds, the TimeLimit or None)."""
        import torch

        from deepfit.engine.callbacks import CSVLogger, TimeLimit
        from deepfit.engine.learner import Learner
        from deepfit.engine.rng import seed_everything
        from deepfit.engine.schedules import CosineWarmup, TimeCosine
        from deepfit.models.gpt import GPT

        s, T = self.settings, self.settings.context
        seed_everything(s.seed)
        model = GPT(tok.vocab_size, T, dim=s.dim, layers=s.layers, heads=s.heads, norm=s.norm, mlp=s.mlp,
                    dropout=s.dropout)
        steps_per_epoch = min(s.eval_every, s.max_steps)
        epochs = math.ceil(s.max_steps / steps_per_epoch)
        train_loader = WindowBatches(train_ids, context=T, batch_size=s.batch_size, steps=steps_per_epoch,
                                     seed=s.seed, rank=rank, world_size=world_size)
        callbacks: list[Any] = []
        # CosineWarmup reads warmup >= 1 as a step count (0 = none).
        schedule: Any = CosineWarmup(s.lr, warmup=float(s.warmup), final_frac=s.final_lr_frac)
        limit = None
        if s.time_limit:
            limit = TimeLimit(max(s.time_limit - run.elapsed(), 0.05 * s.time_limit))
            callbacks.append(limit)
            schedule = TimeCosine(s.lr, s.warmup, s.final_lr_frac, clock=lambda: limit.elapsed() / limit.seconds)
        if run.work is not None:
            callbacks.append(CSVLogger(run.work / "history.csv"))

        def adamw(groups: list[dict]) -> torch.optim.Optimizer:
            return torch.optim.AdamW(groups, lr=s.lr, betas=(0.9, s.beta2), fused=True)

        tokens_per_char = (len(valid_ids) - 1) / max(valid_chars, 1)
        learner = Learner(
            model, train_loader, valid_windows(valid_ids, T, s.valid_windows), loss=lambda o, y: lm_loss(o, y),
            metrics=[nats_metric()(tokens_per_char)], optimizer=adamw, lr=s.lr, weight_decay=s.weight_decay,
            grad_clip=s.grad_clip, batch_size=s.batch_size, valid_batch_size=64, compile=s.compile, seed=s.seed,
            progress=self.progress, out_dir=run.work, checkpoint_every=s.checkpoint_every, callbacks=callbacks,
        )
        t_train = time.perf_counter()
        history = learner.fit(epochs, schedule=schedule, resume=run.resume_from())
        train_s = time.perf_counter() - t_train
        model.eval()
        return LMPredictor(model, tok), learner, history, train_s, limit


def fit_lm(data: Any, settings: LMSettings | None = None, *, out: str | os.PathLike | None = None,
           resume: bool = False, progress: bool = True) -> LMPredictor:
    """Train a GPT on a corpus; returns an :class:`LMPredictor` (see the module docstring).

    Args:
        data: the corpus (see :func:`~deepfit.data.corpus.read_corpus`).
        settings: an :class:`LMSettings` (default: the tuned defaults).
        out: run directory, built in ``<out>.incomplete/`` and renamed when complete.
        resume: continue the interrupted run in ``out`` (same settings, same corpus).
        progress: print progress.

    Example:
        >>> lm = fit_lm("corpus.txt", LMSettings(time_limit=60), out="runs/lm")   # doctest: +SKIP
        >>> lm.metrics["valid_bits_per_char"]                                    # doctest: +SKIP
    """
    from deepfit.tasks.runner import fit

    return fit("lm", data, settings, out=out, resume=resume, progress=progress)  # type: ignore[return-value]


# ----------------------------------------------------------------------------- CLI and demo


def generate_cli(args: Any) -> int:
    """``deepfit generate MODEL --prompt ...``: prints the prompt and its continuation."""
    import sys

    from deepfit.tasks import load

    predictor = load(args.model)
    if not isinstance(predictor, LMPredictor):
        raise ConfigError(f"{args.model} is a {predictor.task} model, not a language model; "
                          "`deepfit generate` needs a model trained with --task lm")
    text = predictor.generate(args.prompt, max_tokens=args.max_tokens, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    sys.stdout.write(args.prompt + text + ("" if text.endswith("\n") else "\n"))
    return 0


def demo(out: str | os.PathLike, *, time_limit: float = 60.0, progress: bool = True) -> tuple[LMPredictor, str]:
    """The demo's language model: a short run on the tweets corpus and one generated sample.

    Trains with the default settings for ``time_limit`` seconds into ``out`` (replaced if it
    exists) and returns the predictor and a sample continuing "I will".

    Example:
        >>> lm, sample = demo("runs/demo/lm", time_limit=60)   # doctest: +SKIP
    """
    import shutil

    from deepfit.datasets import tweets_corpus

    out = Path(out)
    for old in (out, out.with_name(out.name + ".incomplete")):
        shutil.rmtree(old, ignore_errors=True)
    predictor = fit_lm(tweets_corpus().splitlines(), LMSettings(time_limit=time_limit), out=out, progress=progress)
    return predictor, "I will" + predictor.generate("I will", max_tokens=60, temperature=0.8, seed=0)
