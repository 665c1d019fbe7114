"""Features: one class per column kind, a table preprocessor, and target encoders.

Every feature is fitted on training rows only and keeps its state as plain JSON.
"""

from deepfit.features.base import FEATURES as FEATURES
from deepfit.features.base import Feature as Feature
from deepfit.features.binary import BinaryFeature as BinaryFeature
from deepfit.features.category import CategoryFeature as CategoryFeature
from deepfit.features.date import DateFeature as DateFeature
from deepfit.features.number import NumberFeature as NumberFeature
from deepfit.features.preprocessor import TablePreprocessor as TablePreprocessor
from deepfit.features.sequence import SequenceFeature as SequenceFeature
from deepfit.features.target import ClassTarget as ClassTarget
from deepfit.features.target import RegressionTarget as RegressionTarget
from deepfit.features.target import make_target as make_target
from deepfit.features.target import target_from_state as target_from_state
from deepfit.features.text import TextFeature as TextFeature

__all__ = [
    "FEATURES",
    "Feature",
    "BinaryFeature",
    "CategoryFeature",
    "DateFeature",
    "NumberFeature",
    "TextFeature",
    "SequenceFeature",
    "TablePreprocessor",
    "ClassTarget",
    "RegressionTarget",
    "make_target",
    "target_from_state",
]
