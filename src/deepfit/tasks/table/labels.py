"""The target column of a table: rows without a value left out, the task decided, labels parsed.

Shared by ``task.py`` (training) and ``report.py`` (the confusion matrix reads labels the way
training did), so neither imports the other.

Example:
    >>> import pandas as pd
    >>> list(class_labels(pd.Series(["1", "2", "1"]), "number"))
    [1, 2, 1]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from deepfit.data.table import coerce_column, task_reason
from deepfit.errors import DataError

__all__ = ["class_labels", "clean_target", "task_note", "TASK_NOTE"]

TASK_NOTE = "task: "  # how the note on the inferred task starts


def class_labels(values: pd.Series, kind: str) -> pd.Series:
    """Classification labels: numbers when every label parses as one (CSV text "1" → 1), else strings."""
    if kind in ("number", "binary"):
        numeric = coerce_column(values, "number")
        if numeric.notna().sum() == values.notna().sum() and numeric.notna().any():
            finite = numeric.dropna()
            if (finite == finite.round()).all():
                return numeric.astype("Int64").astype(object).where(numeric.notna(), np.nan)
            return numeric
    return coerce_column(values, "category")


def clean_target(df: pd.DataFrame, target: str, info: Any, *, task: str, source: str,
                 notes: list[str]) -> tuple[pd.DataFrame, str, pd.Series]:
    """(the rows that have a target, the task, the target values as training reads them).

    Rows without a target cannot teach anything: they are dropped, and a line added to
    ``notes`` says so. ``task`` "auto" is inferred from the column
    (:func:`deepfit.data.table.task_reason`), and a note starting ``"task: "`` says which and
    why (:func:`task_note`); a regression target must be numeric in every row.
    """
    missing = coerce_column(df[target], "category").isna()  # the same missing tokens as every column
    if missing.all():
        raise DataError(f"target column '{target}' in {source} has no values")
    if missing.any():
        notes.append(f"{int(missing.sum())} rows without a '{target}' value were left out")
        df = df.loc[~missing].reset_index(drop=True)
    if task == "auto":
        task, why = task_reason(info, df[target])
        notes.append(why)
    if task == "classify":
        return df, task, class_labels(df[target], info.kind)
    y = coerce_column(df[target], "number")
    if y.isna().any():
        bad = df[target][y.isna()].iloc[0]
        raise DataError(f"target column '{target}' in {source} is numeric but has the value {bad!r}; "
                        "fix it, or pass task='classify'")
    return df, task, y


def task_note(notes: list[str]) -> str | None:
    """The note of ``clean_target`` on the inferred task, if the task was inferred."""
    return next((n for n in notes if n.startswith(TASK_NOTE)), None)
