"""The forecast task: one global deep model across time series, beside Theta and seasonal-naive (docs/forecast.md)."""

from deepfit.tasks.forecast.predictor import ForecastPredictor
from deepfit.tasks.forecast.settings import ForecastSettings
from deepfit.tasks.forecast.task import ForecastTask

__all__ = ["ForecastTask", "ForecastSettings", "ForecastPredictor"]
