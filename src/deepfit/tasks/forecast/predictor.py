"""The predictor of the forecast task: the network, Theta and seasonal-naive, combined by weights.

``predict_frame(history)`` forecasts the next ``horizon`` steps of every series in a table (the
columns the model was trained on; rows after a series' last target carry the known covariates
of its future): one row per series and step with the series column, the time column,
``prediction`` (the median) and one column per quantile (``p10``, ``p50``, ``p90``). The
quantiles are a weighted average of each method's quantiles, each increasing by construction,
so they never cross. ``evaluate(data)`` holds out the last ``horizon`` values of every series,
forecasts them from the rest and scores MASE, sMAPE and WQL beside seasonal-naive.

Example:
    >>> import deepfit                                               # doctest: +SKIP
    >>> model = deepfit.load("runs/sales")                           # doctest: +SKIP
    >>> model.predict_frame("sales.csv").head(3)                     # doctest: +SKIP
      store       date  prediction    p10    p50    p90
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
import torch

from deepfit.errors import DataError
from deepfit.models.nbeats import NBeats
from deepfit.tasks.base import BasePredictor
from deepfit.tasks.forecast.baselines import seasonal_naive, theta
from deepfit.tasks.forecast.data import SeriesSet, read_series, to_timestamps
from deepfit.tasks.forecast.metrics import Scores
from deepfit.tasks.forecast.windows import make_windows

__all__ = ["ForecastPredictor", "METHODS", "quantile_name"]

METHODS = ("deep", "theta", "snaive")
BATCH = 2048


def quantile_name(q: float) -> str:
    """``0.1`` -> ``"p10"``, ``0.025`` -> ``"p2.5"``."""
    value = round(100 * q, 4)
    return f"p{int(value) if value == int(value) else value}"


class ForecastPredictor(BasePredictor):
    """A trained forecaster (see the module docstring)."""

    kind = "forecast"
    tasks = ("forecast",)
    model_names = ("nbeats",)
    required = {"columns": dict, "horizon": int, "freq": str, "convention": str, "season_length": int,
                "quantiles": list, "weights": dict, "series_ids": list, "covariates": dict}

    def __init__(self, *, model: NBeats, columns: dict[str, Any], horizon: int, freq: str, convention: str,
                 season_length: int, quantiles: list[float], weights: dict[str, float], series_ids: list[str],
                 covariates: dict[str, list[float]], metrics: dict[str, float] | None = None,
                 info: dict[str, Any] | None = None) -> None:
        self.task = "forecast"
        self.model = model.eval()
        self.columns = dict(columns)
        self.horizon, self.freq, self.convention = int(horizon), freq, convention
        self.season_length = int(season_length)
        self.quantiles = [float(q) for q in quantiles]
        self.weights = {k: float(weights.get(k, 0.0)) for k in METHODS}
        self.series_ids = [str(s) for s in series_ids]
        self._index = {s: i + 1 for i, s in enumerate(self.series_ids)}
        self.covariates = {k: list(v) for k, v in covariates.items()}
        self.metrics: dict[str, float] = dict(metrics or {})
        self.info: dict[str, Any] = dict(info or {})

    model_name = "nbeats"

    def _meta(self) -> dict[str, Any]:
        return {"columns": self.columns, "horizon": self.horizon, "freq": self.freq, "convention": self.convention,
                "season_length": self.season_length, "quantiles": self.quantiles, "weights": self.weights,
                "series_ids": self.series_ids, "covariates": self.covariates}

    @classmethod
    def _from_meta(cls, meta: dict[str, Any], directory: Path) -> Self:
        config = dict(meta["model"]["config"])
        model = NBeats(config.pop("context"), config.pop("horizon"), config.pop("quantiles"), config.pop("n_series"),
                       **config)
        if model.horizon != meta["horizon"] or list(model.quantiles) != [float(q) for q in meta["quantiles"]]:
            raise ValueError("the model's horizon or quantiles differ from the artifact's")
        return cls(model=model, columns=meta["columns"], horizon=meta["horizon"], freq=meta["freq"],
                   convention=meta["convention"], season_length=meta["season_length"], quantiles=meta["quantiles"],
                   weights=meta["weights"], series_ids=meta["series_ids"], covariates=meta["covariates"],
                   metrics=cls._stored_metrics(meta), info=meta.get("info", {}))

    # ------------------------------------------------------------------ forecasting

    @property
    def cov_names(self) -> list[str]:
        return list(self.covariates.get("names", []))

    def read(self, data: Any, *, source: str = "data", need_target: bool = True) -> SeriesSet:
        """Read a table with the training columns and frequency (the checks of ``data.py``)."""
        c = self.columns
        return read_series(data, target=c["target"], time=c["time"], series=c.get("series"),
                           freq=None if self.freq == "step" else self.freq, covariates=tuple(self.cov_names),
                           source=source, need_target=need_target)

    def forecast_at(self, ss: SeriesSet, origins: list[tuple[int, int]], *,
                    future: bool = False) -> dict[str, np.ndarray]:
        """Each method's quantile forecasts ``(N, horizon, Q)`` at ``origins`` (series position,
        origin index): from ``values[:origin]``; with ``future`` the covariates come from the
        rows after the last target."""
        h, m, qs = self.horizon, self.season_length, self.quantiles
        out = {"theta": np.zeros((len(origins), h, len(qs))), "snaive": np.zeros((len(origins), h, len(qs)))}
        for row, (i, o) in enumerate(origins):
            history = ss.values[i][:o]
            out["theta"][row] = theta(history, h, m, qs)
            out["snaive"][row] = seasonal_naive(history, h, m, qs)
        out["deep"] = self._deep(ss, origins, future=future)
        return out

    def _deep(self, ss: SeriesSet, origins: list[tuple[int, int]], *, future: bool) -> np.ndarray:
        names = self.cov_names
        covs = ss.covariates
        if names and future:
            covs = []
            for i, sid in enumerate(ss.ids):
                if len(ss.future[i]) < self.horizon:
                    raise DataError(f"series {sid!r} has {len(ss.future[i])} future row(s) with its known covariates "
                                    f"({', '.join(names)}) after its last target; forecasting needs {self.horizon}: "
                                    "add rows with the covariates and an empty target")
                covs.append(np.concatenate([ss.covariates[i], ss.future[i][:self.horizon]]))
        mean = np.asarray(self.covariates.get("mean", []), np.float64)
        std = np.asarray(self.covariates.get("std", []), np.float64)
        w = make_windows(ss.values, ss.starts, covs, origins, context=self.model.context, horizon=self.horizon,
                         season=self.season_length, series_index=[self._index.get(s, 0) for s in ss.ids],
                         cov_mean=mean, cov_std=std)
        tensors = w.tensors()
        outs = []
        with torch.inference_mode():
            for a in range(0, len(origins), BATCH):
                outs.append(self.model(*(t[a:a + BATCH] for t in tensors)).mean(1).double().numpy())
        scaled = np.concatenate(outs) if outs else np.zeros((0, self.horizon, len(self.quantiles)))
        return scaled * w.scale[:, None, None]

    def combine(self, forecasts: dict[str, np.ndarray]) -> np.ndarray:
        """The weighted average of the methods' quantiles, sorted along the last axis (a no-op
        but for rounding: each method's quantiles already increase)."""
        total = sum(self.weights[k] * forecasts[k] for k in METHODS if self.weights[k] > 0)
        return np.sort(total, axis=-1)

    def forecast(self, data: Any, *, source: str = "data") -> tuple[SeriesSet, np.ndarray]:
        """(the series read, the combined forecasts ``(series, horizon, Q)``) after each series' end."""
        ss = self.read(data, source=source)
        origins = [(i, len(v)) for i, v in enumerate(ss.values)]
        return ss, self.combine(self.forecast_at(ss, origins, future=True))

    def predict_frame(self, data: Any, *, source: str = "rows") -> Any:
        """What ``deepfit predict`` writes (see the module docstring)."""
        import pandas as pd

        ss, q = self.forecast(data, source=source)
        h = self.horizon
        c = self.columns
        ordinals = np.concatenate([np.arange(e + 1, e + 1 + h) for e in ss.ends()])
        frame = pd.DataFrame()
        if c.get("series"):
            frame[c["series"]] = np.repeat(ss.ids, h)
        frame[c["time"]] = to_timestamps(ordinals, ss.freq, ss.convention)
        flat = q.reshape(-1, len(self.quantiles))
        frame["prediction"] = flat[:, self.quantiles.index(0.5)]
        for j, level in enumerate(self.quantiles):
            frame[quantile_name(level)] = flat[:, j]
        return frame

    def evaluate(self, data: Any, *, source: str = "rows") -> dict[str, float]:
        """Hold out the last ``horizon`` values of every series longer than that, forecast them
        from the rest: ``mase``, ``smape``, ``wql`` and the same for seasonal-naive (``*_snaive``)."""
        ss = self.read(data, source=source)
        h = self.horizon
        keep = [i for i, v in enumerate(ss.values) if len(v) > h]
        if not keep:
            raise DataError(f"{source}: no series is longer than the horizon ({h}); evaluate holds out the last "
                            f"{h} values of each series and forecasts them from the rest")
        origins = [(i, len(ss.values[i]) - h) for i in keep]
        forecasts = self.forecast_at(ss, origins)
        combined = self.combine(forecasts)
        ours, snaive = Scores(self.quantiles), Scores(self.quantiles)
        for row, (i, o) in enumerate(origins):
            actual, history = ss.values[i][o:o + h], ss.values[i][:o]
            ours.add(actual, combined[row], history, self.season_length)
            snaive.add(actual, forecasts["snaive"][row], history, self.season_length)
        a, b = ours.summary(), snaive.summary()
        return {"mase": a["mase"], "smape": a["smape"], "wql": a["wql"], "mase_snaive": b["mase"],
                "smape_snaive": b["smape"], "wql_snaive": b["wql"], "series": float(len(keep))}

    def __repr__(self) -> str:
        return (f"ForecastPredictor(horizon={self.horizon}, freq={self.freq!r}, series={len(self.series_ids)}, "
                f"weights={self.weights}, metrics={self.metrics})")
