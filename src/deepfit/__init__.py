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
from deepfit.errors import DeepfitError, DeepfitWarning

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from deepfit import datasets as datasets
    from deepfit.predict import Predictor as Predictor
    from deepfit.engine.callbacks import Callback as Callback
    from deepfit.engine.learner import Learner as Learner

__all__ = ["__version__", "DeepfitError", "DeepfitWarning", "Learner", "Callback", "Predictor", "datasets", "fit",
           "load"]

_LAZY = {
    "Predictor": ("deepfit.predict", "Predictor"),
    "Learner": ("deepfit.engine.learner", "Learner"),
    "Callback": ("deepfit.engine.callbacks", "Callback"),
    "datasets": ("deepfit.datasets", None),
}


def fit(
    data: Any,
    target: str | None = None,
    *,
    task: str = "auto",
    types: dict[str, str] | None = None,
    test: Any = None,
    out: str | None = None,
    resume: bool = False,
    progress: bool = True,
    **settings: Any,
) -> Any:
    """Train a model on any data deepfit takes and return its predictor.

    The data decides the task (``deepfit.tasks.route``, the same rule as ``deepfit train``):
    a table (CSV/TSV/Parquet path, pandas DataFrame, 2-D NumPy array) trains a table model and
    returns a :class:`~deepfit.tasks.table.TablePredictor`; a folder of class folders, or a
    table with an image-path column, an image classifier (docs/images.md); ``task="lm"`` a
    language model on a text corpus (docs/lm.md); the name of a bundled dataset (``"digits"``,
    ``"mnist1d"``) that dataset's model.

    Args:
        data: what to train on (see above).
        target: the column to predict (tables, images; for ``task="lm"`` a table's text column).
        task: ``"auto"``, ``"classify"``, ``"regress"`` or ``"lm"``.
        types: column type overrides, e.g. ``{"zip": "category"}``.
        test: labelled test data; otherwise tables hold out ``test_size`` of the rows.
        out: write the run directory (artifact, ``metrics.json``, ``report.html``) here.
        resume: continue the interrupted run in ``out`` with its stored settings.
        progress: print progress.
        **settings: any setting of the task (``time_limit``, ``seed``, ``epochs``, ``batch_size``,
            ``lr``, ``split_by``, ``group``, and the task's own: see ``TableSettings``,
            ``ImageSettings``, ``LMSettings``, ``ArraysSettings``); an unknown name is an error.

    Example:
        >>> import deepfit  # doctest: +SKIP
        >>> model = deepfit.fit("houses.csv", target="price", time_limit=60)  # doctest: +SKIP
        >>> model.metrics["test_rmse"], model.predict(new_rows)  # doctest: +SKIP
    """
    import argparse

    from deepfit.tasks import route
    from deepfit.tasks.runner import fit as run_fit
    from deepfit.tasks.runner import get_task, settings_with

    common = ("time_limit", "seed", "epochs", "batch_size", "lr", "checkpoint_every", "split_by", "group")
    kind = route(data, task=task, target=target, types=types)
    task_cls = get_task(kind)
    given: dict[str, Any] = {"task": None if task == "auto" else task, "target": target, "types": types or None,
                             **{k: settings.pop(k) for k in common if k in settings}}
    chosen = task_cls.settings_from_cli(argparse.Namespace(data=data), {k: v for k, v in given.items() if v is not None})
    chosen.update(settings)  # the task's own settings, by their field names
    if resume:
        return run_fit(kind, data, None, test=test, out=out, resume=True, progress=progress, given=chosen)
    return run_fit(kind, data, settings_with(task_cls.Settings, chosen), test=test, out=out, progress=progress)


def load(directory: Any) -> Any:
    """Load any saved model directory (``deepfit.tasks.load``): the predictor follows its kind.

    Example:
        >>> model = deepfit.load("runs/credit")          # doctest: +SKIP
        >>> model.predict_frame("new_loans.csv")          # doctest: +SKIP
    """
    from deepfit.tasks import load as load_any

    return load_any(directory)


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
