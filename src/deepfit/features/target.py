"""Targets: class labels ↔ codes, and numbers ↔ standardised values.

:class:`ClassTarget` learns the sorted label vocabulary (numbers sort numerically). Labels are
stored in JSON as strings, with a ``dtype`` ("int", "float", "bool" or "str") so ``decode`` gives
back the original kind of value. ``encode`` accepts a label or its text form (``3``, ``"3"`` and
``"3.0"`` are the same class of an int target), so labels read from a CSV match labels fitted
from a DataFrame.

:class:`RegressionTarget` standardises with the training mean and std (std 0 → 1), after
``log1p`` with ``transform="log1p"``; ``decode`` returns original units, bounded to the training
range widened by 5 % on each side. :func:`skewed_positive` says whether a target looks like
prices or counts (where log1p may help). Rows with a missing target must be dropped before
``fit``/``encode``.

:class:`MultiLabelTarget` reads labels joined by ``|`` (``"cat|dog"``) as a multi-hot row over
the sorted label vocabulary; ``decode_multi`` joins the labels whose probability reaches 0.5.

Example:
    >>> import pandas as pd
    >>> t = make_target("classify", "y").fit(pd.Series([3, 1, 3]))
    >>> t.encode(pd.Series(["1", 3])).tolist(), t.decode([1, 0]).tolist(), t.n_outputs
    ([0, 1], [3, 1], 2)
    >>> r = make_target("regress", "price").fit(pd.Series([1.0, 3.0]))
    >>> r.encode(pd.Series([3.0])).tolist(), r.decode([-1.0]).tolist()
    ([1.0], [1.0])
"""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np
import pandas as pd

from deepfit.errors import ConfigError, DataError, unknown_choice
from deepfit.features.base import is_finite_number, require_keys

__all__ = ["ClassTarget", "RegressionTarget", "MultiLabelTarget", "MULTILABEL_SEP", "TRANSFORMS", "BOUND_MARGIN",
           "make_target", "target_from_state", "skewed_positive"]

_DTYPES = ("int", "float", "bool", "str")
MULTILABEL_SEP = "|"  # multi-label targets: "cat|dog"


TRANSFORMS = ("standard", "log1p")
BOUND_MARGIN = 0.05  # regression outputs: the training range widened by this share of it on each side
SKEW_MIN_ROWS = 20  # skewed_positive: fewer values say too little about the shape
SKEW_MIN = 1.0  # ... sample skewness above this
SKEW_TAIL_RATIO = 5.0  # ... and the 99th percentile at least this many times the median


def skewed_positive(y: np.ndarray) -> bool:
    """Whether ``y`` looks like prices, incomes or counts: non-negative and strongly right-skewed.

    The rule: at least 20 finite values, none negative (NaN/inf are left out; any other
    non-finite value makes it False), a sample skewness (Fisher-Pearson, ``m3 / m2**1.5``)
    above 1, and a 99th percentile at least 5 times the median (any positive 99th percentile
    when the median is 0, as for mostly-zero counts). Both conditions are unchanged by
    scaling ``y``, so it does not matter whether prices are in cents or thousands. Lognormal
    prices (σ >= 1) and exponential waiting times pass; normal-ish and uniform values do not
    (their skewness is about 0, and their 99th percentile is within 2x the median). This is
    the hint that ``transform="log1p"`` may suit the target; it does not choose it.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> skewed_positive(rng.lognormal(3.0, 1.0, 500)), skewed_positive(rng.normal(50.0, 5.0, 500))
        (True, False)
    """
    x = np.asarray(y, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if len(x) < SKEW_MIN_ROWS or (x < 0).any() or x.max() == x.min():
        return False
    centred = x - x.mean()
    m2 = float(np.mean(centred**2))
    if m2 <= 0.0:
        return False
    skew = float(np.mean(centred**3)) / m2**1.5
    median, q99 = (float(q) for q in np.quantile(x, [0.5, 0.99]))
    tail = q99 > 0.0 if median == 0.0 else q99 >= SKEW_TAIL_RATIO * median
    return bool(skew > SKEW_MIN and tail)


def _label_dtype(values: list[Any]) -> str:
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return "bool"
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in values):
        return "int"
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
           for v in values):
        return "float"
    return "str"


def _canonical(value: Any, dtype: str) -> str | None:
    """The label's stored text form under ``dtype``, or None if it cannot be one."""
    try:
        if dtype == "bool":
            text = str(value).strip().lower()
            return {"true": "True", "1": "True", "false": "False", "0": "False"}.get(text)
        if dtype == "int":
            f = float(value)
            return str(int(f)) if math.isfinite(f) and f.is_integer() else None
        if dtype == "float":
            f = float(value)
            return repr(f) if math.isfinite(f) else None
    except (TypeError, ValueError):
        return None
    return str(value).strip() if isinstance(value, str) else str(value)


def _typed(label: str, dtype: str) -> Any:
    return {"int": int, "float": float, "bool": lambda s: s == "True", "str": str}[dtype](label)


def _no_missing(values: pd.Series, name: str) -> None:
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise DataError(f"target '{name}' has a missing value at row {row}; drop rows without a target first")


class ClassTarget:
    """Class labels → int64 codes 0..C-1 (sorted labels); ``n_outputs`` = number of classes.

    Args:
        name: the target column (named in errors).
    """

    task = "classify"

    def __init__(self, name: str) -> None:
        self.name = name
        self.labels: list[str] = []
        self.dtype = "str"
        self._codes: dict[str, int] = {}

    @property
    def n_outputs(self) -> int:
        return len(self.labels)

    def fit(self, values: pd.Series) -> Self:
        """Learn the label vocabulary; DataError if there are fewer than 2 classes."""
        _no_missing(values, self.name)
        distinct = list(pd.unique(values.to_numpy(dtype=object)))
        dtype = _label_dtype(distinct)
        keys = {_canonical(v, dtype) for v in distinct}
        if dtype == "str":
            labels = sorted(keys)  # type: ignore[arg-type]
        else:
            labels = sorted(keys, key=lambda s: _typed(s, dtype))  # type: ignore[arg-type, return-value]
        if len(labels) < 2:
            shown = repr(_typed(labels[0], dtype)) if labels else "nothing"
            raise DataError(f"target '{self.name}' has a single value {shown} in the training rows: nothing to "
                            "learn; check the target column, or use more rows")
        self._set(labels, dtype)
        return self

    def _set(self, labels: list[str], dtype: str) -> None:
        self.labels, self.dtype = labels, dtype
        self._codes = {label: i for i, label in enumerate(labels)}

    def encode(self, values: pd.Series) -> np.ndarray:
        """int64 codes (N,); DataError naming the first label not seen in training."""
        if not self.labels:
            raise ConfigError(f"target '{self.name}' is not fitted; call fit() first")
        _no_missing(values, self.name)
        out = np.empty(len(values), dtype=np.int64)
        for i, v in enumerate(values.to_numpy(dtype=object)):
            code = self._codes.get(_canonical(v, self.dtype))  # type: ignore[arg-type]
            if code is None:
                raise DataError(f"target '{self.name}' has the label {v!r} (row {i}) that was not in the training "
                                f"rows; known labels: {', '.join(self.labels[:20])}")
            out[i] = code
        return out

    def decode(self, codes: Any) -> np.ndarray:
        """Original labels for int codes (N,): int64/float64/bool arrays, or object for strings."""
        typed = [_typed(s, self.dtype) for s in self.labels]
        table = np.array(typed, dtype={"int": np.int64, "float": np.float64, "bool": bool, "str": object}[self.dtype])
        return table[np.asarray(codes, dtype=np.int64)]

    def state_dict(self) -> dict:
        return {"task": self.task, "name": self.name, "labels": list(self.labels), "dtype": self.dtype}

    @classmethod
    def from_state(cls, state: dict) -> Self:
        require_keys(state, ("name", "labels", "dtype"), what="classification target")
        labels, dtype = state["labels"], state["dtype"]
        if dtype not in _DTYPES:
            raise DataError(f"classification target: saved dtype {dtype!r} is not one of {_DTYPES}; retrain")
        if (not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(s, str) for s in labels)
                or len(set(labels)) != len(labels)):
            raise DataError("classification target: saved 'labels' must be 2+ distinct strings; retrain the model")
        t = cls(str(state["name"]))
        t._set(list(labels), dtype)
        return t


class RegressionTarget:
    """Numbers → float32 standardised values; ``n_outputs`` = 1; ``decode`` bounded to the training range.

    ``transform="standard"`` encodes ``(y - mean) / std``; ``transform="log1p"`` encodes
    ``(log1p(y) - mean) / std`` (mean and std of ``log1p`` of the training values), for
    non-negative, right-skewed targets such as prices or counts (:func:`skewed_positive`);
    every training value must then be >= 0. ``decode`` inverts the transform and clips to
    ``[low, high]``: the training minimum and maximum widened by 5 % of the training range on
    each side (with log1p, ``low`` is never below 0, as no training value was). A model cannot
    then answer far outside anything it has seen, whatever it is given. ``low``/``high`` are
    None in a model saved before the bounds existed: no clipping.

    Args:
        name: the target column (named in errors).
        transform: ``"standard"`` or ``"log1p"``.

    Example:
        >>> r = RegressionTarget("price", transform="log1p").fit(pd.Series([0.0, 9.0, 99.0]))
        >>> r.decode(r.scale(np.array([9.0, 1e9]))).round(6).tolist()   # 1e9 → the upper bound
        [9.0, 103.95]
    """

    task = "regress"
    n_outputs = 1

    def __init__(self, name: str, transform: str = "standard") -> None:
        if transform not in TRANSFORMS:
            raise unknown_choice("regression target transform", transform, TRANSFORMS)
        self.name = name
        self.transform = transform
        self.mean = 0.0
        self.std = 1.0
        self.low: float | None = None
        self.high: float | None = None
        self.fitted = False

    def _values(self, values: pd.Series) -> np.ndarray:
        try:
            y = pd.to_numeric(values, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
        except (ValueError, TypeError) as e:
            raise DataError(f"target '{self.name}' must be numeric for regression ({e}); "
                            "use task='classify' for labels") from e
        bad = ~np.isfinite(y)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"target '{self.name}' has a missing or infinite value at row {i}; "
                            "drop rows without a target first")
        return y

    def _forward(self, y: np.ndarray) -> np.ndarray:
        """The transform before standardising (log1p or nothing)."""
        if self.transform != "log1p":
            return y
        if (y < 0).any():
            i = int(np.argmin(y))
            raise ConfigError(f"target '{self.name}' has negative values (the smallest is {float(y[i]):g}, row {i}); "
                              "transform='log1p' needs every value >= 0: use transform='standard', or shift the "
                              "target first")
        return np.log1p(y)

    def fit(self, values: pd.Series) -> Self:
        """Learn mean and std of the (transformed) training targets (std 0 → 1) and the output bounds."""
        y = self._values(values)
        if len(y) == 0:
            raise DataError(f"target '{self.name}' has no training rows")
        t = self._forward(y)
        self.mean = float(t.mean())
        std = float(t.std())
        self.std = std if std > 1e-12 else 1.0
        lo, hi = float(y.min()), float(y.max())
        margin = BOUND_MARGIN * (hi - lo)
        self.low, self.high = lo - margin, hi + margin
        if self.transform == "log1p":
            self.low = max(self.low, 0.0)
        self.fitted = True
        return self

    def scale(self, y: np.ndarray) -> np.ndarray:
        """Values in the target's units → standardised float64 (what ``encode`` returns as float32)."""
        if not self.fitted:
            raise ConfigError(f"target '{self.name}' is not fitted; call fit() first")
        return (self._forward(np.asarray(y, dtype=np.float64)) - self.mean) / self.std

    def encode(self, values: pd.Series) -> np.ndarray:
        """float32 standardised targets (N,)."""
        if not self.fitted:
            raise ConfigError(f"target '{self.name}' is not fitted; call fit() first")
        return self.scale(self._values(values)).astype(np.float32)

    def decode(self, values: Any) -> np.ndarray:
        """Standardised predictions (N,) → float64 in the target's units, clipped to ``[low, high]``."""
        y = np.asarray(values, dtype=np.float64) * self.std + self.mean
        if self.transform == "log1p":
            with np.errstate(over="ignore"):  # a huge output overflows to inf, then is clipped to ``high``
                y = np.expm1(y)
        if self.low is not None and self.high is not None:
            y = np.clip(y, self.low, self.high)
        return y

    def state_dict(self) -> dict:
        return {"task": self.task, "name": self.name, "mean": self.mean, "std": self.std,
                "transform": self.transform, "low": self.low, "high": self.high}

    @classmethod
    def from_state(cls, state: dict) -> Self:
        what = "regression target"
        require_keys(state, ("name", "mean", "std"), what=what)
        mean, std = state["mean"], state["std"]
        if not all(is_finite_number(v) for v in (mean, std)) or std <= 0:
            raise DataError("regression target: saved mean/std must be finite numbers with std > 0; retrain")
        require_keys(state, ("transform", "low", "high"), what=what)
        transform, low, high = state["transform"], state["low"], state["high"]
        if transform not in TRANSFORMS:
            raise DataError(f"regression target: saved transform {transform!r} is not one of "
                            f"{', '.join(TRANSFORMS)}; upgrade deepfit or retrain the model")
        if (low is None) != (high is None):
            raise DataError(f"regression target: saved bounds low={low!r}, high={high!r} must both be numbers "
                            "or both null; the file is damaged: retrain the model")
        if low is not None:
            if not (is_finite_number(low) and is_finite_number(high)) or low > high:
                raise DataError(f"regression target: saved bounds low={low!r}, high={high!r} must be finite "
                                "numbers with low <= high; the file is damaged: retrain the model")
            low, high = float(low), float(high)
        t = cls(str(state["name"]), transform=transform)
        t.mean, t.std, t.low, t.high, t.fitted = float(mean), float(std), low, high, True
        return t


def _split_labels(values: pd.Series, name: str) -> list[list[str]]:
    out = []
    for i, v in enumerate(values.to_numpy(dtype=object)):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            raise DataError(f"target '{name}' is missing in row {i}")
        out.append(sorted({s.strip() for s in str(v).split(MULTILABEL_SEP) if s.strip()}))
    return out


class MultiLabelTarget:
    """Labels like ``"cat|dog"`` → multi-hot float32 ``(N, C)``; ``decode_multi`` joins the labels above 0.5.

    Args:
        name: the target column (named in errors).
        labels: the label vocabulary, when already known (else learnt by :meth:`fit`).

    Example:
        >>> t = MultiLabelTarget("tags").fit(pd.Series(["cat|dog", "dog", "cat"]))
        >>> t.encode(pd.Series(["dog|cat"])).tolist(), t.decode_multi([[0.9, 0.2]]).tolist()
        ([[1.0, 1.0]], ['cat'])
    """

    task = "multilabel"

    def __init__(self, name: str, labels: list[str] | None = None) -> None:
        self.name, self.labels = name, list(labels or [])

    @property
    def n_outputs(self) -> int:
        return len(self.labels)

    def fit(self, values: pd.Series) -> Self:
        """Learn the sorted label vocabulary; DataError if there are fewer than 2 labels."""
        self.labels = sorted({lab for row in _split_labels(values, self.name) for lab in row})
        if len(self.labels) < 2:
            raise DataError(f"target '{self.name}' has fewer than 2 distinct labels: nothing to learn")
        return self

    def encode(self, values: pd.Series) -> np.ndarray:
        """float32 multi-hot rows (N, C); DataError naming the first label not seen in training."""
        index = {lab: j for j, lab in enumerate(self.labels)}
        out = np.zeros((len(values), len(self.labels)), dtype=np.float32)
        for i, row in enumerate(_split_labels(values, self.name)):
            for lab in row:
                if lab not in index:
                    raise DataError(f"target '{self.name}' has the label {lab!r} (row {i}) that was not in the "
                                    f"training rows; known labels: {', '.join(self.labels[:20])}")
                out[i, index[lab]] = 1.0
        return out

    def decode_multi(self, probs: Any, threshold: float = 0.5) -> np.ndarray:
        """The labels whose probability is at least ``threshold``, joined by ``|``, one string per row."""
        return np.array([MULTILABEL_SEP.join(lab for lab, p in zip(self.labels, row) if p >= threshold)
                         for row in probs], dtype=object)

    def state_dict(self) -> dict:
        return {"task": "multilabel", "name": self.name, "labels": self.labels}

    @classmethod
    def from_state(cls, state: dict) -> Self:
        require_keys(state, ("name", "labels"), what="multi-label target")
        return cls(str(state["name"]), [str(s) for s in state["labels"]])


def make_target(task: str, name: str, transform: str = "standard") -> ClassTarget | RegressionTarget:
    """An unfitted target for ``task`` ("classify" or "regress"); ``transform`` is the regression
    target's (``"standard"`` or ``"log1p"``, see :class:`RegressionTarget`), and must be
    ``"standard"`` when classifying."""
    if task == "classify":
        if transform != "standard":
            raise ConfigError(f"transform={transform!r} applies to regression targets; a classification target "
                              "takes the default 'standard'")
        return ClassTarget(name)
    if task == "regress":
        return RegressionTarget(name, transform=transform)
    raise ConfigError(f"task must be 'classify' or 'regress', got {task!r}")


def target_from_state(state: dict) -> ClassTarget | RegressionTarget | MultiLabelTarget:
    """Rebuild a fitted target from its ``state_dict``."""
    require_keys(state, ("task",), what="target")
    task = state["task"]
    if task == "classify":
        return ClassTarget.from_state(state)
    if task == "regress":
        return RegressionTarget.from_state(state)
    if task == "multilabel":
        return MultiLabelTarget.from_state(state)
    raise DataError(f"target: saved task {task!r} is not 'classify', 'regress' or 'multilabel'; retrain the model")
