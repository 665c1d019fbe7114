"""Split a table's rows into train and test positions (numpy only, deterministic in ``seed``).

Rules of :func:`split_indices` (indices are row *positions* ``0..n-1``, sorted, int64):

* **random** (``task="regress"`` or no target): a seeded permutation; the test side gets
  ``round(n * test_size)`` rows, clipped to ``[1, n - 1]``.
* **stratified** (``task="classify"`` with a target): each class keeps its share on both sides
  (largest-remainder rounding); a class with one row goes to train; every class keeps >= 1
  row in train. Missing target values form one class of their own.
* **time-ordered** (``by=<column>``): rows sorted by that date or number column; the last
  ``test_size`` fraction is the test set. Rows sharing the boundary value go to the same side.
  Missing values in ``by`` are an error (they have no place in time). The seed is not used.
* **grouped** (``group=<column>``): groups are shuffled by the seed and whole groups go to the
  test side until it holds the number of rows closest to ``n * test_size``. Missing values
  form one group.

Errors: ``test_size`` not in (0, 1), ``task`` unknown, both ``by`` and ``group`` (ConfigError);
fewer than 2 rows, a side that would be empty (DataError); unknown column (ColumnNotFound).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepfit.data.table import coerce_column, find_column
from deepfit.errors import ConfigError, DataError

__all__ = ["split_indices"]

_TASKS = ("classify", "regress")


def split_indices(df: pd.DataFrame, *, target: str | None, task: str, seed: int, test_size: float = 0.2,
                  by: str | None = None, group: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Split row positions into (train, test).

    Args:
        df: the table (raw or coerced).
        target: column used to stratify when ``task == "classify"``; may be None.
        task: "classify" or "regress".
        seed: fixes the split.
        test_size: fraction of rows in the test side, in (0, 1).
        by: date/number column for a time-ordered split.
        group: column whose groups must not be cut across sides.

    Returns:
        (train_idx, test_idx): sorted int64 row positions, disjoint, covering every row.

    Example:
        >>> df = pd.DataFrame({"y": ["a", "b"] * 10})
        >>> train, test = split_indices(df, target="y", task="classify", seed=0)
        >>> len(train), len(test), sorted(df["y"].iloc[test])
        (16, 4, ['a', 'a', 'b', 'b'])
    """
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)) or not 0 < test_size < 1:
        raise ConfigError(f"test_size={test_size!r} must be a fraction strictly between 0 and 1, e.g. 0.2")
    if task not in _TASKS:
        raise ConfigError(f"task={task!r} is not known; use 'classify' or 'regress'")
    if by is not None and group is not None:
        raise ConfigError(f"pass by= ({by!r}) or group= ({group!r}), not both: a split is time-ordered or grouped")
    n = len(df)
    if n < 2:
        raise DataError(f"cannot split {n} row{'s' * (n != 1)} into train and test; give at least 2 rows")
    n_test = min(max(round(n * test_size), 1), n - 1)
    if by is not None:
        train, test = _by_order(df, find_column(df, by, role="split-by"), n_test)
    elif group is not None:
        train, test = _by_group(df, find_column(df, group, role="group"), n_test, seed)
    elif task == "classify" and target is not None:
        train, test = _stratified(df[find_column(df, target, role="target")], n_test, seed)
    else:
        perm = np.random.default_rng(seed).permutation(n)
        train, test = perm[n_test:], perm[:n_test]
    if len(train) == 0 or len(test) == 0:
        side = "train" if len(train) == 0 else "test"
        if by is None and group is None and task == "classify" and target is not None:
            raise DataError(f"the test side of the split would be empty: every class of target {target!r} has a "
                            "single row, so none can be held out; give more rows per class or use task='regress'")
        raise DataError(f"the {side} side of the split would be empty ({n} rows, test_size={test_size}); "
                        "give more rows, or more distinct values/groups in the split column")
    return np.sort(train).astype(np.int64), np.sort(test).astype(np.int64)


def _labels(values: pd.Series) -> np.ndarray:
    """Values as strings, missing as one label (so NaN, None and 'NA' fall together)."""
    labels = coerce_column(values, "category")
    return labels.fillna("\x00missing").to_numpy(dtype=object).astype(str)


def _stratified(y: pd.Series, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = _labels(y)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    cap = np.where(counts > 1, counts - 1, 0)  # every class keeps a train row; singletons stay in train
    quota = counts * n_test / len(labels)
    take = np.minimum(np.floor(quota).astype(np.int64), cap)
    short = n_test - int(take.sum())
    for c in np.argsort(-(quota - np.floor(quota)), kind="stable"):  # largest remainders first
        if short <= 0:
            break
        if take[c] < cap[c]:
            take[c] += 1
            short -= 1
    if take.sum() == 0 and cap.sum() > 0:  # tiny classes rounded to nothing: take one row of the largest
        take[int(np.argmax(cap))] = 1
    test_parts = []
    for c in range(len(classes)):
        rows = np.flatnonzero(inverse == c)
        test_parts.append(rng.permutation(rows)[: take[c]])
    test = np.concatenate(test_parts) if test_parts else np.empty(0, np.int64)
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


def _by_order(df: pd.DataFrame, col: str, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    values = df[col]
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        keys = _date_keys(coerce_column(values, "date"))
    else:
        keys = coerce_column(values, "number").to_numpy()
        if np.isnan(keys).any():  # not all numbers: try dates, keep whichever parses more rows
            dates = _date_keys(coerce_column(values, "date"))
            if np.isnan(dates).sum() < np.isnan(keys).sum():
                keys = dates
    missing = np.flatnonzero(np.isnan(keys))
    if len(missing):
        rows = ", ".join(str(i) for i in missing[:5])
        raise DataError(f"split-by column {col!r} has {len(missing)} missing or unparseable values (rows {rows}"
                        f"{', ...' if len(missing) > 5 else ''}); a time-ordered split needs a date or number in "
                        "every row: fill or drop those rows")
    order = np.argsort(keys, kind="stable")
    boundary = keys[order[len(keys) - n_test]]
    test = np.flatnonzero(keys >= boundary)
    if len(test) == len(keys):  # the boundary value is the smallest: move its ties to train
        test = np.flatnonzero(keys > boundary)
    train = np.setdiff1d(np.arange(len(keys)), test)
    return train, test


def _by_group(df: pd.DataFrame, col: str, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    labels = _labels(df[col])
    groups, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if len(groups) < 2:
        raise DataError(f"group column {col!r} holds a single group ({groups[0]!r}); a grouped split needs at least "
                        "2 groups: pick another group column or drop group=")
    perm = np.random.default_rng(seed).permutation(len(groups))
    sizes = np.cumsum(counts[perm])[:-1]  # never all groups: train keeps >= 1 group
    k = int(np.argmin(np.abs(sizes - n_test))) + 1
    in_test = np.zeros(len(groups), dtype=bool)
    in_test[perm[:k]] = True
    test = np.flatnonzero(in_test[inverse])
    train = np.flatnonzero(~in_test[inverse])
    return train, test


def _date_keys(dates: pd.Series) -> np.ndarray:
    keys = dates.to_numpy("datetime64[ns]").astype(np.int64).astype(np.float64)
    keys[dates.isna().to_numpy()] = np.nan
    return keys
