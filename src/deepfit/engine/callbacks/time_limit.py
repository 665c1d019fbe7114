"""Stop training when a wall-clock budget is spent: the callback form of ``Learner(budget=...)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deepfit.engine.budget import Budget
from deepfit.engine.callbacks.base import Callback
from deepfit.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from deepfit.engine.learner import Learner

__all__ = ["TimeLimit"]


class TimeLimit(Callback):
    """End ``fit`` after ``seconds`` of training; a thin wrapper around a :class:`Budget`.

    ``Learner(model, data, budget=seconds)`` does the same without a callback. A TimeLimit
    hands its budget to the learner when the fit starts; from then on the learner checks it
    after every batch and stops after the batch that spends it, and the progress lines and
    the ``compile="auto"`` policy read it (see :class:`~deepfit.engine.budget.Budget`, also for
    how the ranks agree under ``torchrun``). ``seconds``, ``stopped`` and :meth:`elapsed` read
    the budget, so a schedule can use ``clock=lambda: limit.elapsed() / limit.seconds``.
    """

    order = 40  # its budget is in place before the callbacks that follow it start

    def __init__(self, seconds: float) -> None:
        self.budget = Budget(seconds)

    @property
    def seconds(self) -> float:
        return self.budget.seconds

    @property
    def stopped(self) -> bool:
        """True once the budget ended a fit."""
        return self.budget.stopped

    @property
    def spent_before(self) -> float:
        return self.budget.spent_before

    def elapsed(self) -> float:
        """Seconds of training so far (under torch.distributed: as agreed after the last batch)."""
        return self.budget.elapsed()

    def on_fit_start(self, learner: Learner) -> None:
        if learner.budget is None:
            learner.budget = self.budget
        elif learner.budget is not self.budget:
            raise ConfigError(
                f"this Learner has a time budget already ({learner.budget!r}) and was given "
                f"TimeLimit({self.seconds:g}) too; give it once: Learner(budget=...) or the TimeLimit callback"
            )

    def state_dict(self) -> dict[str, Any]:
        return self.budget.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.budget.load_state_dict(state)
