"""Settings of a language-model run (``deepfit train --task lm``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepfit.errors import ConfigError
from deepfit.tasks.settings import TaskSettings, nest, rename_key

__all__ = ["LMSettings", "MAX_STEPS_WITH_TIME_LIMIT"]

MAX_STEPS_WITH_TIME_LIMIT = 1_000_000  # with a time budget, time decides; this only bounds the schedule


def _v1_to_v2_valid_size(d: dict[str, Any]) -> dict[str, Any]:
    """Version 2 (the one-shape refactor): ``valid_fraction`` is called ``valid_size``, as in every task."""
    return rename_key(d, "valid_fraction", "valid_size")


# Version 3 stores the settings by group (tasks/settings.py, GROUP_DOCS; docs/settings.md).
GROUPS_V3: dict[str, tuple[str, ...]] = {
    "data": ("text_column",),
    "split": ("valid_size",),
    "schedule": ("time_limit", "steps", "warmup", "final_lr_frac", "eval_every", "valid_windows"),
    "optimizer": ("batch_size", "lr", "weight_decay", "beta2", "grad_clip"),
    "model": ("tokenizer", "vocab_size", "context", "dim", "layers", "heads", "mlp", "norm", "dropout"),
    "run": ("seed", "checkpoint_every", "compile"),
}

def _v2_to_v3_grouped(d: dict[str, Any]) -> dict[str, Any]:
    """Version 3 stores the same settings by group (``GROUPS_V3``); no value changes."""
    return nest(d, GROUPS_V3)

@dataclass(frozen=True)
class LMSettings(TaskSettings):
    """Everything that decides a language-model run (stored in ``run.json`` for ``--resume``).

    The defaults were tuned with ``bench/lm.py`` (BENCHMARKS.md section 5) on 2.2 M characters
    of tweets at one CPU thread: see docs/lm.md for the measurements behind them.
    """

    VERSION = 3
    MIGRATIONS = {1: _v1_to_v2_valid_size, 2: _v2_to_v3_grouped}
    GROUPS = GROUPS_V3

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
    valid_size: float = 0.1
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
        if not 0 < self.valid_size < 1:
            raise ConfigError(f"valid_size must be in (0, 1), got {self.valid_size}")
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
