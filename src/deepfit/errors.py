"""One exception hierarchy for deepfit.

Every error deepfit raises on purpose is a :class:`DeepfitError`; the subclasses say what
went wrong. Messages name the bad value, where it came from, and the fix.

:class:`DeepfitWarning` is deepfit's one warning category: something worth knowing that does
not stop the work (e.g. rows to predict with values outside the training range).

``CancelFit`` and ``CancelEpoch`` are not errors: callbacks raise them to stop training early.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "DeepfitError",
    "ConfigError",
    "DataError",
    "CheckpointError",
    "NonFiniteLossError",
    "CallbackError",
    "DistributedError",
    "ExportError",
    "PretrainedError",
    "CancelFit",
    "CancelEpoch",
    "ColumnNotFound",
    "DeepfitWarning",
]


class DeepfitError(Exception):
    """Base class of every error deepfit raises on purpose."""


class ConfigError(DeepfitError, ValueError):
    """An argument or setting has a bad value."""


class DataError(DeepfitError, ValueError):
    """Input data cannot be used as given (wrong shape, type, size, or content)."""


class CheckpointError(DeepfitError):
    """A checkpoint is missing, truncated, corrupt, or does not fit the run resuming it."""


class NonFiniteLossError(DeepfitError, FloatingPointError):
    """The training loss became NaN or infinite; training stopped."""


class CallbackError(DeepfitError):
    """A callback raised an unexpected error; the message names the callback and event."""


class DistributedError(DeepfitError):
    """torch.distributed is misconfigured (environment, backend, or world size)."""


class ExportError(DeepfitError):
    """A model cannot be exported (a column type or layer without an ONNX equivalent, a missing
    exporter package, or an export whose outputs do not match the model's); nothing is written."""


class PretrainedError(DeepfitError):
    """Pretrained weights cannot be had: their package is not installed (the message names the
    extra to install), or its file cannot be read or converted."""


class DeepfitWarning(UserWarning):
    """Something worth knowing that did not stop the work; the message says what and what was done."""


class CancelFit(Exception):
    """Raise from a callback to end ``fit`` cleanly after the current step."""


class CancelEpoch(Exception):
    """Raise from a callback to end the current epoch cleanly and go on to validation."""


class ColumnNotFound(DataError, KeyError):
    """A named column (target, type override, split column) is not in the data.

    Also a ``KeyError``, so ``except KeyError`` around ``df[name]``-style code still works;
    ``str()`` gives the plain message (``KeyError`` would wrap it in quotes).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


def unknown_choice(what: str, value: object, choices: Iterable[str]) -> ConfigError:
    """A ConfigError for a name not among ``choices``, suggesting the closest one.

    Example:
        >>> str(unknown_choice("optimizer", "adamww", ["adamw", "sgd"]))
        "unknown optimizer 'adamww'; did you mean 'adamw'? Known: adamw, sgd"
    """
    names = sorted(choices)
    close = difflib.get_close_matches(str(value).lower(), names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return ConfigError(f"unknown {what} {value!r}{hint} Known: {', '.join(names)}")
