"""Callbacks: the base class and the built-ins, one per file."""

from deepfit.engine.callbacks.base import EVENTS, Callback, CallbackList
from deepfit.engine.callbacks.early_stopping import EarlyStopping
from deepfit.engine.callbacks.metrics_log import CSVLogger, JSONLLogger
from deepfit.engine.callbacks.model_checkpoint import ModelCheckpoint
from deepfit.engine.callbacks.progress import ProgressBar, ProgressLog
from deepfit.engine.callbacks.tensorboard import TensorBoardLogger
from deepfit.engine.callbacks.time_limit import TimeLimit

__all__ = [
    "EVENTS",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "CSVLogger",
    "JSONLLogger",
    "ModelCheckpoint",
    "ProgressBar",
    "ProgressLog",
    "TensorBoardLogger",
    "TimeLimit",
]
