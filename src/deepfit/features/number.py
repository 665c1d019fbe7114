"""Number columns: quantile-normal scaling, a missing indicator, and bin edges for the model.

Fit (training rows only): up to 1024 quantiles of the finite values, and up to 48 bins (49 edges)
for piecewise-linear encoding, taken as quantiles of the *scaled* training values, so the edges
live in the same space as the model's input. Encode: piecewise-linear interpolation of the value
between the stored quantiles gives a rank in [0, 1] (ties get the middle of their rank range, as in
scikit-learn's QuantileTransformer), mapped to a standard normal score by its inverse CDF and
clipped to +/-5. Missing values (NaN; +/-inf is treated as missing) encode as 0 (the median), and a
0/1 missing-indicator column is added when the training rows had missing values (decided at fit
time, so the number of columns never changes afterwards).

A value beyond the training range gets the rank 0 or 1, so it encodes exactly as the training
minimum or maximum does: the model treats it as the nearest training extreme, as a tree would.
The training ``min``/``max`` are stored, and :meth:`NumberFeature.out_of_range` counts the values
outside them (a model saved before they were stored takes them from the ends of its quantiles,
which are the training minimum and maximum).

Example:
    >>> import pandas as pd
    >>> f = NumberFeature("age").fit(pd.Series([20.0, 30.0, None, 40.0]))
    >>> f.encode(pd.Series([30.0, None]))["num"].tolist()
    [[0.0, 0.0], [0.0, 1.0]]
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd
import torch

from deepfit.errors import DataError
from deepfit.features.base import Feature, is_finite_number, require_keys

__all__ = ["NumberFeature", "fit_quantiles", "quantile_normal", "fit_bins", "as_float", "float_list"]

N_QUANTILES = 1024
N_BINS = 48
CLIP = 5.0


def as_float(values: pd.Series, name: str) -> np.ndarray:
    """The column as float64 with NaN for missing and +/-inf; DataError if it is not numeric."""
    try:
        x = pd.to_numeric(values, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (ValueError, TypeError) as e:
        raise DataError(f"number column '{name}' holds non-numeric values ({e}); coerce it first with "
                        "deepfit.data.table.coerce_column(values, 'number')") from e
    return np.where(np.isfinite(x), x, np.nan)


def fit_quantiles(x: np.ndarray, n: int = N_QUANTILES) -> np.ndarray:
    """Up to ``n`` evenly spaced quantiles of the finite values of ``x`` (empty if none)."""
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return np.empty(0)
    return np.quantile(x, np.linspace(0.0, 1.0, min(n, len(x))))


def quantile_normal(x: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Normal scores of ``x`` under the fitted quantiles, clipped to +/-5; NaN → 0."""
    out = np.zeros(len(x), dtype=np.float64)
    ok = np.isfinite(x)
    if len(quantiles) < 2 or quantiles[-1] == quantiles[0] or not ok.any():
        return out  # nothing to spread: every value is "the median"
    refs = np.linspace(0.0, 1.0, len(quantiles))
    v = x[ok]
    # Average of the forward and backward interpolations: tied quantiles map to the middle of their range.
    p = 0.5 * (np.interp(v, quantiles, refs) - np.interp(-v, -quantiles[::-1], -refs[::-1]))
    p = np.clip(p, 1e-7, 1 - 1e-7)
    z = torch.special.ndtri(torch.from_numpy(p)).numpy()
    out[ok] = np.clip(z, -CLIP, CLIP)
    return out


def fit_bins(z: np.ndarray, n_bins: int = N_BINS) -> list[float] | None:
    """Up to ``n_bins + 1`` distinct quantile edges of the scaled values ``z`` (None if < 2).

    With at most ``n_bins + 1`` distinct values the edges are those values themselves.
    """
    if len(z) == 0:
        return None
    distinct = np.unique(np.round(z, 6))
    if len(distinct) <= n_bins + 1:  # few values: one edge per value (no interpolated edges in between)
        edges = distinct
    else:
        edges = np.unique(np.round(np.quantile(z, np.linspace(0.0, 1.0, n_bins + 1)), 6))
    return [float(e) for e in edges] if len(edges) >= 2 else None


def float_list(state: dict, key: str, what: str, *, increasing: bool, strict: bool = False) -> list[float]:
    """Validate ``state[key]`` as a list of finite floats (optionally sorted); DataError otherwise."""
    value = state[key]
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise DataError(f"{what}: saved '{key}' must be a list of numbers; retrain the model")
    arr = np.asarray(value, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise DataError(f"{what}: saved '{key}' holds NaN/inf; retrain the model")
    if increasing and len(arr) > 1:
        d = np.diff(arr)
        if (d <= 0).any() if strict else (d < 0).any():
            raise DataError(f"{what}: saved '{key}' is not sorted; the file is damaged: retrain the model")
    return [float(v) for v in arr]


class NumberFeature(Feature):
    """A numeric column → ``"num"`` (N, 1) normal scores [+ (N, 1) missing indicator]."""

    kind = "number"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.quantiles = np.empty(0)
        self.bins: list[float] | None = None
        self.missing_indicator = False
        self.n_train = 0
        self.min: float | None = None  # the finite training values' range (None: none were finite)
        self.max: float | None = None

    def fit(self, values: pd.Series) -> Self:
        x = as_float(values, self.name)
        self.quantiles = fit_quantiles(x)
        finite = x[np.isfinite(x)]
        self.bins = fit_bins(quantile_normal(finite, self.quantiles))
        self.missing_indicator = bool(len(finite) < len(x))
        self.n_train = int(len(x))
        self.min, self.max = (float(finite.min()), float(finite.max())) if len(finite) else (None, None)
        self.fitted = True
        return self

    def out_of_range(self, values: pd.Series) -> np.ndarray:
        """Bool (N,): the values below the training minimum or above the maximum (missing: False;
        all False when the range is unknown)."""
        self._check_fitted()
        x = as_float(values, self.name)
        if self.min is None or self.max is None:
            return np.zeros(len(x), dtype=bool)
        with np.errstate(invalid="ignore"):
            return (x < self.min) | (x > self.max)

    def encode(self, values: pd.Series) -> dict[str, np.ndarray]:
        self._check_fitted()
        x = as_float(values, self.name)
        cols = [quantile_normal(x, self.quantiles)]
        if self.missing_indicator:
            cols.append(np.isnan(x).astype(np.float64))
        return {"num": np.stack(cols, axis=1).astype(np.float32)}  # (N, 1 or 2)

    def num_bins(self) -> list[list[float] | None]:
        return [self.bins] + ([None] if self.missing_indicator else [])

    def state_dict(self) -> dict:
        self._check_fitted()
        return {"quantiles": [float(q) for q in self.quantiles], "bins": self.bins,
                "missing_indicator": self.missing_indicator, "n_train": self.n_train, "min": self.min, "max": self.max}

    @classmethod
    def from_state(cls, name: str, state: dict) -> Self:
        what = f"number column '{name}'"
        require_keys(state, ("quantiles", "bins", "missing_indicator"), what=what)
        f = cls(name)
        f.quantiles = np.asarray(float_list(state, "quantiles", what, increasing=True), dtype=np.float64)
        f.bins = None if state["bins"] is None else float_list(state, "bins", what, increasing=True, strict=True)
        if f.bins is not None and len(f.bins) < 2:
            raise DataError(f"{what}: saved 'bins' needs at least 2 edges; retrain the model")
        if not isinstance(state["missing_indicator"], bool):
            raise DataError(f"{what}: saved 'missing_indicator' must be true or false; retrain the model")
        f.missing_indicator = state["missing_indicator"]
        f.n_train = int(state.get("n_train", 0))
        if "min" in state or "max" in state:
            require_keys(state, ("min", "max"), what=what)
            low, high = state["min"], state["max"]
            if (low is None) != (high is None) or (low is not None and not (
                    is_finite_number(low) and is_finite_number(high) and low <= high)):
                raise DataError(f"{what}: saved min={low!r}, max={high!r} must be finite numbers with min <= max "
                                "(or both null); the file is damaged: retrain the model")
            f.min, f.max = (None, None) if low is None else (float(low), float(high))
        elif len(f.quantiles):  # saved before min/max were: the quantiles' ends are the training range
            f.min, f.max = float(f.quantiles[0]), float(f.quantiles[-1])
        f.fitted = True
        return f
