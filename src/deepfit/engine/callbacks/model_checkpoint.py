"""Write ``last.ckpt`` (each epoch end and every N steps) and ``best.ckpt`` into a run directory.

Writes are atomic and never happen with non-finite weights or loss: the learner checks first
and raises :class:`~deepfit.errors.NonFiniteLossError` instead, so the last good checkpoint
survives a divergence.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepfit.engine.callbacks.base import Callback
from deepfit.engine.callbacks.monitor import is_better, metric_mode, resolve_mode
from deepfit.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from deepfit.engine.learner import Learner

__all__ = ["ModelCheckpoint"]


class ModelCheckpoint(Callback):
    """Checkpoint the run for exact resume, and keep the best epoch.

    Args:
        directory: the run directory.
        every_n_steps: also write ``last.ckpt`` every this many optimizer steps (mid-epoch).
        monitor: what decides ``best.ckpt`` (needs validation data for ``valid_*``).
        mode: ``"min"``, ``"max"`` or ``"auto"`` (as in :class:`EarlyStopping`: from the metric, else the name).
    """

    order = 80  # after EarlyStopping, so its state in the checkpoint is current

    def __init__(
        self,
        directory: str | Path,
        *,
        every_n_steps: int | None = None,
        monitor: str = "valid_loss",
        mode: str = "auto",
        save_best: bool = True,
    ) -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ConfigError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.directory = Path(directory)
        self.every_n_steps = every_n_steps
        self.monitor = monitor
        self.mode = resolve_mode(monitor, mode)  # refined from the learner's metrics at fit start
        self._auto = mode == "auto"
        self.save_best = save_best
        self.best: float | None = None

    @property
    def last_path(self) -> Path:
        return self.directory / "last.ckpt"

    @property
    def best_path(self) -> Path:
        return self.directory / "best.ckpt"

    def on_fit_start(self, learner: Learner) -> None:
        if self._auto:
            self.mode = metric_mode(self.monitor, learner.metrics)

    def on_batch_end(self, learner: Learner) -> None:
        if self.every_n_steps and learner.step % self.every_n_steps == 0 and learner.batch_index + 1 < learner.num_batches:
            learner.save_checkpoint(self.last_path)

    def on_epoch_end(self, learner: Learner) -> None:
        row = learner.history[-1]
        if self.save_best and self.monitor in row and is_better(float(row[self.monitor]), self.best, self.mode):
            self.best = float(row[self.monitor])
            learner.save_checkpoint(self.best_path)
        learner.save_checkpoint(self.last_path)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
