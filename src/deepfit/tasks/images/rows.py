"""The image task's training rows: the data once read and split (:class:`ImageData`), and how
its rows become tensors (:class:`RowEncoder`: decoded images, encoded targets, the other columns)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = ["ImageData", "RowEncoder", "TABLE_KINDS"]

TABLE_KINDS = ("number", "category", "binary", "date", "text")  # other columns that join the model


@dataclass
class ImageData:
    """The training data once read and split; the later steps drop unreadable rows from the frames."""

    source: str
    rows: int  # labelled rows read
    image_column: str
    target: str
    task: str  # "classify" or "multilabel"
    infos: dict[str, Any]  # column types of a table (empty for a folder)
    fit: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame | None
    skipped: list[Any]
    notes: list[str]


class RowEncoder:
    """Rows of the training data → tensors: decoded images, encoded targets and the other columns
    (fitted on the training rows by :meth:`fit`)."""

    def __init__(self, data: ImageData, *, size: int, num_workers: int | None) -> None:
        self.data, self.size, self.num_workers = data, size, num_workers
        self.columns = {n: i.kind for n, i in data.infos.items()
                        if n not in (data.target, data.image_column) and i.used and i.kind in TABLE_KINDS}
        self.target: Any = None
        self.pre: Any = None

    def decoded(self, frame: pd.DataFrame, what: str) -> tuple[pd.DataFrame, torch.Tensor]:
        """The readable rows of ``frame`` and their images; unreadable files are noted and skipped."""
        from deepfit.data.images import decode_images

        images, bad, keep = decode_images(list(frame[self.data.image_column]), self.size, workers=self.num_workers)
        if bad:
            self.data.skipped.extend(bad)
            self.data.notes.append(f"{len(bad)} {what} image(s) could not be read and were left out")
        return frame.loc[keep].reset_index(drop=True), images

    def fit(self, frame: pd.DataFrame) -> RowEncoder:
        from deepfit.features.preprocessor import TablePreprocessor
        from deepfit.features.target import MultiLabelTarget, make_target

        d = self.data
        if d.task == "classify":
            self.target = make_target("classify", d.target).fit(frame[d.target].astype(str))
        else:
            self.target = MultiLabelTarget(d.target).fit(frame[d.target])
        if self.columns:
            date_formats = {c: d.infos[c].date_format for c, k in self.columns.items() if k == "date"}
            self.pre = TablePreprocessor(self.columns, date_formats=date_formats)
            self.pre.fit(self._coerced(frame))
        return self

    def _coerced(self, frame: pd.DataFrame) -> pd.DataFrame:
        from deepfit.data.table import coerce_column

        return pd.DataFrame({c: coerce_column(frame[c], k, date_format=self.data.infos[c].date_format)
                             for c, k in self.columns.items()})

    def y(self, frame: pd.DataFrame) -> torch.Tensor:
        values = frame[self.data.target].astype(str) if self.data.task == "classify" else frame[self.data.target]
        return torch.from_numpy(self.target.encode(values))

    def table(self, frame: pd.DataFrame) -> tuple[torch.Tensor, ...]:
        if self.pre is None:
            return ()
        return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in self.pre.transform(self._coerced(frame)))
