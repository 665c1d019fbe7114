"""Tasks: data in, a trained predictor and a run directory out — one shape for every kind.

Each task is a module (or package) defining a :class:`~deepfit.tasks.base.Task` subclass,
registered under its artifact ``kind``. :data:`TASK_MODULES` is the one routing table: the
order in which tasks are asked whether they take some data (the first that accepts wins).
:func:`route` answers "which task is this data?" for ``deepfit.fit`` and ``deepfit train``;
:func:`predictor_class` answers "which predictor reads this artifact?" for ``deepfit.load``,
``predict`` and ``evaluate``. ``docs/architecture.md`` shows how to add a task.

Example:
    >>> from deepfit.tasks import route
    >>> route("digits")          # a dataset bundled with deepfit          # doctest: +SKIP
    'arrays'
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepfit.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from deepfit.tasks.base import BasePredictor, Task

__all__ = ["TASK_MODULES", "task_classes", "route", "predictor_class", "load", "UnknownData"]

# Asked in this order; the first task that accepts the data trains on it. The table task
# takes any table, so it comes last.
TASK_MODULES: dict[str, str] = {
    "lm": "deepfit.tasks.lm",
    "arrays": "deepfit.tasks.arrays",
    "image": "deepfit.tasks.images",
    "recommend": "deepfit.tasks.recommend",
    "forecast": "deepfit.tasks.forecast",
    "table": "deepfit.tasks.table",
}


class UnknownData(DataError):
    """No task takes the data as given (a path that does not exist, a name that is no dataset)."""


def task_classes() -> dict[str, type[Task]]:
    """Every task class by kind, in routing order (imports the task modules)."""
    from deepfit.tasks.base import TASKS

    for module in TASK_MODULES.values():
        importlib.import_module(module)
    missing = [module for kind, module in TASK_MODULES.items() if kind not in TASKS]
    if missing:
        raise ImportError(f"{', '.join(missing)} define(s) no Task subclass for the kind TASK_MODULES names")
    return {kind: TASKS[kind] for kind in TASK_MODULES}


def route(data: Any, *, task: str | None = None, target: str | None = None,
          types: dict[str, str] | None = None) -> str:
    """The kind of task that trains on ``data`` given what the user said.

    Raises :class:`UnknownData` (naming the data and what each task takes) when none does.
    """
    hints = {"task": task, "target": target, "types": dict(types or {})}
    tasks = task_classes()
    for kind, cls in tasks.items():
        if cls.accepts(data, hints):
            return kind
    if isinstance(data, (str, os.PathLike)) and not Path(data).exists():
        import difflib

        from deepfit import datasets

        close = difflib.get_close_matches(str(data), datasets.names(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownData(f"unknown data {str(data)!r}: no such file, and not a bundled dataset "
                          f"({', '.join(datasets.names())}){hint}")
    takes = "; ".join(f"{kind}: {cls.describe}" for kind, cls in tasks.items())
    raise UnknownData(f"no task takes {type(data).__name__} data as given (each task takes — {takes})")


def predictor_class(kind: str) -> type[BasePredictor]:
    """The predictor class that reads artifacts of ``kind``."""
    from deepfit.tasks.runner import get_task

    return get_task(kind).Predictor


def load(directory: str | os.PathLike) -> BasePredictor:
    """Load any saved model directory: the predictor class follows the artifact's ``kind``.

    Every predictor has ``task``, ``metrics``, ``predict_frame(data, source=)`` (what
    ``deepfit predict`` writes) and ``evaluate(data, source=)``. A run directory of a bundled
    dataset written before artifacts existed there (no ``deepfit.json``) loads through
    :func:`deepfit.tasks.arrays.predictor.load_legacy_run`.
    """
    from deepfit.artifact import read_meta

    path = Path(directory)
    if path.is_dir() and not (path / "deepfit.json").exists() and (path / "run.json").exists():
        from deepfit.tasks.arrays.predictor import is_legacy_run, load_legacy_run

        if is_legacy_run(path):
            return load_legacy_run(path)
    return predictor_class(read_meta(directory)["kind"]).load(directory)
