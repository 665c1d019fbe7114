"""Progress reporting without a host sync per step.

On a terminal: one live line, refreshed at most every 0.5 s from the loss the learner last
read from the device. Elsewhere (CI, logs, pipes): one plain line per epoch.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from deepfit.engine.callbacks.base import Callback

if TYPE_CHECKING:  # pragma: no cover
    from deepfit.engine.learner import Learner

__all__ = ["ProgressBar", "ProgressLog", "format_metrics", "where"]


def format_metrics(row: dict) -> str:
    parts = []
    for key, value in row.items():
        if key in ("epoch",):
            continue
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}" if key != "time" else f"time {value:.1f}s")
        else:
            parts.append(f"{key} {value}")
    return "  ".join(parts)


def where(learner: Learner, epoch: int) -> str:
    """``epoch 3/20`` — or, when a time budget ends the run (its epoch count is only a cap, e.g. the
    language model's 4,000 validation intervals), ``epoch 3  step 750  12s/60s``; after the
    learner's ``progress_label`` when it has one (``model 2/4  epoch 3/20``)."""
    budget = learner.budget
    if budget is None:
        text = f"epoch {epoch}/{learner.epochs}"
    else:
        text = f"epoch {epoch}  step {learner.step}  {budget.elapsed():.0f}s/{budget.seconds:.0f}s"
    return f"{learner.progress_label}  {text}" if learner.progress_label else text


class ProgressLog(Callback):
    """One plain line per epoch (for logs and pipes)."""

    order = 90

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def on_epoch_end(self, learner: Learner) -> None:
        if learner.is_main and learner.history:
            stream = self.stream or sys.stdout
            row = learner.history[-1]
            print(f"{where(learner, row['epoch'])}  {format_metrics(row)}", file=stream, flush=True)


class ProgressBar(ProgressLog):
    """A live bar on a terminal, refreshed by time (0.5 s), plus the per-epoch line."""

    def __init__(self, stream: TextIO | None = None, refresh: float = 0.5) -> None:
        super().__init__(stream)
        self.refresh = refresh
        self._next = 0.0
        self._t0 = 0.0

    def on_epoch_start(self, learner: Learner) -> None:
        self._t0 = time.monotonic()
        self._next = self._t0 + self.refresh

    def on_batch_end(self, learner: Learner) -> None:
        now = time.monotonic()
        if now < self._next or not learner.is_main:
            return
        self._next = now + self.refresh
        done, total = learner.batch_index + 1, learner.num_batches
        width = 24
        filled = int(width * done / max(total, 1))
        rate = done / max(now - self._t0, 1e-9)
        eta = (total - done) / max(rate, 1e-9)
        loss = learner.running_loss
        loss_text = f"loss {loss:.4g}" if loss is not None else ""
        stream = self.stream or sys.stdout
        stream.write(
            f"\r{where(learner, learner.epoch + 1)} [{'#' * filled}{'.' * (width - filled)}] "
            f"{done}/{total} {rate:.0f} it/s eta {eta:.0f}s {loss_text}   "
        )
        stream.flush()

    def on_epoch_end(self, learner: Learner) -> None:
        if learner.is_main:
            (self.stream or sys.stdout).write("\r\033[K")
        super().on_epoch_end(learner)
