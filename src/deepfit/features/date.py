"""Date columns: a scaled time trend plus cyclic calendar features.

Encode emits, in this order, into ``"num"``:

* the time as a fractional year, standardised with the training mean and std (std 0 → 1) and
  clipped to +/-5 — linear, so later dates (a time split) extrapolate instead of saturating; it gets
  piecewise-linear bins (quantiles of the scaled training values) like a number column;
* sin/cos pairs of month (12), day of week (7) and day of year (365.25);
* sin/cos of the hour of day (24, minutes included) only if the training rows had a time of day;
* a 0/1 missing indicator only if the training rows had missing dates.

Missing dates (NaT) encode as 0 in every column. Time zones are converted to UTC.

Example:
    >>> import pandas as pd
    >>> f = DateFeature("day").fit(pd.Series(pd.to_datetime(["2020-01-01", "2021-06-30"])))
    >>> f.encode(pd.Series(pd.to_datetime(["2020-03-01"])))["num"].shape
    (1, 7)
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd

from deepfit.errors import DataError
from deepfit.features.base import Feature, require_keys
from deepfit.features.number import CLIP, fit_bins, float_list

__all__ = ["DateFeature", "as_datetime"]


def as_datetime(values: pd.Series, name: str) -> pd.Series:
    """The column as naive UTC datetimes; DataError naming the column if it holds no dates."""
    if not pd.api.types.is_datetime64_any_dtype(values):
        try:
            values = pd.to_datetime(values, errors="raise")
        except (ValueError, TypeError) as e:
            raise DataError(f"date column '{name}' holds values that are not dates ({e}); coerce it first with "
                            "deepfit.data.table.coerce_column(values, 'date')") from e
    if getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values


def _cycle(x: np.ndarray, period: float) -> list[np.ndarray]:
    angle = 2 * np.pi * x / period
    return [np.sin(angle), np.cos(angle)]


class DateFeature(Feature):
    """A datetime column → ``"num"`` (N, 7..10): trend, cyclic calendar features, missing indicator."""

    kind = "date"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.mean = 0.0
        self.std = 1.0
        self.bins: list[float] | None = None
        self.has_time = False
        self.missing_indicator = False

    @staticmethod
    def _years(d: pd.Series) -> np.ndarray:
        years = (d - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=365.25) + 1970.0
        return years.to_numpy(dtype=np.float64, na_value=np.nan)

    def fit(self, values: pd.Series) -> Self:
        d = as_datetime(values, self.name)
        t = self._years(d)
        ok = np.isfinite(t)
        if ok.any():
            self.mean = float(t[ok].mean())
            std = float(t[ok].std())
            self.std = std if std > 1e-12 else 1.0
            self.bins = fit_bins(self._scale(t[ok]))
            present = d[d.notna()]
            self.has_time = bool(((present.dt.hour != 0) | (present.dt.minute != 0)).any())
        self.missing_indicator = bool((~ok).any())
        self.fitted = True
        return self

    def _scale(self, t: np.ndarray) -> np.ndarray:
        return np.clip((t - self.mean) / self.std, -CLIP, CLIP)

    def encode(self, values: pd.Series) -> dict[str, np.ndarray]:
        self._check_fitted()
        d = as_datetime(values, self.name)
        t = self._years(d)
        missing = ~np.isfinite(t)

        def part(accessor: str) -> np.ndarray:
            return getattr(d.dt, accessor).to_numpy(dtype=np.float64, na_value=np.nan)

        cols = [self._scale(t)]
        cols += _cycle(part("month") - 1, 12)
        cols += _cycle(part("day_of_week"), 7)
        cols += _cycle(part("day_of_year") - 1, 365.25)
        if self.has_time:
            cols += _cycle(part("hour") + part("minute") / 60, 24)
        out = np.stack(cols, axis=1)  # (N, 7 or 9)
        out[missing] = 0.0
        if self.missing_indicator:
            out = np.concatenate([out, missing[:, None].astype(np.float64)], axis=1)
        return {"num": out.astype(np.float32)}

    def num_bins(self) -> list[list[float] | None]:
        n = 7 + (2 if self.has_time else 0) + (1 if self.missing_indicator else 0)
        return [self.bins] + [None] * (n - 1)

    def state_dict(self) -> dict:
        self._check_fitted()
        return {"mean": self.mean, "std": self.std, "bins": self.bins, "has_time": self.has_time,
                "missing_indicator": self.missing_indicator}

    @classmethod
    def from_state(cls, name: str, state: dict) -> Self:
        what = f"date column '{name}'"
        require_keys(state, ("mean", "std", "bins", "has_time", "missing_indicator"), what=what)
        f = cls(name)
        f.mean, f.std = float_list({"v": [state["mean"], state["std"]]}, "v", what, increasing=False)
        if f.std <= 0:
            raise DataError(f"{what}: saved 'std' must be > 0; retrain the model")
        f.bins = None if state["bins"] is None else float_list(state, "bins", what, increasing=True, strict=True)
        for key in ("has_time", "missing_indicator"):
            if not isinstance(state[key], bool):
                raise DataError(f"{what}: saved '{key}' must be true or false; retrain the model")
        f.has_time, f.missing_indicator = state["has_time"], state["missing_indicator"]
        f.fitted = True
        return f
