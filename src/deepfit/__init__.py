"""deepfit: data in, model out — one PyTorch engine for tables, images, text and signals.

Heavy modules (torch and everything built on it) are imported lazily on first use, so
``import deepfit`` and ``deepfit --help`` stay fast.

Example:
    >>> import deepfit
    >>> deepfit.__version__
    '0.1.0'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from deepfit._version import __version__
from deepfit.errors import DeepfitError

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from deepfit import datasets as datasets
    from deepfit.engine.callbacks import Callback as Callback
    from deepfit.engine.learner import Learner as Learner

__all__ = ["__version__", "DeepfitError", "Learner", "Callback", "datasets"]

_LAZY = {
    "Learner": ("deepfit.engine.learner", "Learner"),
    "Callback": ("deepfit.engine.callbacks", "Callback"),
    "datasets": ("deepfit.datasets", None),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        value = module if attr is None else getattr(module, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'deepfit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
