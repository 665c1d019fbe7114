"""Append each epoch's history row to a CSV or JSON-lines file."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from deepfit.engine.callbacks.base import Callback

if TYPE_CHECKING:  # pragma: no cover
    from deepfit.engine.learner import Learner

__all__ = ["CSVLogger", "JSONLLogger"]


class _FileLogger(Callback):
    order = 85

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_fit_start(self, learner: Learner) -> None:
        if not learner.is_main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A resumed run rewrites the log from the restored history, so no epoch is doubled.
        self._rewrite(learner.history)

    def on_epoch_end(self, learner: Learner) -> None:
        if learner.is_main:
            self._rewrite(learner.history)

    def _rewrite(self, rows: list[dict]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            self._write(f, rows)
        os.replace(tmp, self.path)

    def _write(self, f, rows: list[dict]) -> None:  # noqa: ANN001
        raise NotImplementedError


class CSVLogger(_FileLogger):
    """``history.csv``: one row per epoch, one column per logged value."""

    def _write(self, f, rows: list[dict]) -> None:  # noqa: ANN001
        keys: list[str] = []
        for row in rows:
            keys += [k for k in row if k not in keys]
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


class JSONLLogger(_FileLogger):
    """``history.jsonl``: one JSON object per epoch."""

    def _write(self, f, rows: list[dict]) -> None:  # noqa: ANN001
        for row in rows:
            f.write(json.dumps(row) + "\n")
