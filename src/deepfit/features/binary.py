"""Binary columns (two distinct values): one 0/1 column, plus a missing indicator if needed.

Fit (training rows only): the two distinct values, compared as text and sorted; the first encodes
as 0, the second as 1 (so "no"/"yes" → 0/1, "0"/"1" → 0/1, "False"/"True" → 0/1). A training
column with one distinct value encodes it as 0. Missing values, and values not seen in training,
encode as 0.5; a 0/1 missing-indicator column is added when the training rows had missing values.
More than two distinct training values is a DataError (the column is a category).

Example:
    >>> import pandas as pd
    >>> f = BinaryFeature("smoker").fit(pd.Series(["yes", "no", "yes"], dtype=object))
    >>> f.encode(pd.Series(["no", "yes", None], dtype=object))["num"].ravel().tolist()
    [0.0, 1.0, 0.5]
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd

from deepfit.errors import DataError
from deepfit.features.base import Feature, require_keys
from deepfit.features.category import as_text

__all__ = ["BinaryFeature"]


class BinaryFeature(Feature):
    """A two-valued column → ``"num"`` (N, 1) in {0, 0.5, 1} [+ (N, 1) missing indicator]."""

    kind = "binary"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.values: list[str] = []
        self.missing_indicator = False

    def fit(self, values: pd.Series) -> Self:
        present, strings = as_text(values)
        distinct = sorted(set(strings))
        if len(distinct) > 2:
            shown = ", ".join(repr(v) for v in distinct[:5])
            raise DataError(f"binary column '{self.name}' has {len(distinct)} distinct values ({shown}...) in the "
                            "training rows; declare it as a category (types={'" + self.name + "': 'category'})")
        self.values = distinct
        self.missing_indicator = bool((~present).any())
        self.fitted = True
        return self

    def encode(self, values: pd.Series) -> dict[str, np.ndarray]:
        self._check_fitted()
        present, strings = as_text(values)
        x = np.full(len(values), 0.5)
        if len(strings):
            known = np.full(len(strings), 0.5)
            for code, v in enumerate(self.values):
                known[strings == v] = float(code)
            x[present] = known
        cols = [x] + ([(~present).astype(np.float64)] if self.missing_indicator else [])
        return {"num": np.stack(cols, axis=1).astype(np.float32)}  # (N, 1 or 2)

    def num_bins(self) -> list[list[float] | None]:
        return [None] * (2 if self.missing_indicator else 1)

    def state_dict(self) -> dict:
        self._check_fitted()
        return {"values": list(self.values), "missing_indicator": self.missing_indicator}

    @classmethod
    def from_state(cls, name: str, state: dict) -> Self:
        what = f"binary column '{name}'"
        require_keys(state, ("values", "missing_indicator"), what=what)
        vals = state["values"]
        if not isinstance(vals, list) or len(vals) > 2 or not all(isinstance(v, str) for v in vals):
            raise DataError(f"{what}: saved 'values' must be a list of at most 2 strings; retrain the model")
        if not isinstance(state["missing_indicator"], bool):
            raise DataError(f"{what}: saved 'missing_indicator' must be true or false; retrain the model")
        f = cls(name)
        f.values = list(vals)
        f.missing_indicator = state["missing_indicator"]
        f.fitted = True
        return f
