"""Predictors: ``load`` reads any saved model directory; ``Predictor`` is the table predictor.

Example:
    >>> import deepfit, pandas as pd
    >>> df = pd.DataFrame({"x": range(200), "y": ["small"] * 100 + ["big"] * 100})
    >>> model = deepfit.fit(df, target="y", time_limit=20, progress=False)   # doctest: +SKIP
    >>> model.predict(pd.DataFrame({"x": [3, 190]}))                          # doctest: +SKIP
    array(['small', 'big'], dtype=object)
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from deepfit.artifact import read_meta
from deepfit.metrics import classification_metrics, regression_metrics
from deepfit.tasks.base import finite_metrics
from deepfit.tasks.table.predictor import TablePredictor

__all__ = ["Predictor", "load", "classification_metrics", "regression_metrics"]

Predictor = TablePredictor  # the name deepfit.Predictor has always had

# Temporary: predictors of kinds whose task is not a registered Task yet (removed once the
# image task is ported to tasks/base.py's shape).
_NOT_YET_TASKS = {"image": ("deepfit.tasks.images", "ImagePredictor")}

# Temporary: tasks/images.py imports this private name; it goes with the image task's port.
_finite = finite_metrics


def load(directory: str | os.PathLike) -> Any:
    """Load any saved model directory: the predictor class follows the artifact's ``kind``
    (:func:`deepfit.tasks.load`).

    Every predictor has ``task``, ``metrics``, ``predict_frame(rows, source=)`` (what
    ``deepfit predict`` prints) and ``evaluate(rows, source=)``.
    """
    from deepfit.tasks import TASK_MODULES
    from deepfit.tasks import load as load_any
    from deepfit.tasks.base import TASKS

    if (Path(directory) / "deepfit.json").is_file():
        kind = read_meta(directory)["kind"]
        importlib.import_module(TASK_MODULES[kind])
        if kind not in TASKS and kind in _NOT_YET_TASKS:
            module, name = _NOT_YET_TASKS[kind]
            return getattr(importlib.import_module(module), name).load(directory)
    return load_any(directory)
