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

    Under ``torchrun`` the ranks agree on the budget (the smallest one given: each rank may have
    computed its own from what was left) and on the clock: after every step they take the
    largest of their elapsed times (one 8-byte all-reduce). So all stop after the same step (a
    rank that stopped alone would leave the others waiting in their next gradient all-reduce),
    and a schedule driven by :meth:`elapsed` (``TimeCosine``) sets the same learning rate on
    every rank, keeping the replicas identical.
    """

    order = 40  # before EarlyStopping, so the best weights are still restored at fit end

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ConfigError(f"time limit must be > 0 seconds, got {seconds}")
        self.seconds = seconds
        self.spent_before = 0.0
        self._t0 = 0.0
        self._shared: float | None = None  # under torch.distributed: the ranks' agreed elapsed time
        self.stopped = False

    def on_fit_start(self, learner: Learner) -> None:
        self._shared = None
        if learner.dist.enabled:
            self.seconds = self._agree(self.seconds, "MIN")
            self._shared = self._agree(self.spent_before, "MAX")
        self._t0 = time.monotonic()

    @staticmethod
    def _agree(value: float, op: str) -> float:
        import torch
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
        return float(t.item())

    def _clock(self) -> float:
        return self.spent_before + time.monotonic() - self._t0

    def elapsed(self) -> float:
        """Seconds of training so far (under torch.distributed: as agreed after the last step)."""
        return self._clock() if self._shared is None else self._shared

    def on_batch_end(self, learner: Learner) -> None:
        spent = self._clock()
        if self._shared is not None:
            spent = self._shared = self._agree(spent, "MAX")
        if spent > self.seconds:
            self.stopped = True
            raise CancelFit(f"time limit of {self.seconds:g}s reached")

    def state_dict(self) -> dict[str, Any]:
        return {"spent": self.elapsed()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.spent_before = float(state["spent"])
