"""The Feature protocol: one class per column kind, fitted on training rows, state in plain JSON.

A feature turns one already-coerced column (see ``deepfit.data.table.coerce_column``) into
arrays for the model, grouped under three fixed names so the model input is a fixed tuple:

* ``"num"``: float32 ``(N, k)`` numeric inputs (numbers, dates, binary flags, missing indicators);
* ``"cat"``: int64 ``(N, k)`` category codes, 0 = missing/unknown;
* ``"text"``: int64 ``(N, k, L)`` hashed token ids, 0 = padding.

Every subclass registers itself in :data:`FEATURES` under its ``kind``.

Example:
    >>> import pandas as pd
    >>> from deepfit.features.number import NumberFeature
    >>> f = NumberFeature("x").fit(pd.Series([1.0, 2.0, 3.0]))
    >>> f.encode(pd.Series([2.0]))["num"].shape
    (1, 1)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from deepfit.errors import ConfigError, DataError

__all__ = ["Feature", "FEATURES", "GROUPS", "finite_or_none", "is_finite_number", "require_keys"]

GROUPS = ("num", "cat", "text")

FEATURES: dict[str, type[Feature]] = {}  # kind -> class, filled as the feature modules are imported


class Feature(ABC):
    """One input column: ``fit`` on training rows, ``encode`` any rows, JSON ``state_dict``.

    Args:
        name: the column name (used in error messages and in the saved state).
    """

    kind: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            FEATURES[cls.kind] = cls

    def __init__(self, name: str) -> None:
        self.name = name
        self.fitted = False

    @abstractmethod
    def fit(self, values: pd.Series) -> Self:
        """Learn state from the training rows of the column; returns ``self``."""

    @abstractmethod
    def encode(self, values: pd.Series) -> dict[str, np.ndarray]:
        """Arrays for the model, by group name, each with ``len(values)`` rows."""

    @abstractmethod
    def state_dict(self) -> dict:
        """The fitted state as plain JSON (no NaN/inf)."""

    @classmethod
    @abstractmethod
    def from_state(cls, name: str, state: dict) -> Self:
        """Rebuild a fitted feature from :meth:`state_dict`; DataError on a bad state."""

    # What the model needs to know; defaults suit features without that group.
    def num_bins(self) -> list[list[float] | None]:
        """Piecewise-linear bin edges for each ``"num"`` column this feature emits (None: no bins)."""
        return []

    def cat_cardinalities(self) -> list[int]:
        """Embedding table size (vocabulary + 1 for code 0) for each ``"cat"`` column."""
        return []

    def n_text(self) -> int:
        """Number of ``"text"`` columns this feature emits."""
        return 0

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise ConfigError(f"{type(self).__name__} for column '{self.name}' is not fitted; call fit() first")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}{'' if self.fitted else ', unfitted'})"


def finite_or_none(x: float) -> float | None:
    """A float for JSON state: NaN and +/-inf become None."""
    x = float(x)
    return x if math.isfinite(x) else None


def is_finite_number(v: Any) -> bool:
    """Whether a value read from JSON state is a finite int or float (bool is not a number here)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def require_keys(state: Any, keys: tuple[str, ...], *, what: str) -> dict:
    """Check ``state`` is a dict holding ``keys``; DataError naming what is missing otherwise."""
    if not isinstance(state, dict):
        raise DataError(f"{what}: saved state must be a JSON object, got {type(state).__name__}")
    missing = [k for k in keys if k not in state]
    if missing:
        raise DataError(f"{what}: saved state lacks {', '.join(missing)}; the file is damaged or from another "
                        "deepfit version: retrain the model")
    return state
