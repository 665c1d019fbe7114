"""Stop when a monitored quantity stops improving; optionally restore the best weights."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from deepfit.engine.callbacks.base import Callback
from deepfit.engine.callbacks.monitor import is_better, metric_mode, resolve_mode
from deepfit.errors import CancelFit, ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from deepfit.engine.learner import Learner

__all__ = ["EarlyStopping", "is_better"]


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs.

    Args:
        monitor: a key of the epoch's history row, e.g. ``"valid_loss"`` or ``"valid_accuracy"``.
        patience: epochs without improvement before stopping.
        min_delta: the smallest change that counts as an improvement.
        mode: ``"min"``, ``"max"``, or ``"auto"``: from the metric's ``higher_is_better`` when the
            learner computes it (``valid_<metric name>``), else from the name (losses: min).
        restore_best: load the best epoch's weights when training ends.
    """

    order = 50

    def __init__(
        self,
        monitor: str = "valid_loss",
        *,
        patience: int = 5,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best: bool = True,
    ) -> None:
        if patience < 0:
            raise ConfigError(f"patience must be >= 0, got {patience}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.mode = resolve_mode(monitor, mode)  # refined from the learner's metrics at fit start
        self._auto = mode == "auto"
        self.restore_best = restore_best
        self.best: float | None = None
        self.best_epoch = -1
        self.wait = 0
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.stopped_epoch: int | None = None

    def on_fit_start(self, learner: Learner) -> None:
        if self._auto:
            self.mode = metric_mode(self.monitor, learner.metrics)
        if self.best is None:  # not resumed
            self.wait, self.best_epoch, self.best_weights = 0, -1, None

    def on_epoch_end(self, learner: Learner) -> None:
        row = learner.history[-1]
        if self.monitor not in row:
            raise ConfigError(
                f"EarlyStopping monitors {self.monitor!r}, which this run does not log; "
                f"available: {', '.join(k for k in row if k not in ('epoch', 'time'))}"
            )
        value = float(row[self.monitor])
        if is_better(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = value, row["epoch"], 0
            if self.restore_best:
                self.best_weights = {k: v.detach().clone() for k, v in learner.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait > self.patience or (math.isnan(value) and self.best is None):
            self.stopped_epoch = row["epoch"]
            raise CancelFit(f"{self.monitor} did not improve for {self.wait} epochs (best {self.best:.4g} at epoch {self.best_epoch})")

    def on_fit_end(self, learner: Learner) -> None:
        if self.restore_best and self.best_weights is not None:
            learner.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.wait = state["wait"]
        self.best_weights = state["best_weights"]
