"""scikit-learn estimators: :class:`DeepfitClassifier` and :class:`DeepfitRegressor`.

They wrap deepfit's table task (:func:`deepfit.fit` on a DataFrame) in scikit-learn's
conventions, so a deepfit model drops into ``Pipeline``, ``cross_val_score``, ``GridSearchCV``
and ``clone``: ``__init__`` only stores the settings, ``fit(X, y)`` trains and returns
``self``, and what was learnt ends in ``_`` (``classes_``, ``n_features_in_``,
``feature_names_in_``, ``predictor_`` — the fitted :class:`~deepfit.predict.Predictor`, which
``predictor_.save(dir)`` writes as a deepfit artifact).

What ``fit`` hands to deepfit:

* **X** — a 2-D NumPy array (numbers; NaN is a missing value, ±inf is an error) becomes a
  table with columns ``x0..x{n-1}``; a DataFrame keeps its columns and dtypes: numeric columns
  are numbers, pandas ``category`` columns are categories, every other column (strings,
  booleans, dates, free text) is typed as :func:`deepfit.fit` types it. ``types=`` overrides
  any of this by column name (``x0``, ... for arrays).
* **y** — joins the table as a target column whose name no feature can clash with. The
  classifier always classifies (integer, string and boolean labels alike; ``classes_`` is
  ``np.unique(y)``); the regressor always regresses.
* **Splits** — no test split: every row trains, and ``valid_size`` of them (stratified when
  classifying) drive early stopping, as in any deepfit run.

Everything else — preprocessing, the TabM-style ensemble, early stopping, the time budget — is
deepfit's table task with its defaults (docs/tables.md). Without ``time_limit`` a fit is
reproducible for a fixed integer ``random_state`` (the seed of :func:`deepfit.fit`).

Pickling (what scikit-learn tools do with estimators) stores the fitted model as the two files
of a deepfit artifact and reloads it with deepfit's artifact loader; the pickle itself is the
user's choice, as with any scikit-learn object. To share a model, ``predictor_.save(dir)``.

This module needs scikit-learn; ``import deepfit`` does not import it.

Example:
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.model_selection import cross_val_score
    >>> from deepfit.sklearn import DeepfitClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = DeepfitClassifier(max_epochs=30, k=4, width=64, depth=2)
    >>> bool(cross_val_score(clf, X, y, cv=3).mean() > 0.9)
    True
    >>> clf.fit(X, y).predict_proba(X[:2]).shape
    (2, 3)
"""

from __future__ import annotations

import numbers
import tempfile
import warnings
from typing import Any

import numpy as np
import pandas as pd

from deepfit.errors import DeepfitError, DeepfitWarning

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import (
        assert_all_finite,
        check_array,
        check_consistent_length,
        check_is_fitted,
        check_random_state,
        column_or_1d,
        validate_data,
    )
except ImportError as e:  # no scikit-learn, or one older than 1.6 (validate_data, __sklearn_tags__)
    raise ImportError(f"deepfit.sklearn needs scikit-learn >= 1.6 ({e}); install it with "
                      "pip install 'deepfit[sklearn]'") from e

__all__ = ["DeepfitClassifier", "DeepfitRegressor"]

# Settings passed through to deepfit's TableSettings under the same name (random_state → seed).
_SETTINGS = ("time_limit", "max_epochs", "patience", "k", "width", "depth", "dropout", "lr", "weight_decay",
             "batch_size", "valid_size")


def _fit_table(frame: pd.DataFrame, *, target: str, task: str, settings: dict[str, Any], progress: bool) -> Any:
    """The one call into deepfit's table task: train on every row of ``frame`` (no test split)."""
    from deepfit.tasks.table import TableSettings, fit_table

    return fit_table(frame, TableSettings(target=target, task=task, test_size=0, **settings), progress=progress)


def _load_predictor(files: dict[str, bytes]) -> Any:
    """A predictor from its artifact files (``Predictor.files()``), through deepfit's safe loader."""
    from pathlib import Path

    from deepfit.predict import load

    with tempfile.TemporaryDirectory(prefix="deepfit-sklearn-") as tmp:
        for name, blob in files.items():
            (Path(tmp) / Path(name).name).write_bytes(blob)
        return load(tmp)


def _free_name(columns: Any, stem: str = "__deepfit_target__") -> str:
    """A column name not among ``columns``."""
    taken, name = {str(c) for c in columns}, stem
    while name in taken:
        name += "_"
    return name


def _seed(random_state: Any) -> int:
    """An int ``random_state`` is deepfit's seed; None or a RandomState draws one (sklearn's meaning)."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _check_int(name: str, value: Any, *, low: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}{' or None' if allow_none else ''}, got {value!r}")


def _check_fraction(name: str, value: Any, *, closed_low: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            (0 <= value if closed_low else 0 < value) and value < 1):
        raise ValueError(f"{name} must be a number in {'[' if closed_low else '('}0, 1), got {value!r}")


class _DeepfitEstimator(BaseEstimator):
    """What the classifier and the regressor share: input checks, the table, the fit, pickling."""

    _task: str

    # ------------------------------------------------------------------ fit

    def _settings(self) -> dict[str, Any]:
        """Check this estimator's parameters (in ``fit``, as scikit-learn does) and map them to TableSettings."""
        for name, low in (("max_epochs", 1), ("patience", 1), ("k", 1), ("width", 1), ("depth", 1)):
            _check_int(name, getattr(self, name), low=low)
        _check_int("batch_size", self.batch_size, low=1, allow_none=True)
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        _check_fraction("dropout", self.dropout, closed_low=True)
        _check_fraction("valid_size", self.valid_size, closed_low=False)
        if self.time_limit is not None and (isinstance(self.time_limit, bool)
                                            or not isinstance(self.time_limit, numbers.Real) or not self.time_limit > 0):
            raise ValueError(f"time_limit must be a number of seconds > 0 or None, got {self.time_limit!r}")
        if self.types is not None and not isinstance(self.types, dict):
            raise ValueError(f"types must be a dict of column name -> kind (e.g. {{'x0': 'category'}}), "
                             f"got {type(self.types).__name__}")
        settings = {name: getattr(self, name) for name in _SETTINGS}
        settings["seed"] = _seed(self.random_state)
        return settings

    def _fit(self, X: Any, y: Any) -> None:
        settings = self._settings()
        frame = self._frame(X, reset=True)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        y = self._target(column_or_1d(y, warn=True))
        check_consistent_length(frame, y)
        target = _free_name(frame.columns)
        # Numeric columns are numbers and pandas categoricals categories (what a scikit-learn user
        # means by them; deepfit alone would, e.g., drop a column of distinct integers as an id);
        # the user's types= win.
        types = {name: "number" for name, column in frame.items()
                 if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype)}
        types.update({name: "category" for name, column in frame.items()
                      if isinstance(column.dtype, pd.CategoricalDtype)})
        types.update(self.types or {})
        settings["types"] = types
        frame[target] = y
        try:
            self.predictor_ = _fit_table(frame, target=target, task=self._task, settings=settings,
                                         progress=bool(self.verbose))
        except DeepfitError as e:  # the same error, naming y rather than the column it was put in
            message = str(e).replace(f", {target}", "").replace(repr(target), "'y'")
            if message == str(e):
                raise
            raise type(e)(message) from e

    def _target(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------------ input

    def _frame(self, X: Any, *, reset: bool) -> pd.DataFrame:
        """X as the table deepfit reads (checked as scikit-learn checks it; ``reset`` in ``fit``)."""
        min_samples = 2 if reset else 1  # fit needs a training row and a validation row
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, reset=reset, skip_check_array=True)  # feature names and their number
            n, p = X.shape
            if n < min_samples:
                raise ValueError(f"Found array with {n} sample(s) (shape={X.shape}) while a minimum of "
                                 f"{min_samples} is required by {type(self).__name__}.")
            if p < 1:
                raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is "
                                 f"required by {type(self).__name__}.")
            frame = X.reset_index(drop=True)
            frame.columns = self._columns(p, reset=reset)
            for name, column in frame.items():
                if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
                    if np.isinf(column.to_numpy(dtype=np.float64, na_value=np.nan)).any():
                        raise ValueError(f"Input X contains infinity in column {name!r}; NaN is read as a missing "
                                         "value, infinity is not: replace it (e.g. with NaN)")
            return frame
        X = validate_data(self, X, reset=reset, dtype=np.float64, ensure_all_finite="allow-nan",
                          ensure_min_samples=min_samples)
        return pd.DataFrame(X, columns=self._columns(X.shape[1], reset=reset))

    def _columns(self, n: int, *, reset: bool) -> list[str]:
        """Column names of deepfit's table: the DataFrame's (when all strings), else ``x0..x{n-1}``."""
        if reset:
            names = getattr(self, "feature_names_in_", None)
            self._column_names = [str(c) for c in names] if names is not None else [f"x{i}" for i in range(n)]
        return list(self._column_names)

    # ------------------------------------------------------------------ pickling

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # a copy: object.__getstate__ returns the live __dict__
        predictor = state.pop("predictor_", None)
        if predictor is not None:
            state["_predictor_files"] = predictor.files()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        files = state.pop("_predictor_files", None)
        if files is not None:
            state["predictor_"] = _load_predictor(files)
        super().__setstate__(state)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a missing value: number columns carry a missing indicator
        return tags


class DeepfitClassifier(ClassifierMixin, _DeepfitEstimator):
    """deepfit's table model as a scikit-learn classifier (see the module docstring).

    Args:
        time_limit: training budget in seconds (None: train until early stopping or max_epochs).
        max_epochs: most epochs per model.
        patience: epochs without improvement of the validation loss before stopping.
        k: members of the TabM-style ensemble.
        width: width of the shared MLP.
        depth: layers of the shared MLP.
        dropout: dropout in the MLP.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        batch_size: rows per step (None: deepfit's rule, smaller for small tables).
        valid_size: share of the rows held out for early stopping (stratified).
        label_smoothing: label smoothing of the cross-entropy.
        types: column kinds by name, e.g. ``{"zip": "category"}`` (array columns are ``x0``, ...).
        random_state: an int is deepfit's seed (splits, initialisation, sample order); None or a
            ``RandomState`` draws a seed at each fit.
        verbose: print deepfit's progress lines.

    Example:
        >>> import numpy as np
        >>> X = np.random.RandomState(0).normal(size=(60, 3)); y = np.where(X[:, 0] > 0, "up", "down")
        >>> DeepfitClassifier(max_epochs=5, k=2, width=16).fit(X, y).classes_
        array(['down', 'up'], dtype='<U4')
    """

    _task = "classify"

    def __init__(self, *, time_limit: float | None = None, max_epochs: int = 200, patience: int = 8, k: int = 16,
                 width: int = 256, depth: int = 3, dropout: float = 0.1, lr: float = 2e-3,
                 weight_decay: float = 3e-4, batch_size: int | None = None, valid_size: float = 0.2,
                 label_smoothing: float = 0.1, types: dict[str, str] | None = None, random_state: Any = 0,
                 verbose: bool = False) -> None:
        self.time_limit = time_limit
        self.max_epochs = max_epochs
        self.patience = patience
        self.k = k
        self.width = width
        self.depth = depth
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.valid_size = valid_size
        self.label_smoothing = label_smoothing
        self.types = types
        self.random_state = random_state
        self.verbose = verbose

    def _settings(self) -> dict[str, Any]:
        settings = super()._settings()
        _check_fraction("label_smoothing", self.label_smoothing, closed_low=True)
        settings["label_smoothing"] = self.label_smoothing
        return settings

    def _target(self, y: np.ndarray) -> np.ndarray:
        """Class codes 0..C-1 for deepfit; sets ``classes_`` (sorted labels, as ``np.unique``)."""
        if y.dtype.kind == "f":
            assert_all_finite(y, input_name="y", estimator_name=type(self).__name__)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes in y to learn from; y holds the "
                             f"single class {self.classes_[0]!r}")
        return codes.astype(np.int64)

    def fit(self, X: Any, y: Any) -> DeepfitClassifier:
        """Train on ``X`` (array or DataFrame, n_samples x n_features) and labels ``y``; returns self."""
        self._fit(X, y)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, (n_samples, n_classes), columns in the order of ``classes_``."""
        check_is_fitted(self)
        frame = self._frame(X, reset=False)
        with warnings.catch_warnings():  # like scikit-learn's own estimators: no note for out-of-range inputs
            warnings.simplefilter("ignore", DeepfitWarning)
            probs = self.predictor_.predict_proba(frame).to_numpy(dtype=np.float64)
        out = np.zeros((len(frame), len(self.classes_)))
        out[:, [int(c) for c in self.predictor_.classes]] = probs  # deepfit's labels are our codes
        return out / out.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels, (n_samples,), values of ``classes_``."""
        probs = self.predict_proba(X)
        return self.classes_[probs.argmax(axis=1)]


class DeepfitRegressor(RegressorMixin, _DeepfitEstimator):
    """deepfit's table model as a scikit-learn regressor (see the module docstring).

    Args:
        time_limit: training budget in seconds (None: train until early stopping or max_epochs).
        max_epochs: most epochs per model.
        patience: epochs without improvement of the validation RMSE before stopping.
        k: members of the TabM-style ensemble.
        width: width of the shared MLP.
        depth: layers of the shared MLP.
        dropout: dropout in the MLP.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        batch_size: rows per step (None: deepfit's rule, smaller for small tables).
        valid_size: share of the rows held out for early stopping.
        types: column kinds by name, e.g. ``{"zip": "category"}`` (array columns are ``x0``, ...).
        random_state: an int is deepfit's seed (splits, initialisation, sample order); None or a
            ``RandomState`` draws a seed at each fit.
        verbose: print deepfit's progress lines.

    Example:
        >>> import numpy as np
        >>> X = np.random.RandomState(0).normal(size=(60, 3)); y = 3 * X[:, 0] + 1
        >>> DeepfitRegressor(max_epochs=5, k=2, width=16).fit(X, y).predict(X[:2]).shape
        (2,)
    """

    _task = "regress"

    def __init__(self, *, time_limit: float | None = None, max_epochs: int = 200, patience: int = 8, k: int = 16,
                 width: int = 256, depth: int = 3, dropout: float = 0.1, lr: float = 2e-3,
                 weight_decay: float = 3e-4, batch_size: int | None = None, valid_size: float = 0.2,
                 types: dict[str, str] | None = None, random_state: Any = 0, verbose: bool = False) -> None:
        # The classifier's, without label_smoothing: scikit-learn reads each class's own signature
        # (get_params, clone), so each __init__ lists and stores its arguments explicitly.
        self.time_limit = time_limit
        self.max_epochs = max_epochs
        self.patience = patience
        self.k = k
        self.width = width
        self.depth = depth
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.valid_size = valid_size
        self.types = types
        self.random_state = random_state
        self.verbose = verbose

    def _target(self, y: np.ndarray) -> np.ndarray:
        return check_array(y, ensure_2d=False, dtype=np.float64, input_name="y", estimator=self)

    def fit(self, X: Any, y: Any) -> DeepfitRegressor:
        """Train on ``X`` (array or DataFrame, n_samples x n_features) and numbers ``y``; returns self."""
        self._fit(X, y)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values, (n_samples,), float64 in the units of ``y``."""
        check_is_fitted(self)
        with warnings.catch_warnings():  # like scikit-learn's own estimators: no note for out-of-range inputs
            warnings.simplefilter("ignore", DeepfitWarning)
            pred = self.predictor_.predict(self._frame(X, reset=False))
        return np.asarray(pred, dtype=np.float64).reshape(-1)
