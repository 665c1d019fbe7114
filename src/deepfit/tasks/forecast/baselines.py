"""The statistical forecasts fitted beside the network: seasonal-naive and Theta (numpy only).

Both return quantile forecasts ``(horizon, len(quantiles))`` from one series' history:

- :func:`seasonal_naive`: the value one season back (naive when the history is shorter than a
  season); quantiles from the spread of the seasonal differences, widening with each season ahead;
- :func:`theta`: the Theta method of Assimakopoulos & Nikolopoulos (2000) as in R's
  ``forecast::thetaf`` — a 90 % autocorrelation test for seasonality, classical multiplicative
  decomposition, simple exponential smoothing (alpha by least squares on a grid) plus half the
  linear trend, reseasonalised; quantiles from the SES one-step errors. Histories shorter than
  three values fall back to naive.

Example:
    >>> import numpy as np
    >>> y = np.array([1.0, 2, 3, 4, 5, 6, 7, 8])
    >>> seasonal_naive(y, 2, 1, (0.5,))[:, 0].tolist()
    [8.0, 8.0]
    >>> bool(theta(y, 3, 1, (0.5,))[0, 0] > 8)       # a trend continues
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

__all__ = ["seasonal_naive", "theta", "naive", "seasonal_indices", "z_scores"]

_ALPHAS = np.concatenate([np.linspace(0.02, 0.3, 15), np.linspace(0.35, 0.99, 14)])


def z_scores(quantiles: Sequence[float]) -> np.ndarray:
    """The standard normal quantile of each level."""
    return np.array([NormalDist().inv_cdf(q) for q in quantiles])


def _spread(point: np.ndarray, sd: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    return point[:, None] + sd[:, None] * z_scores(quantiles)[None, :]


def naive(y: np.ndarray, horizon: int, quantiles: Sequence[float]) -> np.ndarray:
    """The last value, with a random walk's widening spread."""
    diffs = np.diff(y)
    sigma = float(np.sqrt(np.mean(diffs ** 2))) if len(diffs) else 0.0
    steps = np.arange(1, horizon + 1)
    return _spread(np.full(horizon, y[-1], dtype=np.float64), sigma * np.sqrt(steps), quantiles)


def seasonal_naive(y: np.ndarray, horizon: int, m: int, quantiles: Sequence[float]) -> np.ndarray:
    """The value ``m`` steps back, repeated; naive when the history is shorter than ``m``."""
    y = np.asarray(y, dtype=np.float64)
    if m <= 1 or len(y) < m:
        return naive(y, horizon, quantiles)
    steps = np.arange(horizon)
    point = y[len(y) - m + steps % m]
    diffs = y[m:] - y[:-m]
    sigma = float(np.sqrt(np.mean(diffs ** 2))) if len(diffs) else 0.0
    return _spread(point, sigma * np.sqrt(steps // m + 1), quantiles)


def _acf(y: np.ndarray, lags: int) -> np.ndarray:
    x = y - y.mean()
    denom = float(np.dot(x, x)) or 1.0
    return np.array([np.dot(x[k:], x[:-k]) / denom for k in range(1, lags + 1)])


def _is_seasonal(y: np.ndarray, m: int) -> bool:
    """forecast::thetaf's test: |r_m| beyond 1.645 standard errors (Bartlett)."""
    if m <= 1 or len(y) < 2 * m or np.any(y <= 0):
        return False
    r = _acf(y, m)
    limit = 1.645 * np.sqrt((1 + 2 * np.sum(r[:-1] ** 2)) / len(y))
    return bool(abs(r[-1]) > limit)


def seasonal_indices(y: np.ndarray, m: int) -> np.ndarray:
    """Classical multiplicative decomposition: the ``m`` seasonal indices (mean 1), in order of
    position ``t mod m`` of the series' own time index."""
    if m % 2 == 0:
        weights = np.r_[0.5, np.ones(m - 1), 0.5] / m
    else:
        weights = np.ones(m) / m
    trend = np.convolve(y, weights, mode="valid")
    offset = (len(weights) - 1) // 2
    ratios = y[offset:offset + len(trend)] / trend
    positions = (np.arange(len(trend)) + offset) % m
    idx = np.array([ratios[positions == p].mean() if np.any(positions == p) else 1.0 for p in range(m)])
    idx = np.where(np.isfinite(idx) & (idx > 0), idx, 1.0)
    return idx / idx.mean()


def _ses(y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(alpha, final level, one-step errors) of simple exponential smoothing, alpha on a grid by SSE."""
    levels = np.full(len(_ALPHAS), y[0])
    sse = np.zeros(len(_ALPHAS))
    errors = np.zeros((len(_ALPHAS), len(y) - 1))
    for t in range(1, len(y)):
        e = y[t] - levels
        errors[:, t - 1] = e
        sse += e ** 2
        levels = levels + _ALPHAS * e
    best = int(np.argmin(sse))
    return float(_ALPHAS[best]), float(levels[best]), errors[best]


def theta(y: np.ndarray, horizon: int, m: int, quantiles: Sequence[float]) -> np.ndarray:
    """The Theta method (see the module docstring)."""
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if n < 3:
        return naive(y, horizon, quantiles)
    seasonal = _is_seasonal(y, m)
    if seasonal:
        idx = seasonal_indices(y, m)
        season = idx[np.arange(n) % m]
        future_season = idx[np.arange(n, n + horizon) % m]
    else:
        season, future_season = np.ones(n), np.ones(horizon)
    x = y / season
    alpha, level, errors = _ses(x)
    t = np.arange(1, n + 1)
    slope = float(np.polyfit(t, x, 1)[0])
    steps = np.arange(horizon)
    point = level + 0.5 * slope * (steps + (1 - (1 - alpha) ** n) / alpha)
    sigma = float(np.sqrt(np.mean(errors ** 2))) if len(errors) else 0.0
    sd = sigma * np.sqrt(1 + alpha ** 2 * steps)
    return _spread(point, sd, quantiles) * future_season[:, None]
