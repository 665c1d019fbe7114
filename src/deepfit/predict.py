"""``load`` reads any saved model directory; ``Predictor`` is the table predictor (see
:mod:`deepfit.tasks.table.predictor`). Kept so that ``from deepfit.predict import ...`` works."""

from __future__ import annotations

import os
from typing import Any

from deepfit.metrics import classification_metrics, regression_metrics
from deepfit.tasks.table.predictor import TablePredictor

__all__ = ["Predictor", "load", "classification_metrics", "regression_metrics"]

Predictor = TablePredictor  # the name deepfit.Predictor has always had

def load(directory: str | os.PathLike) -> Any:
    """Load any saved model directory: the predictor class follows the artifact's ``kind``
    (:func:`deepfit.tasks.load`).

    Every predictor has ``task``, ``metrics``, ``predict_frame(rows, source=)`` (what
    ``deepfit predict`` prints) and ``evaluate(rows, source=)``.
    """
    from deepfit.tasks import load as load_any

    return load_any(directory)
