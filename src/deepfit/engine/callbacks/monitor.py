"""Which way a monitored value improves, for the callbacks that watch one (EarlyStopping,
ModelCheckpoint): ``"min"`` or ``"max"``, from the metric that logs it when the learner has one,
otherwise from its name."""

from __future__ import annotations

from collections.abc import Iterable

from deepfit.errors import ConfigError
from deepfit.metrics import Metric

__all__ = ["is_better", "metric_mode", "resolve_mode"]

HIGHER_IS_BETTER_NAMES = ("accuracy", "acc", "f1", "auroc", "auc", "r2")  # name endings that mean "max"


def is_better(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """True if ``value`` improves on ``best`` by more than ``min_delta`` (NaN never improves)."""
    if value != value:  # NaN never improves
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def resolve_mode(monitor: str, mode: str) -> str:
    """``mode`` if it is ``"min"``/``"max"``; for ``"auto"``, the rule by name: ``"max"`` when
    ``monitor`` ends with accuracy, acc, f1, auroc, auc or r2, else ``"min"`` (losses, errors)."""
    if mode in ("min", "max"):
        return mode
    if mode != "auto":
        raise ConfigError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
    lowered = monitor.lower()
    return "max" if any(lowered.endswith(h) for h in HIGHER_IS_BETTER_NAMES) else "min"


def metric_mode(monitor: str, metrics: Iterable[Metric]) -> str:
    """The ``"auto"`` mode of ``monitor`` in a run with these metrics.

    ``valid_<name>`` of a metric that declares ``higher_is_better`` (its class or the object
    sets it; the base class's default does not count) follows the metric; anything else
    (``valid_loss``, ``train_loss``, a metric that does not say) follows :func:`resolve_mode`.

    Example:
        >>> from deepfit.metrics import ErrorRate, Metric
        >>> metric_mode("valid_error_rate", [ErrorRate()]), metric_mode("valid_loss", [ErrorRate()])
        ('min', 'min')
        >>> class Precision(Metric):
        ...     name = "precision"
        ...     higher_is_better = True
        >>> metric_mode("valid_precision", [Precision()]), resolve_mode("valid_precision", "auto")
        ('max', 'min')
    """
    for metric in metrics:
        if monitor == f"valid_{metric.name}":
            declared = _declared_higher_is_better(metric)
            if declared is not None:
                return "max" if declared else "min"
    return resolve_mode(monitor, "auto")


def _declared_higher_is_better(metric: Metric) -> bool | None:
    if "higher_is_better" in vars(metric):
        return bool(metric.higher_is_better)
    for cls in type(metric).__mro__:
        if cls is Metric:
            break
        if "higher_is_better" in vars(cls):
            return bool(cls.higher_is_better)
    return None
