"""A wall-clock training budget that the Learner, the compile policy and the progress lines ask.

Example:
    >>> from deepfit.engine.budget import Budget
    >>> budget = Budget(60)
    >>> budget.start()
    >>> budget.seconds_left() <= 60 and 0 <= budget.fraction() < 1
    True
    >>> budget.tick()  # after a training step: True once the budget is spent
    False

    Given to a Learner (as seconds or as a Budget), it ends ``fit`` after the batch that spends
    it; a schedule can take it as its clock (``TimeCosine(..., clock=learn.budget.fraction)``):

    >>> import torch
    >>> from torch import nn
    >>> from deepfit import Learner
    >>> X = torch.randn(64, 4); y = (X[:, 0] > 0).long()
    >>> learn = Learner(nn.Linear(4, 2), (X, y), budget=60, progress=False)
    >>> _ = learn.fit(2)
    >>> learn.budget.stopped, learn.budget.seconds_left() > 0
    (False, True)
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.distributed as dist

from deepfit.errors import ConfigError

__all__ = ["Budget"]


class Budget:
    """``seconds`` of training, counted from :meth:`start` (plus any time spent before a resume).

    The Learner starts the budget when a fit starts and calls :meth:`tick` after every batch;
    the fit ends after the batch that spends the budget. A run stopped by its budget is not
    bit-for-bit reproducible (where it stops depends on the machine's speed); everything before
    the stop is.

    Under ``torchrun`` (``start(distributed=True)``) the ranks agree on the budget (the smallest
    one given: each rank may have computed its own from what was left) and on the clock: each
    :meth:`tick` takes the largest of the ranks' elapsed times (one 8-byte all-reduce). So all
    ranks stop after the same batch (a rank that stopped alone would leave the others waiting in
    their next gradient all-reduce), and a schedule driven by :meth:`fraction` sets the same
    learning rate on every rank, keeping the replicas identical.

    Args:
        seconds: the budget, > 0.
    """

    def __init__(self, seconds: float) -> None:
        if not seconds > 0:
            raise ConfigError(f"time limit must be > 0 seconds, got {seconds}")
        self.seconds = seconds
        self.spent_before = 0.0  # restored from a checkpoint: time spent before the resume
        self.stopped = False  # set by the tick that found the budget spent
        self._t0 = time.monotonic()
        self._shared: float | None = None  # under torch.distributed: the ranks' agreed elapsed time

    def start(self, *, distributed: bool = False) -> None:
        """Start the clock (at ``spent_before``); with ``distributed``, agree with the other ranks."""
        self._shared = None
        if distributed:
            self.seconds = _agree(self.seconds, "MIN")
            self._shared = _agree(self.spent_before, "MAX")
        self._t0 = time.monotonic()

    def elapsed(self) -> float:
        """Seconds of training so far (under torch.distributed: as agreed at the last tick)."""
        return self._clock() if self._shared is None else self._shared

    def fraction(self) -> float:
        """The share of the budget spent: 0 at the start, 1 (or more) when spent."""
        return self.elapsed() / self.seconds

    def seconds_left(self) -> float:
        """Seconds until the budget is spent (0 once it is)."""
        return max(0.0, self.seconds - self.elapsed())

    @property
    def expired(self) -> bool:
        """True when the elapsed time exceeds the budget (read without a new tick)."""
        return self.elapsed() > self.seconds

    def tick(self) -> bool:
        """Read the clock after a step (and agree on it under torch.distributed); True once spent."""
        spent = self._clock()
        if self._shared is not None:
            spent = self._shared = _agree(spent, "MAX")
        if spent > self.seconds:
            self.stopped = True
        return spent > self.seconds

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the time spent, so a resumed run gets only what is left."""
        return {"spent": self.elapsed()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.spent_before = float(state["spent"])

    def _clock(self) -> float:
        return self.spent_before + time.monotonic() - self._t0

    def __repr__(self) -> str:
        return f"Budget({self.seconds:g})"


def _agree(value: float, op: str) -> float:
    """All ranks' ``op`` (``"MIN"`` or ``"MAX"``) of ``value``: one float64 all-reduce."""
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
    return float(t.item())
