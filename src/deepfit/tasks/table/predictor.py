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
import warnings
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import torch

from deepfit.errors import ConfigError, DataError, DeepfitWarning
from deepfit.metrics import classification_metrics, regression_metrics
from deepfit.tasks.base import BasePredictor

__all__ = ["TablePredictor", "as_frame", "BATCH", "IMPORTANCE_ROWS", "OUT_OF_RANGE_SHOWN"]

BATCH = 4096
IMPORTANCE_ROWS = 20_000  # feature_importance: at most this many rows (shuffles x rows) encoded at once
OUT_OF_RANGE_SHOWN = 10  # the out-of-range warning names at most this many columns


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

    def _encode(self, rows: Any, source: str, *, warn: bool = False
                ) -> tuple[pd.DataFrame, tuple[torch.Tensor, ...]]:
        df, source = as_frame(rows, source=source)
        if len(df) == 0:
            raise DataError(f"{source} has no rows to predict")
        coerced = self.preprocessor.check_input(df, source=source)
        if warn:
            note = self.out_of_range_note(coerced, source=source)
            if note:
                warnings.warn(note, DeepfitWarning, stacklevel=3)
        arrays = self.preprocessor.arrays(coerced)
        return df, tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)

    def out_of_range_note(self, coerced: pd.DataFrame, *, source: str = "rows") -> str:
        """One line saying which rows of ``coerced`` (as ``preprocessor.check_input`` returns them)
        hold numbers outside the training range and what the model did with them; "" if none.

        ``predict``, ``predict_proba`` and ``predict_frame`` emit it as a :class:`DeepfitWarning`."""
        counts = self.preprocessor.out_of_range(coerced)
        if not counts:
            return ""
        n_rows = int(self.preprocessor.out_of_range_rows(coerced).sum())
        shown = ", ".join(f"'{name}' ({n} row{'s' if n > 1 else ''})"
                          for name, n in list(counts.items())[:OUT_OF_RANGE_SHOWN])
        more = f" and {len(counts) - OUT_OF_RANGE_SHOWN} more columns" if len(counts) > OUT_OF_RANGE_SHOWN else ""
        bounded = ""
        if self.task == "regress" and getattr(self.target, "low", None) is not None:
            bounded = (f"; predictions stay within the training range of '{self.target_name}' widened by 5 % "
                       f"([{self.target.low:.6g}, {self.target.high:.6g}])")
        of = "" if source == "rows" else f" of {source}"
        return (f"{n_rows} of {len(coerced)} rows{of} hold numbers outside the training range, in {shown}{more}; "
                f"the model treated each such value as the nearest training extreme (the minimum or maximum it "
                f"was trained on){bounded}")

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
        df, inputs = self._encode(rows, source, warn=True)
        probs = self._predict_tensor(inputs).numpy()
        return pd.DataFrame(probs, columns=[str(c) for c in self.classes], index=df.index)

    def predict_frame(self, rows: Any, *, source: str = "rows") -> pd.DataFrame:
        """What ``deepfit predict`` prints: ``prediction`` and, for classification, ``proba_<class>`` columns."""
        _, inputs = self._encode(rows, source, warn=True)
        out = self._predict_tensor(inputs).numpy()
        frame = pd.DataFrame({"prediction": self._decode(out)})
        if self.task == "classify":
            for i, column in enumerate(str(c) for c in self.classes):
                frame[f"proba_{column}"] = out[:, i]
        return frame

    def predict(self, rows: Any, *, source: str = "rows") -> np.ndarray:
        """Predicted labels (classification) or values in the target's units (regression, within the
        training range widened by 5 %).

        Rows holding numbers outside the training range are predicted as if they held the nearest
        training extreme, with a :class:`~deepfit.errors.DeepfitWarning` saying how many and where."""
        _, inputs = self._encode(rows, source, warn=True)
        return self._decode(self._predict_tensor(inputs).numpy())

    def predict_checked(self, coerced: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(outputs, predictions)`` for rows already through ``preprocessor.check_input``: what
        ``predict_frame`` computes after its checks (the server checks each request itself, then
        predicts many requests' rows at once). ``outputs``: probabilities (classification) or the
        encoded value; ``predictions``: labels or values in the target's units."""
        out = self._predict_frame(coerced).numpy()
        return out, self._decode(out)

    def _decode(self, out: np.ndarray) -> np.ndarray:
        if self.task == "classify":
            return self.target.decode(out.argmax(axis=1))
        return self.target.decode(out)

    def evaluate(self, rows: Any, *, source: str = "rows") -> dict[str, float]:
        """Metrics on labelled rows: accuracy, log_loss, f1, auroc (classification) or rmse, mae, r2."""
        x, y, source = self._labelled(rows, source, purpose="evaluate against")
        _, inputs = self._encode(x, source)
        out = self._predict_tensor(inputs)
        if self.task == "classify":
            codes = torch.from_numpy(self.target.encode(y))
            return classification_metrics(out, codes)
        truth = np.asarray(y, dtype=np.float64)
        return regression_metrics(self.target.decode(out.numpy()).astype(np.float64), truth)

    def feature_importance(self, data: Any, *, repeats: int = 5, seed: int = 0,
                           source: str = "rows") -> pd.DataFrame:
        """Permutation importance of each input column on labelled rows (the target column present).

        For each column the model reads, its values are shuffled across the rows ``repeats``
        times (a generator seeded by ``seed``), the model predicts again, and the importance of
        one shuffle is how much worse the model's loss gets: the **log-loss increase** when
        classifying (smooth, where accuracy on a few hundred rows moves in coarse steps and
        misses a column that only sharpens probabilities), the **RMSE increase**, in the
        target's units, when regressing. A column the model ignores scores about 0; a negative
        score is noise (shuffling happened to help). The shuffles of one column are predicted
        as one batch.

        Args:
            data: labelled rows: a DataFrame, a path ``read_table`` reads, or a list of dicts;
                rows without a target value are left out.
            repeats: shuffles per column (>= 1).
            seed: seeds the shuffles: the same seed gives the same table.
            source: how messages name ``data`` (a path names itself).

        Returns:
            A DataFrame with columns ``column``, ``importance_mean``, ``importance_std`` (the
            standard deviation over the repeats, ddof=0 as scikit-learn's
            ``permutation_importance``), one row per input column, sorted by
            ``importance_mean``, largest first; ``attrs["metric"]`` is ``"log_loss"`` or
            ``"rmse"`` and ``attrs["baseline"]`` its value on the rows as given.

        Example:
            >>> import deepfit, numpy as np, pandas as pd                                  # doctest: +SKIP
            >>> x = np.random.default_rng(0).normal(size=(400, 2))                        # doctest: +SKIP
            >>> df = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "y": 3 * x[:, 0]})        # doctest: +SKIP
            >>> model = deepfit.fit(df, target="y", max_epochs=20, progress=False)        # doctest: +SKIP
            >>> model.feature_importance(df)["column"].tolist()                           # doctest: +SKIP
            ['x1', 'x2']
        """
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ConfigError(f"repeats must be an integer >= 1, got {repeats!r}")
        x, y, source = self._labelled(rows=data, source=source, purpose="compute feature importance on")
        coerced = self.preprocessor.check_input(x, source=source).reset_index(drop=True)
        score = self._loss_of(y)
        baseline = score(self._predict_frame(coerced), 1)[0]
        n = len(coerced)
        rng = np.random.default_rng(seed)
        per_batch = max(1, min(repeats, IMPORTANCE_ROWS // n))  # shuffles predicted together
        rows = []
        for column in coerced.columns:
            values = coerced[column]
            scores: list[float] = []
            for start in range(0, repeats, per_batch):
                r = min(per_batch, repeats - start)
                shuffled = coerced.iloc[np.tile(np.arange(n), r)].reset_index(drop=True)
                order = np.concatenate([rng.permutation(n) for _ in range(r)])
                shuffled[column] = values.iloc[order].reset_index(drop=True)  # keeps the column's dtype
                scores += score(self._predict_frame(shuffled), r)
            drops = np.asarray(scores) - baseline
            rows.append({"column": column, "importance_mean": float(drops.mean()),
                         "importance_std": float(drops.std())})
        table = pd.DataFrame(rows, columns=["column", "importance_mean", "importance_std"])
        table = table.sort_values("importance_mean", ascending=False, kind="stable").reset_index(drop=True)
        table.attrs.update(metric="log_loss" if self.task == "classify" else "rmse", baseline=baseline)
        return table

    def _labelled(self, rows: Any, source: str, *, purpose: str) -> tuple[pd.DataFrame, pd.Series, str]:
        """(the input columns of the rows that have a target value, those values coerced to the
        target's kind, how messages name the rows); a DataError when no row has one."""
        from deepfit.data.table import coerce_column, find_column

        df, source = as_frame(rows, source=source)
        if len(df) == 0:
            raise DataError(f"{source} has no rows to {purpose}; give labelled rows (the target "
                            f"column '{self.target_name}' and the input columns)")
        name = find_column(df, self.target_name, role="target", source=source)
        y = coerce_column(df[name], "number" if self.task == "regress" else "category")
        keep = ~pd.isna(y).to_numpy()
        if not keep.any():
            raise DataError(f"target column '{name}' in {source} has no values to {purpose}")
        return df.loc[keep].drop(columns=[name]), y[keep], source

    def _predict_frame(self, coerced: pd.DataFrame) -> torch.Tensor:
        """The model's output (probabilities, or the encoded regression value) for coerced rows."""
        arrays = self.preprocessor.arrays(coerced)
        return self._predict_tensor(tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays))

    def _loss_of(self, y: pd.Series) -> Any:
        """``score(out, r)``: the loss of each of ``r`` stacked copies of the rows of ``y`` in
        ``out`` — log-loss (classification) or RMSE in the target's units (regression)."""
        if self.task == "classify":
            codes = torch.from_numpy(self.target.encode(y))

            def log_loss(out: torch.Tensor, r: int) -> list[float]:
                p = out.reshape(r, len(codes), -1).gather(2, codes.view(1, -1, 1).expand(r, -1, 1))
                return (-p.clamp(min=1e-15).log()).mean(dim=(1, 2)).tolist()

            return log_loss
        truth = np.asarray(y, dtype=np.float64)

        def rmse(out: torch.Tensor, r: int) -> list[float]:
            pred = self.target.decode(out.numpy()).astype(np.float64).reshape(r, len(truth))
            return np.sqrt(((pred - truth) ** 2).mean(axis=1)).tolist()

        return rmse

    def __repr__(self) -> str:
        used = sum(1 for c in self.columns if c.get("kind") not in ("id", "constant", "empty") and c.get("name") != self.target_name)
        return f"TablePredictor(task={self.task!r}, target={self.target_name!r}, columns={used}, metrics={self.metrics})"
