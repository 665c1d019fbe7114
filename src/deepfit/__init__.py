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
    from deepfit.predict import Predictor as Predictor
    from deepfit.predict import load as load
    from deepfit.engine.callbacks import Callback as Callback
    from deepfit.engine.learner import Learner as Learner

__all__ = ["__version__", "DeepfitError", "Learner", "Callback", "Predictor", "datasets", "fit", "load"]

_LAZY = {
    "Predictor": ("deepfit.predict", "Predictor"),
    "load": ("deepfit.predict", "load"),
    "Learner": ("deepfit.engine.learner", "Learner"),
    "Callback": ("deepfit.engine.callbacks", "Callback"),
    "datasets": ("deepfit.datasets", None),
}


def fit(
    data: Any,
    target: str,
    *,
    task: str = "auto",
    types: dict[str, str] | None = None,
    time_limit: float | None = None,
    seed: int = 0,
    test: Any = None,
    test_size: float = 0.2,
    split_by: str | None = None,
    group: str | None = None,
    out: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Predictor:
    """Train a model on a table (or on images) and return a :class:`~deepfit.predict.Predictor`.

    Images: ``data`` a folder with one sub-folder per class, or a table with an image-path
    column (its other columns join the model) trains an image classifier and returns a
    :class:`~deepfit.tasks.images.ImagePredictor` (see docs/images.md; for a folder, ``target``
    names the label, e.g. ``"label"``).

    Args:
        data: a CSV/TSV/Parquet path, a pandas DataFrame, a 2-D NumPy array, or a folder of images.
        target: the column to predict (close names are suggested when it is not found).
        task: ``"auto"``, ``"classify"`` or ``"regress"``.
        types: column type overrides, e.g. ``{"zip": "category"}``.
        time_limit: training budget in seconds (early stopping usually ends sooner).
        seed: fixes the splits, the initialisation and the sample order.
        test: labelled test data; otherwise ``test_size`` of the rows are held out
            (stratified for classification; by ``split_by`` time order or by ``group``).
        out: write the artifact, ``metrics.json`` and ``report.html`` to this new directory.
        resume: continue the interrupted run in ``out``.

    Example:
        >>> import deepfit  # doctest: +SKIP
        >>> model = deepfit.fit("houses.csv", target="price", time_limit=60)  # doctest: +SKIP
        >>> model.metrics["test_rmse"], model.predict(new_rows)  # doctest: +SKIP
    """
    from deepfit.tasks.images import is_image_data
    from deepfit.tasks.table import TableSettings, fit_table

    if is_image_data(data, target=target, types=types):  # a folder of images, or a table with an image-path column
        from deepfit.tasks.images import ImageSettings, fit_images

        image_settings = ImageSettings(target=target, task="auto" if task in ("auto", "classify") else task,
                                       types=dict(types or {}), time_limit=time_limit, seed=seed, test_size=test_size,
                                       split_by=split_by, group=group)
        return fit_images(data, image_settings, test=test, out=out, resume=resume, progress=progress)
    settings = TableSettings(target=target, task=task, types=dict(types or {}), time_limit=time_limit, seed=seed,
                             test_size=test_size, split_by=split_by, group=group)
    return fit_table(data, settings, test=test, out=out, resume=resume, progress=progress)


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
