"""Category columns: a frequency-capped vocabulary; code 0 = missing or unknown.

Fit (training rows only): the vocabulary is every value seen at least once in training, capped at
the 1000 most frequent (ties broken by the value's text, so fitting is deterministic); values left
out by the cap are counted in the state (``n_rare``) and, like values never seen in training and
missing values, encode as 0. Codes 1..V follow the vocabulary order. Values are compared as text
(``str(value)``), so ``3`` and ``"3"`` are the same category.

Example:
    >>> import pandas as pd
    >>> f = CategoryFeature("color").fit(pd.Series(["red", "blue", "red", None], dtype=object))
    >>> f.encode(pd.Series(["red", "blue", "green", None], dtype=object))["cat"].ravel().tolist()
    [1, 2, 0, 0]
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd

from deepfit.errors import DataError
from deepfit.features.base import Feature, require_keys

__all__ = ["CategoryFeature", "MAX_VOCABULARY", "as_text"]

MAX_VOCABULARY = 1000


def as_text(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(present, strings)``: a bool mask of non-missing rows and their values as ``str``."""
    present = values.notna().to_numpy()
    strings = values[present].astype(str).to_numpy(dtype=object)
    return present, strings


class CategoryFeature(Feature):
    """A categorical column → ``"cat"`` (N, 1) int64 codes in 0..V."""

    kind = "category"

    def __init__(self, name: str, *, max_vocabulary: int = MAX_VOCABULARY) -> None:
        super().__init__(name)
        self.max_vocabulary = max_vocabulary
        self.vocabulary: list[str] = []
        self.n_rare = 0  # distinct training values left out by the cap (they encode as 0)
        self._index = pd.Index([], dtype=object)

    def fit(self, values: pd.Series) -> Self:
        _, strings = as_text(values)
        counts = pd.Series(strings, dtype=object).value_counts(sort=False)
        order = sorted(counts.items(), key=lambda kv: (-int(kv[1]), kv[0]))
        self.vocabulary = [str(v) for v, _ in order[: self.max_vocabulary]]
        self.n_rare = max(0, len(order) - self.max_vocabulary)
        self._index = pd.Index(self.vocabulary, dtype=object)
        self.fitted = True
        return self

    def encode(self, values: pd.Series) -> dict[str, np.ndarray]:
        self._check_fitted()
        present, strings = as_text(values)
        codes = np.zeros(len(values), dtype=np.int64)
        if len(strings):
            codes[present] = self._index.get_indexer(strings) + 1  # unknown: -1 + 1 = 0
        return {"cat": codes[:, None]}  # (N, 1)

    def cat_cardinalities(self) -> list[int]:
        return [len(self.vocabulary) + 1]

    def state_dict(self) -> dict:
        self._check_fitted()
        note = (f"{self.n_rare} rarer values beyond the {self.max_vocabulary} most frequent encode as unknown (0)"
                if self.n_rare else "")
        return {"vocabulary": list(self.vocabulary), "max_vocabulary": self.max_vocabulary,
                "n_rare": self.n_rare, "note": note}

    @classmethod
    def from_state(cls, name: str, state: dict) -> Self:
        what = f"category column '{name}'"
        require_keys(state, ("vocabulary",), what=what)
        vocab = state["vocabulary"]
        if not isinstance(vocab, list) or not all(isinstance(v, str) for v in vocab):
            raise DataError(f"{what}: saved 'vocabulary' must be a list of strings; retrain the model")
        if len(set(vocab)) != len(vocab):
            raise DataError(f"{what}: saved 'vocabulary' has duplicates; the file is damaged: retrain the model")
        f = cls(name, max_vocabulary=int(state.get("max_vocabulary", MAX_VOCABULARY)))
        f.vocabulary = list(vocab)
        f.n_rare = int(state.get("n_rare", 0))
        f._index = pd.Index(f.vocabulary, dtype=object)
        f.fitted = True
        return f
