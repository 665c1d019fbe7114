"""The arrays task: a dataset bundled with deepfit (``deepfit train digits``, ``mnist1d``)."""

from deepfit.tasks.arrays.predictor import ArraysPredictor
from deepfit.tasks.arrays.settings import DEFAULTS, ArraysSettings
from deepfit.tasks.arrays.task import ArraysTask

__all__ = ["ArraysTask", "ArraysSettings", "ArraysPredictor", "DEFAULTS"]
