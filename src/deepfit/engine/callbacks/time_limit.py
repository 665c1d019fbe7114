"""Stop training when a wall-clock budget is spent."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from deepfit.engine.callbacks.base import Callback
from deepfit.errors import CancelFit, ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from deepfit.engine.learner import Learner

__all__ = ["TimeLimit"]


class TimeLimit(Callback):
    """End ``fit`` after ``seconds`` of training (checked after every step: one clock read).

    A run stopped by its time budget is not bit-for-bit reproducible (where it stops depends on
    the machine's speed); everything before the stop is.
    """

    order = 40  # before EarlyStopping, so the best weights are still restored at fit end

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ConfigError(f"time limit must be > 0 seconds, got {seconds}")
        self.seconds = seconds
        self.spent_before = 0.0
        self._t0 = 0.0
        self.stopped = False

    def on_fit_start(self, learner: Learner) -> None:
        self._t0 = time.monotonic()

    def elapsed(self) -> float:
        return self.spent_before + time.monotonic() - self._t0

    def on_batch_end(self, learner: Learner) -> None:
        if self.elapsed() > self.seconds:
            self.stopped = True
            raise CancelFit(f"time limit of {self.seconds:g}s reached")

    def state_dict(self) -> dict[str, Any]:
        return {"spent": self.elapsed()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.spent_before = float(state["spent"])
