"""Learning-rate schedules as pure functions of training progress.

A schedule maps the step number (0-based) and the total number of steps to a learning rate,
so the LR after a resume is exactly the LR of the uninterrupted run.

Example:
    >>> s = OneCycle(lr_max=1e-2)
    >>> round(s.lr(0, 100), 6), round(s.lr(25, 100), 6)
    (0.0004, 0.01)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from deepfit.errors import ConfigError

__all__ = ["Schedule", "Constant", "OneCycle", "CosineWarmup", "TimeCosine", "get_schedule"]


def _cos(start: float, end: float, frac: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * min(max(frac, 0.0), 1.0))) / 2


@dataclass(frozen=True)
class Schedule:
    """Base class: ``lr(step, total)`` and optionally ``beta1(step, total)``."""

    def lr(self, step: int, total: int) -> float:
        raise NotImplementedError

    def beta1(self, step: int, total: int) -> float | None:
        return None

    def to_dict(self) -> dict:
        return {"name": type(self).__name__, **asdict(self)}


@dataclass(frozen=True)
class Constant(Schedule):
    """The same learning rate throughout."""

    lr_value: float = 1e-3

    def lr(self, step: int, total: int) -> float:
        return self.lr_value


@dataclass(frozen=True)
class OneCycle(Schedule):
    """Leslie Smith's 1cycle as in fastai: cosine warm-up from ``lr_max/div`` to ``lr_max`` over
    ``pct_start`` of training, then cosine down to ``lr_max/(div*final_div)``; Adam's beta1
    cycles 0.95 → 0.85 → 0.95 in the opposite direction."""

    lr_max: float = 1e-3
    pct_start: float = 0.25
    div: float = 25.0
    final_div: float = 1e4
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95)

    def __post_init__(self) -> None:
        if not 0 <= self.pct_start < 1:
            raise ConfigError(f"pct_start must be in [0, 1), got {self.pct_start}")
        if self.lr_max <= 0:
            raise ConfigError(f"lr_max must be > 0, got {self.lr_max}")

    def lr(self, step: int, total: int) -> float:
        warm = self.pct_start * total
        start = self.lr_max / self.div
        if step < warm:
            return _cos(start, self.lr_max, step / warm)
        return _cos(self.lr_max, start / self.final_div, (step - warm) / max(total - warm, 1))

    def beta1(self, step: int, total: int) -> float:
        warm = self.pct_start * total
        if step < warm:
            return _cos(self.moms[0], self.moms[1], step / warm)
        return _cos(self.moms[1], self.moms[2], (step - warm) / max(total - warm, 1))


@dataclass(frozen=True)
class CosineWarmup(Schedule):
    """Linear warm-up over ``warmup`` of training (a fraction, or a step count if >= 1), then
    cosine decay from ``lr_max`` to ``lr_max * final_frac``."""

    lr_max: float = 1e-3
    warmup: float = 0.05
    final_frac: float = 0.01

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ConfigError(f"warmup must be >= 0, got {self.warmup}")

    def lr(self, step: int, total: int) -> float:
        warm = self.warmup if self.warmup >= 1 else self.warmup * total
        if step < warm:
            return self.lr_max * (step + 1) / (warm + 1)
        return _cos(self.lr_max, self.lr_max * self.final_frac, (step - warm) / max(total - warm, 1))


@dataclass(frozen=True)
class TimeCosine(Schedule):
    """For a time budget: linear warm-up over ``warmup`` steps, then cosine decay from ``lr_max``
    to ``lr_max * final_frac`` driven by the larger of step progress and ``clock()``, the
    fraction of the budget spent (e.g. ``lambda: limit.elapsed() / limit.seconds`` of a
    :class:`~deepfit.engine.callbacks.TimeLimit`). With ``hold`` > 0 the LR stays at ``lr_max``
    until that fraction of progress and decays over the rest (warm-up, stable, decay). The one
    schedule that is not a pure function of the step: a resumed run follows the clock it is given.

    Example:
        >>> s = TimeCosine(1e-2, warmup=10, final_frac=0.1, clock=lambda: 0.5)
        >>> round(s.lr(100, 10**6), 6)
        0.0055
    """

    lr_max: float = 1e-3
    warmup: int = 0
    final_frac: float = 0.1
    hold: float = 0.0
    clock: Callable[[], float] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ConfigError(f"warmup must be >= 0 steps, got {self.warmup}")
        if not 0 <= self.hold < 1:
            raise ConfigError(f"hold must be in [0, 1), got {self.hold}")

    def lr(self, step: int, total: int) -> float:
        if step < self.warmup:
            return self.lr_max * (step + 1) / (self.warmup + 1)
        spent = self.clock() if self.clock is not None else 0.0
        progress = max(step / max(total, 1), spent)
        return _cos(self.lr_max, self.lr_max * self.final_frac, (progress - self.hold) / (1 - self.hold))

    def to_dict(self) -> dict:
        return {"name": type(self).__name__, "lr_max": self.lr_max, "warmup": self.warmup,
                "final_frac": self.final_frac, "hold": self.hold}


def get_schedule(schedule: str | Schedule | None, lr: float) -> Schedule:
    """``"constant"`` (default), ``"one_cycle"``, ``"cosine"``, or a :class:`Schedule`."""
    if isinstance(schedule, Schedule):
        return schedule
    name = (schedule or "constant").lower().replace("-", "_")
    if name == "constant":
        return Constant(lr)
    if name in ("one_cycle", "onecycle"):
        return OneCycle(lr)
    if name in ("cosine", "cosine_warmup"):
        return CosineWarmup(lr)
    raise ConfigError(f"unknown schedule {schedule!r}; use 'constant', 'one_cycle', 'cosine' or a Schedule")
