"""Log each epoch's values to TensorBoard (needs the ``tensorboard`` package: ``deepfit[tensorboard]``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepfit.engine.callbacks.base import Callback
from deepfit.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from deepfit.engine.learner import Learner

__all__ = ["TensorBoardLogger"]


class TensorBoardLogger(Callback):
    """Scalars per epoch under ``log_dir`` (rank 0 only)."""

    order = 86

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)
        self._writer: Any = None

    def on_fit_start(self, learner: Learner) -> None:
        if not learner.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ConfigError(
                "TensorBoardLogger needs the tensorboard package: pip install 'deepfit[tensorboard]'"
            ) from e
        self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def on_epoch_end(self, learner: Learner) -> None:
        if self._writer is None:
            return
        row = learner.history[-1]
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self._writer.add_scalar(key, value, global_step=row["epoch"])
        self._writer.flush()

    def on_fit_end(self, learner: Learner) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
