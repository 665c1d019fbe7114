"""Sequence columns: numeric sequences (signals, time series), one or many channels, any length.

Each value is parsed by :func:`deepfit.data.table.parse_sequence` into a ``(C, L)`` float array:
a string ``"0.1 0.2 0.3"`` (spaces, commas or semicolons) or a JSON list ``"[0.1, 0.2]"`` is
one channel; a nested list ``[[...], [...]]`` (JSON string, or Parquet list-of-lists) holds one
list per channel; Python lists and NumPy arrays work the same way.

Fit (training rows): the number of channels (every row must have it), the longest length
``max_len`` and per-channel mean and standard deviation over all positions. Encode: scaled values
``(x - mean) / std`` zero-padded to ``max_len`` (longer sequences are cut to ``max_len``), NaN/inf
→ 0, plus a mask that is 1 where a position holds data. A missing value is all padding.

Example:
    >>> import numpy as np, pandas as pd
    >>> col = pd.Series([np.array([[1.0, 2.0, 3.0]]), np.array([[4.0, 5.0]])], dtype=object)
    >>> f = SequenceFeature("signal").fit(col)
    >>> out = f.encode(col)
    >>> out["seq"].shape, out["seq_mask"].tolist()
    ((2, 1, 3), [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd

from deepfit.errors import DataError
from deepfit.features.base import Feature, require_keys
from deepfit.features.number import float_list

__all__ = ["SequenceFeature", "MAX_LEN", "sequence_arrays"]

MAX_LEN = 4096


def sequence_arrays(values: pd.Series, name: str) -> list[np.ndarray | None]:
    """Each value of a sequence column as a ``(C, L)`` float array, None where missing."""
    from deepfit.data.table import parse_sequence

    out: list[np.ndarray | None] = []
    for v in values.to_numpy(dtype=object):
        out.append(v if isinstance(v, np.ndarray) and v.ndim == 2 else parse_sequence(v))
    return out


class SequenceFeature(Feature):
    """A sequence column → ``"seq"`` (N, C, L) float32 scaled values and ``"seq_mask"`` (N, L) float32."""

    kind = "sequence"

    def __init__(self, name: str, *, max_len: int = MAX_LEN) -> None:
        super().__init__(name)
        self.max_len_cap = max_len
        self.channels = 0
        self.max_len = 0
        self.mean: list[float] = []
        self.std: list[float] = []

    def fit(self, values: pd.Series) -> Self:
        arrays = [a for a in sequence_arrays(values, self.name) if a is not None]
        if not arrays:
            raise DataError(f"sequence column '{self.name}' has no parseable sequence in the training rows")
        channels = {a.shape[0] for a in arrays}
        if len(channels) > 1:
            raise DataError(f"sequence column '{self.name}': rows have different numbers of channels "
                            f"({sorted(channels)}); every row needs the same channels")
        self.channels = arrays[0].shape[0]
        self.max_len = int(min(self.max_len_cap, max(a.shape[1] for a in arrays)))
        flat = np.concatenate([a for a in arrays], axis=1)  # (C, total)
        flat = np.where(np.isfinite(flat), flat, np.nan)
        mean = np.nan_to_num(np.nanmean(flat, axis=1)) if flat.size else np.zeros(self.channels)
        std = np.nan_to_num(np.nanstd(flat, axis=1)) if flat.size else np.ones(self.channels)
        self.mean = [float(m) for m in mean]
        self.std = [float(s) if s > 1e-12 else 1.0 for s in std]
        self.fitted = True
        return self

    def encode(self, values: pd.Series) -> dict[str, np.ndarray]:
        self._check_fitted()
        arrays = sequence_arrays(values, self.name)
        n = len(arrays)
        seq = np.zeros((n, self.channels, self.max_len), np.float32)
        mask = np.zeros((n, self.max_len), np.float32)
        mean = np.asarray(self.mean, np.float64)[:, None]
        std = np.asarray(self.std, np.float64)[:, None]
        for i, a in enumerate(arrays):
            if a is None:
                continue
            if a.shape[0] != self.channels:
                raise DataError(f"sequence column '{self.name}', row {i}: {a.shape[0]} channels, but the model was "
                                f"trained on {self.channels}; give every row {self.channels} channel(s)")
            length = min(a.shape[1], self.max_len)
            z = (a[:, :length] - mean) / std
            seq[i, :, :length] = np.where(np.isfinite(z), z, 0.0)
            mask[i, :length] = 1.0
        return {"seq": seq, "seq_mask": mask}

    def state_dict(self) -> dict:
        self._check_fitted()
        return {"channels": self.channels, "max_len": self.max_len, "mean": self.mean, "std": self.std}

    @classmethod
    def from_state(cls, name: str, state: dict) -> Self:
        what = f"sequence column '{name}'"
        require_keys(state, ("channels", "max_len", "mean", "std"), what=what)
        c, m = state["channels"], state["max_len"]
        if not (isinstance(c, int) and c >= 1 and isinstance(m, int) and m >= 1):
            raise DataError(f"{what}: saved channels/max_len must be positive integers; retrain the model")
        f = cls(name, max_len=max(m, MAX_LEN))
        f.channels, f.max_len = c, m
        f.mean = float_list(state, "mean", what, increasing=False)
        f.std = float_list(state, "std", what, increasing=False)
        if len(f.mean) != c or len(f.std) != c or min(f.std) <= 0:
            raise DataError(f"{what}: saved mean/std must hold {c} values (std > 0); retrain the model")
        f.fitted = True
        return f
