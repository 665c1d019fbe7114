"""Forecast accuracy: MASE (the M-competitions' seasonal-naive scaling), sMAPE and weighted quantile loss.

Each series' errors are taken over its forecast horizon; the figures of a set of series are
means over series (MASE, sMAPE) or a ratio of sums (WQL), as in the M3/M4 papers and GluonTS.

Example:
    >>> import numpy as np
    >>> history = np.array([1.0, 2, 3, 4])
    >>> round(mase_scale(history, 1), 3)           # mean |y_t - y_(t-1)|
    1.0
    >>> round(smape(np.array([10.0]), np.array([12.0])), 2)
    18.18
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["mase_scale", "smape", "pinball", "Scores"]


def mase_scale(history: np.ndarray, m: int) -> float:
    """The in-sample mean absolute error of the seasonal-naive forecast (lag ``m``; lag 1 when
    the history is no longer than ``m``); NaN for a constant history (no scale)."""
    lag = m if len(history) > m else 1
    if len(history) <= lag:
        return float("nan")
    scale = float(np.mean(np.abs(history[lag:] - history[:-lag])))
    return scale if scale > 0 else float("nan")


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Symmetric MAPE in percent, ``200 |y - f| / (|y| + |f|)`` averaged (0 where both are 0)."""
    denom = np.abs(actual) + np.abs(forecast)
    ratio = np.where(denom > 0, 2 * np.abs(actual - forecast) / np.where(denom > 0, denom, 1), 0.0)
    return float(100 * np.mean(ratio))


def pinball(actual: np.ndarray, q_forecast: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """Summed pinball loss per quantile level: ``actual`` (h,), ``q_forecast`` (h, Q) -> (Q,)."""
    q = np.asarray(quantiles)[None, :]
    diff = actual[:, None] - q_forecast
    return np.sum(np.maximum(q * diff, (q - 1) * diff), axis=0)


class Scores:
    """Accumulates forecasts of many series and windows; :meth:`summary` gives the figures."""

    def __init__(self, quantiles: Sequence[float]) -> None:
        self.quantiles = tuple(quantiles)
        self.mase: list[float] = []
        self.smape: list[float] = []
        self.loss = np.zeros(len(self.quantiles))
        self.abs_total = 0.0

    def add(self, actual: np.ndarray, q_forecast: np.ndarray, history: np.ndarray, m: int) -> float:
        """Add one forecast (median = the 0.5 column); returns its MASE (NaN: no scale)."""
        median = q_forecast[:, self.quantiles.index(0.5)]
        scale = mase_scale(history, m)
        value = float(np.mean(np.abs(actual - median)) / scale) if np.isfinite(scale) else float("nan")
        if np.isfinite(value):
            self.mase.append(value)
        self.smape.append(smape(actual, median))
        self.loss += pinball(actual, q_forecast, self.quantiles)
        self.abs_total += float(np.sum(np.abs(actual)))
        return value

    def summary(self) -> dict[str, float]:
        """``mase``, ``smape``, ``wql`` (mean over levels of 2 x pinball / sum |y|), ``n``."""
        wql = float(np.mean(2 * self.loss / self.abs_total)) if self.abs_total > 0 else float("nan")
        return {"mase": float(np.mean(self.mase)) if self.mase else float("nan"),
                "smape": float(np.mean(self.smape)) if self.smape else float("nan"),
                "wql": wql, "n": float(len(self.smape))}
