"""The table predictor: a trained table model that takes raw rows and returns predictions.

Example:
    >>> import deepfit, pandas as pd
    >>> df = pd.DataFrame({"x": range(200), "y": ["small"] * 100 + ["big"] * 100})
    >>> model = deepfit.fit(df, target="y", time_limit=20, progress=False)   # doctest: +SKIP
    >>> model.predict(pd.DataFrame({"x": [3, 190]}))                          # doctest: +SKIP
    array(['small', 'big'], dtype=object)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import torch

from deepfit.errors import DataError
from deepfit.metrics import classification_metrics, regression_metrics
from deepfit.tasks.base import BasePredictor

__all__ = ["TablePredictor", "as_frame", "BATCH"]

BATCH = 4096


def as_frame(rows: Any, *, source: str) -> tuple[pd.DataFrame, str]:
    """Rows as a DataFrame, and how messages name them: a DataFrame, one row as a dict, a list
    of dicts, or anything ``read_table`` reads (a path names itself)."""
    from deepfit.data.sources import read_table

    if isinstance(rows, pd.DataFrame):
        return rows, source
    if isinstance(rows, dict) and rows and not any(isinstance(v, (list, tuple, np.ndarray, pd.Series)) for v in rows.values()):
        return pd.DataFrame([rows]), source  # one row given as {column: value}
    if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
        return pd.DataFrame(rows), source
    if isinstance(rows, (str, os.PathLike)):
        return read_table(rows), str(rows)
    return read_table(rows), source


class TablePredictor(BasePredictor):
    """A fitted table model with its preprocessing; see :func:`deepfit.fit` and :func:`deepfit.load`."""

    kind = "table"
    tasks = ("classify", "regress")
    model_names = ("tabular",)
    required = {"target": dict, "columns": list, "preprocessor": dict}

    def __init__(self, *, task: str, target: Any, preprocessor: Any, model: torch.nn.Module, columns: list[dict],
                 model_name: str = "tabular", metrics: dict[str, float] | None = None,
                 info: dict[str, Any] | None = None) -> None:
        self.task = task
        self.target = target
        self.preprocessor = preprocessor
        self.model = model.eval()
        self.columns = columns
        self._model_name = model_name
        self.metrics: dict[str, float] = dict(metrics or {})
        self.info: dict[str, Any] = dict(info or {})

    # ------------------------------------------------------------------ the artifact

    @property
    def model_name(self) -> str:
        return self._model_name

    def _meta(self) -> dict[str, Any]:
        return {"target": self.target.state_dict(), "columns": self.columns,
                "preprocessor": self.preprocessor.state_dict()}

    @classmethod
    def _from_meta(cls, meta: dict[str, Any], directory: Path) -> Self:
        from deepfit.features.preprocessor import TablePreprocessor
        from deepfit.features.target import target_from_state
        from deepfit.models.tabular import build_tabular

        preprocessor = TablePreprocessor.from_state(meta["preprocessor"])
        target = target_from_state(meta["target"])
        model = build_tabular(preprocessor.spec(), n_outputs=target.n_outputs, **meta["model"]["config"])
        return cls(task=meta["task"], target=target, preprocessor=preprocessor, model=model, columns=meta["columns"],
                   model_name=meta["model"]["name"], metrics=cls._stored_metrics(meta), info=meta.get("info", {}))

    # ------------------------------------------------------------------ predictions

    @property
    def target_name(self) -> str:
        return self.target.name

    @property
    def classes(self) -> list[Any]:
        """Class labels, in the order of ``predict_proba``'s columns (classification only)."""
        if self.task != "classify":
            raise DataError("classes exist only for classification models")
        return list(self.target.decode(np.arange(self.target.n_outputs)))

    def _encode(self, rows: Any, source: str) -> tuple[pd.DataFrame, tuple[torch.Tensor, ...]]:
        df, source = as_frame(rows, source=source)
        if len(df) == 0:
            raise DataError(f"{source} has no rows to predict")
        coerced = self.preprocessor.check_input(df, source=source)
        arrays = self.preprocessor.arrays(coerced)
        return df, tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)

    def _predict_tensor(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        from deepfit.models.tabular import ensemble_predict

        outputs = []
        with torch.inference_mode():
            for start in range(0, len(inputs[0]), BATCH):
                batch = tuple(t[start : start + BATCH] for t in inputs)
                outputs.append(ensemble_predict(self.model(*batch).float(), self.task))
        return torch.cat(outputs)

    def predict_proba(self, rows: Any, *, source: str = "rows") -> pd.DataFrame:
        """Class probabilities, one column per class (classification only)."""
        if self.task != "classify":
            raise DataError(f"predict_proba is for classification; this model predicts a number ({self.target_name})")
        df, inputs = self._encode(rows, source)
        probs = self._predict_tensor(inputs).numpy()
        return pd.DataFrame(probs, columns=[str(c) for c in self.classes], index=df.index)

    def predict_frame(self, rows: Any, *, source: str = "rows") -> pd.DataFrame:
        """What ``deepfit predict`` prints: ``prediction`` and, for classification, ``proba_<class>`` columns."""
        frame = pd.DataFrame({"prediction": self.predict(rows, source=source)})
        if self.task == "classify":
            probs = self.predict_proba(rows, source=source)
            for column in probs.columns:
                frame[f"proba_{column}"] = probs[column].to_numpy()
        return frame

    def predict(self, rows: Any, *, source: str = "rows") -> np.ndarray:
        """Predicted labels (classification) or values in the target's units (regression)."""
        _, inputs = self._encode(rows, source)
        out = self._predict_tensor(inputs).numpy()
        if self.task == "classify":
            return self.target.decode(out.argmax(axis=1))
        return self.target.decode(out)

    def evaluate(self, rows: Any, *, source: str = "rows") -> dict[str, float]:
        """Metrics on labelled rows: accuracy, log_loss, f1, auroc (classification) or rmse, mae, r2."""
        from deepfit.data.table import coerce_column, find_column

        df, source = as_frame(rows, source=source)
        name = find_column(df, self.target_name, role="target", source=source)
        y_raw = df[name]
        kind = "number" if self.task == "regress" else "category"
        y = coerce_column(y_raw, kind)
        keep = ~pd.isna(y).to_numpy()
        if not keep.any():
            raise DataError(f"target column '{name}' in {source} has no values to evaluate against")
        df, y = df.loc[keep], y[keep]
        _, inputs = self._encode(df.drop(columns=[name]), source)
        out = self._predict_tensor(inputs)
        if self.task == "classify":
            codes = torch.from_numpy(self.target.encode(y))
            return classification_metrics(out, codes)
        truth = np.asarray(y, dtype=np.float64)
        return regression_metrics(self.target.decode(out.numpy()).astype(np.float64), truth)

    def __repr__(self) -> str:
        used = sum(1 for c in self.columns if c.get("kind") not in ("id", "constant", "empty") and c.get("name") != self.target_name)
        return f"TablePredictor(task={self.task!r}, target={self.target_name!r}, columns={used}, metrics={self.metrics})"
