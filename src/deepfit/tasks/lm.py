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

import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepfit.data.corpus import corpus_lines, encode_text, read_corpus
from deepfit.errors import ConfigError, DataError
from deepfit.tasks.lm_predictor import LMPredictor, sample_tokens

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["LMSettings", "fit_lm", "read_corpus", "LMPredictor", "sample_tokens", "train_cli", "generate_cli",
           "demo"]

MAX_STEPS_WITH_TIME_LIMIT = 1_000_000  # with a time budget, time decides; this only bounds the schedule


@dataclass(frozen=True)
class LMSettings:
    """Everything that decides a language-model run (stored in ``run.json`` for ``--resume``).

    The defaults were tuned with ``bench/lm.py`` (BENCHMARKS.md section 5) on 2.2 M characters
    of tweets at one CPU thread: see docs/lm.md for the measurements behind them.
    """

    tokenizer: str = "bpe"  # "bpe" (byte-level, no unknown characters) or "char"
    vocab_size: int = 2048  # BPE only
    context: int = 64  # tokens per window
    dim: int = 96
    layers: int = 2
    heads: int = 3
    mlp: str = "relu2"
    norm: str = "rmsnorm"
    dropout: float = 0.0
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 50  # steps
    final_lr_frac: float = 0.1
    weight_decay: float = 0.1
    beta2: float = 0.99
    grad_clip: float = 1.0
    steps: int | None = None  # None: 2000, or unbounded (time decides) with a time_limit
    time_limit: float | None = None  # seconds for reading, tokenizing and training
    valid_fraction: float = 0.1
    eval_every: int = 250  # steps between validations (on up to valid_windows windows)
    valid_windows: int = 128
    seed: int = 0
    checkpoint_every: int | None = None
    text_column: str | None = None  # tables: the column holding the text
    compile: bool | str = False  # measured: 54 s to compile for <= 10% faster steps (see docs/lm.md)

    def __post_init__(self) -> None:
        from deepfit.features.tokenizer import KINDS

        if self.tokenizer not in ("bpe", "char"):
            raise ConfigError(f"tokenizer must be 'bpe' or 'char' for a language model, got {self.tokenizer!r}"
                              + (" (word tokens cannot spell unseen words)" if self.tokenizer in KINDS else ""))
        for name in ("vocab_size", "context", "dim", "layers", "heads", "batch_size", "eval_every", "valid_windows"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.context < 2:
            raise ConfigError(f"context must be >= 2 tokens, got {self.context}")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ConfigError(f"steps must be a positive integer or None, got {self.steps!r}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ConfigError(f"time_limit must be > 0 seconds, got {self.time_limit}")
        if not 0 < self.valid_fraction < 1:
            raise ConfigError(f"valid_fraction must be in (0, 1), got {self.valid_fraction}")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip <= 0 or not 0 < self.beta2 < 1:
            raise ConfigError(f"need lr > 0, weight_decay >= 0, grad_clip > 0 and 0 < beta2 < 1; got lr={self.lr}, "
                              f"weight_decay={self.weight_decay}, grad_clip={self.grad_clip}, beta2={self.beta2}")
        if not 0 <= self.final_lr_frac <= 1 or self.warmup < 0:
            raise ConfigError(f"need 0 <= final_lr_frac <= 1 and warmup >= 0, got {self.final_lr_frac}, {self.warmup}")
        # The model checks its own options (norm, mlp, dim % heads) with the same kind of error.
        from deepfit.models.gpt import MLPS, NORMS

        if self.norm not in NORMS or self.mlp not in MLPS or self.dim % self.heads:
            raise ConfigError(f"need norm in {NORMS}, mlp in {MLPS} and dim a multiple of heads; "
                              f"got {self.norm!r}, {self.mlp!r}, dim={self.dim}, heads={self.heads}")

    @property
    def max_steps(self) -> int:
        if self.steps is not None:
            return self.steps
        return MAX_STEPS_WITH_TIME_LIMIT if self.time_limit else 2000

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LMSettings:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# ----------------------------------------------------------------------------- training pieces


def _mix(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 4_242) % (2**63 - 1)


def _window_batches(tokens: torch.Tensor, *, context: int, batch_size: int, steps: int, seed: int,
                    rank: int = 0, world_size: int = 1) -> Any:
    """A loader of random windows: batch ``i`` of "epoch" ``e`` depends only on ``(seed, e, i)``."""
    import torch

    from deepfit.data.loader import BatchLoader

    class WindowBatches(BatchLoader):
        def __init__(self) -> None:
            self.batch_size = batch_size
            self.offsets = torch.arange(context + 1)

        def num_batches(self) -> int:
            return steps

        def num_samples(self) -> int:
            return steps * batch_size

        def iterate(self, epoch: int, start: int = 0):  # noqa: ANN202
            g = torch.Generator().manual_seed(_mix(seed, epoch))
            starts = torch.randint(0, len(tokens) - context, (steps, world_size * batch_size), generator=g)
            for i in range(start, steps):
                s = starts[i, rank * batch_size : (rank + 1) * batch_size]
                w = tokens[s[:, None] + self.offsets]  # (B, T+1)
                yield w[:, :-1], w[:, 1:]  # inputs (B, T), next tokens (B, T)

    return WindowBatches()


def _valid_windows(tokens: torch.Tensor, context: int, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``limit`` evenly spaced, non-overlapping windows of the validation tokens."""
    import torch

    T = min(context, len(tokens) - 1)
    count = (len(tokens) - 1) // T
    starts = torch.linspace(0, count - 1, min(limit, count)).round().long().unique() * T
    w = tokens[starts[:, None] + torch.arange(T + 1)]  # (N, T+1)
    return w[:, :-1].contiguous(), w[:, 1:].contiguous()


def _lm_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    return F.cross_entropy(output.flatten(0, 1).float(), target.flatten())  # mean nats per token


def _nats_metric() -> type:
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


# ----------------------------------------------------------------------------- fit


def fit_lm(data: Any, settings: LMSettings | None = None, *, out: str | os.PathLike | None = None,
           resume: bool = False, progress: bool = True) -> LMPredictor:
    """Train a GPT on a corpus; returns an :class:`LMPredictor` (see the module docstring).

    Args:
        data: the corpus (see :func:`read_corpus`).
        settings: an :class:`LMSettings` (default: the tuned defaults).
        out: run directory, built in ``<out>.incomplete/`` and renamed when complete.
        resume: continue the interrupted run in ``out`` (same settings, same corpus).
        progress: print progress.

    Example:
        >>> lm = fit_lm("corpus.txt", LMSettings(time_limit=60), out="runs/lm")   # doctest: +SKIP
        >>> lm.metrics["valid_bits_per_char"]                                    # doctest: +SKIP
    """
    import torch

    from deepfit.engine import distributed
    from deepfit.engine.callbacks import CSVLogger, TimeLimit
    from deepfit.engine.learner import Learner
    from deepfit.engine.rng import seed_everything
    from deepfit.engine.schedules import CosineWarmup, TimeCosine
    from deepfit.features.tokenizer import Tokenizer
    from deepfit.models.gpt import GPT
    from deepfit.rundir import RunDir

    t_start = time.perf_counter()
    settings = settings or LMSettings()
    # Under torchrun every rank trains on its own windows of each global batch; rank 0 writes the run.
    ddp = distributed.setup()
    run = RunDir(out) if out is not None else None
    stored_tok = None
    if run is not None and resume:
        stored = run.stored()
        if run.complete:
            return LMPredictor.load(run.final)
        settings = LMSettings.from_json(stored["settings"])
        stored_tok = stored.get("tokenizer")
    elif run is not None:
        run.check_new()
    elif resume:
        raise ConfigError("resume=True needs out= (the run directory to continue)")

    text, source = read_corpus(data, text_column=settings.text_column)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if run is not None and resume and stored.get("text_sha256") not in (None, digest):
        raise ConfigError(f"--resume: {source} is not the corpus the run in {run.work} started with")
    cut = int(len(text) * (1 - settings.valid_fraction))
    train_text, valid_text = text[:cut], text[cut:]
    if not train_text.strip():
        raise DataError(f"{source}: the training part (first {1 - settings.valid_fraction:.0%}) holds no text")

    t0 = time.perf_counter()
    if stored_tok is not None:
        tok = Tokenizer.from_state(stored_tok)
    else:
        tok = Tokenizer.train(corpus_lines(train_text), kind=settings.tokenizer, vocab_size=settings.vocab_size)
    train_ids, valid_ids = encode_text(tok, train_text), encode_text(tok, valid_text)
    tokenize_s = time.perf_counter() - t0
    T = settings.context
    if len(train_ids) < T + 1:
        raise DataError(
            f"{source} is too small: its training part has {len(train_ids)} tokens ({len(train_text)} characters), "
            f"fewer than one context window of {T} tokens plus one. Give more text (roughly "
            f"{math.ceil((T + 1) * len(train_text) / max(len(train_ids), 1) / (1 - settings.valid_fraction))}+ "
            f"characters), or lower the context (LMSettings(context=...))")
    if len(valid_ids) < 2:
        raise DataError(f"{source}: the validation part (last {settings.valid_fraction:.0%}, {len(valid_text)} "
                        "characters) is shorter than 2 tokens; give more text")

    distributed.barrier()  # every rank has checked `out` before rank 0 creates it
    if run is not None and not resume and ddp.is_main:  # inputs are checked: only now does the run folder appear
        run.start({"settings": settings.to_json(), "data": source, "text_sha256": digest,
                   "tokenizer": tok.state_dict()})
    seed_everything(settings.seed)
    model = GPT(tok.vocab_size, T, dim=settings.dim, layers=settings.layers, heads=settings.heads,
                norm=settings.norm, mlp=settings.mlp, dropout=settings.dropout)
    NatsPerChar = _nats_metric()
    valid_chars = len(valid_text)
    tokens_per_char = (len(valid_ids) - 1) / max(valid_chars, 1)
    steps_per_epoch = min(settings.eval_every, settings.max_steps)
    epochs = math.ceil(settings.max_steps / steps_per_epoch)
    train_loader = _window_batches(train_ids, context=T, batch_size=settings.batch_size, steps=steps_per_epoch,
                                   seed=settings.seed, rank=ddp.rank, world_size=ddp.world_size)
    callbacks: list[Any] = []
    # CosineWarmup reads warmup >= 1 as a step count (0 = none).
    schedule: Any = CosineWarmup(settings.lr, warmup=float(settings.warmup), final_frac=settings.final_lr_frac)
    time_limit = None
    if settings.time_limit:
        left = settings.time_limit - (time.perf_counter() - t_start)
        time_limit = TimeLimit(max(left, 0.05 * settings.time_limit))
        callbacks.append(time_limit)
        schedule = TimeCosine(settings.lr, settings.warmup, settings.final_lr_frac,
                              clock=lambda: time_limit.elapsed() / time_limit.seconds)
    if run is not None:
        callbacks.append(CSVLogger(run.work / "history.csv"))
    beta2 = settings.beta2

    def adamw(groups: list[dict]) -> torch.optim.Optimizer:
        return torch.optim.AdamW(groups, lr=settings.lr, betas=(0.9, beta2), fused=True)

    learner = Learner(
        model, train_loader, _valid_windows(valid_ids, T, settings.valid_windows), loss=_lm_loss,
        metrics=[NatsPerChar(tokens_per_char)], optimizer=adamw, lr=settings.lr,
        weight_decay=settings.weight_decay, grad_clip=settings.grad_clip, batch_size=settings.batch_size,
        valid_batch_size=64, compile=settings.compile, seed=settings.seed, progress=progress,
        out_dir=run.work if run is not None else None, checkpoint_every=settings.checkpoint_every,
        callbacks=callbacks,
    )
    last = run.work / "last.ckpt" if run is not None else None
    t_train = time.perf_counter()
    history = learner.fit(epochs, schedule=schedule,
                          resume=last if resume and last is not None and last.exists() else None)
    train_s = time.perf_counter() - t_train
    model.eval()

    predictor = LMPredictor(model, tok)
    t_eval = time.perf_counter()
    nats = predictor.score_tokens(valid_ids)
    unigram = _unigram_entropy(train_text)
    metrics = {"valid_nats_per_char": nats / valid_chars, "valid_bits_per_char": nats / valid_chars / math.log(2),
               "valid_nats_per_token": nats / (len(valid_ids) - 1)}
    predictor.metrics = metrics
    predictor.info = {
        "source": source, "chars": len(text), "train_chars": len(train_text), "valid_chars": valid_chars,
        "train_tokens": len(train_ids), "valid_tokens": len(valid_ids),
        "chars_per_token": round(len(train_text) / len(train_ids), 4), "tokenizer": tok.kind,
        "vocab_size": tok.vocab_size, "parameters": model.num_parameters(), "steps": learner.step,
        "stopped_by_time_limit": bool(time_limit and time_limit.stopped), "tokenize_seconds": round(tokenize_s, 2),
        "train_seconds": round(train_s, 2), "eval_seconds": round(time.perf_counter() - t_eval, 2),
        "fit_seconds": round(time.perf_counter() - t_start, 2), "compiled": bool(learner._runner.compiled),
        "unigram_nats_per_char": round(unigram, 4),
    }
    if run is not None and ddp.is_main:
        from deepfit.engine.checkpoint import atomic_write_bytes

        for name, blob in predictor.files().items():
            atomic_write_bytes(run.work / name, blob)
        run.write_json("metrics.json", metrics)
        _write_report(run.work / "report.html", predictor, settings, history)
        run.finish()
    return predictor


def _unigram_entropy(text: str) -> float:
    """Entropy (nats/char) of the character frequencies: what a model without context reaches."""
    from collections import Counter

    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log(c / n) for c in counts.values())


def _write_report(path: Path, predictor: LMPredictor, settings: LMSettings, history: list[dict]) -> None:
    import html

    from deepfit.report import write_report

    samples = [predictor.generate("", max_tokens=120, temperature=0.8, seed=s) for s in range(3)]
    body = "".join(f"<pre style='white-space:pre-wrap;border:1px solid #ddd;padding:6px'>{html.escape(s)}</pre>"
                   for s in samples)
    info = predictor.info
    summary = {"corpus": info["source"], "characters": info["chars"], "tokenizer": f"{info['tokenizer']} "
               f"({info['vocab_size']} ids, {info['chars_per_token']:.2f} chars/token)",
               "model": f"GPT {settings.layers}x{settings.dim}, {settings.heads} heads, context {settings.context}, "
                        f"{info['parameters']:,} parameters", "steps": info["steps"],
               "train seconds": info["train_seconds"], "unigram entropy (nats/char)": info["unigram_nats_per_char"]}
    write_report(path, title="deepfit: language model", summary=summary, metrics=predictor.metrics,
                 history=history, sections=[("Samples (temperature 0.8, seeds 0-2)", body)])


# ----------------------------------------------------------------------------- CLI and demo


def train_cli(args: Any) -> int:
    """``deepfit train DATA --task lm``: returns the exit code."""
    if getattr(args, "epochs", None) is not None:
        raise ConfigError("--epochs does not apply to --task lm; use --time-limit S (or LMSettings(steps=...))")
    out = args.out or f"runs/{Path(args.data).stem or 'lm'}"
    given = {"time_limit": args.time_limit, "seed": args.seed, "batch_size": args.batch_size, "lr": args.lr,
             "checkpoint_every": args.checkpoint_every, "text_column": getattr(args, "target", None)}
    given = {k: v for k, v in given.items() if v is not None}
    if args.resume and any(k != "text_column" for k in given):
        raise ConfigError("--resume continues with the run's stored settings; drop "
                          + ", ".join("--" + k.replace("_", "-") for k in given if k != "text_column"))
    predictor = fit_lm(args.data, LMSettings(**given), out=out, resume=args.resume, progress=not args.quiet)
    m = predictor.metrics
    print(f"valid_nats_per_char={m['valid_nats_per_char']:.4f} valid_bits_per_char={m['valid_bits_per_char']:.4f}")
    print(f"run directory: {out}  (report: {Path(out) / 'report.html'}; try: deepfit generate {out} --prompt ...)")
    return 0


def generate_cli(args: Any) -> int:
    """``deepfit generate MODEL --prompt ...``: prints the prompt and its continuation."""
    import sys

    from deepfit.predict import load

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
