"""Windows of scaled history: what the network reads, for training and for forecasting.

A window at *origin* ``o`` of a series holds its last ``context`` values before ``o`` (left-
padded with zeros and a 0 mask where the series is shorter), divided by their mean absolute
value (the window's *scale*; 1 when they are all zero), the calendar position of the first
forecast step (sine and cosine of ``ordinal mod season``), the series' embedding index and the
standardised known covariates over the window and the horizon.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Windows", "calendar", "make_windows"]


@dataclass
class Windows:
    """Network inputs for N windows (NumPy, float32 except ``series``)."""

    x: np.ndarray  # (N, L) scaled context
    mask: np.ndarray  # (N, L) 1 where observed
    calendar: np.ndarray  # (N, C)
    series: np.ndarray  # (N,) int64 embedding index (0: unknown series)
    covariates: np.ndarray  # (N, (L + H) * K)
    scale: np.ndarray  # (N,)
    target: np.ndarray | None = None  # (N, H, 2): scaled values and their mask

    def tensors(self) -> tuple:
        import torch

        parts = [torch.from_numpy(a) for a in (self.x, self.mask, self.calendar, self.series, self.covariates)]
        if self.target is not None:
            parts.append(torch.from_numpy(self.target))
        return tuple(parts)


def calendar(ordinals: np.ndarray, season: int) -> np.ndarray:
    """(N, 2) sine and cosine of each period's position in its season; (N, 0) without a season."""
    if season <= 1:
        return np.zeros((len(ordinals), 0), np.float32)
    angle = 2 * np.pi * (np.asarray(ordinals) % season) / season
    return np.stack([np.sin(angle), np.cos(angle)], axis=1).astype(np.float32)


def make_windows(values: list[np.ndarray], starts: list[int], covariates: list[np.ndarray],
                 origins: list[tuple[int, int]], *, context: int, horizon: int, season: int,
                 series_index: list[int], cov_mean: np.ndarray, cov_std: np.ndarray,
                 limits: list[int] | None = None) -> Windows:
    """Windows at ``origins`` — pairs (series position, origin index into its values).

    ``covariates[i]`` must cover ``[origin - context, origin + horizon)`` where it exists (it may
    extend past the values: future rows). With ``limits`` (per series, an index), a target is
    taken from ``values[origin:limit]`` and masked beyond it; without, no target.
    """
    n = len(origins)
    k = len(cov_mean)
    x = np.zeros((n, context), np.float32)
    mask = np.zeros((n, context), np.float32)
    cov = np.zeros((n, (context + horizon) * k), np.float32)
    target = np.zeros((n, horizon, 2), np.float32) if limits is not None else None
    ordinals = np.zeros(n, np.int64)
    sid = np.zeros(n, np.int64)
    by_series: dict[int, list[int]] = {}
    for row, (i, _) in enumerate(origins):
        by_series.setdefault(i, []).append(row)
    for i, rows in by_series.items():
        v = values[i].astype(np.float32)
        padded = np.concatenate([np.zeros(context, np.float32), v, np.zeros(horizon, np.float32)])
        observed = np.concatenate([np.zeros(context, np.float32), np.ones(len(v), np.float32),
                                   np.zeros(horizon, np.float32)])
        o = np.array([origins[r][1] for r in rows])
        idx = o[:, None] + np.arange(context)[None, :]  # into padded: padded[context + o - context + j]
        x[rows] = padded[idx]
        mask[rows] = observed[idx]
        ordinals[rows] = starts[i] + o
        sid[rows] = series_index[i]
        if k:
            c = (covariates[i] - cov_mean) / cov_std
            cp = np.concatenate([np.zeros((context, k)), c, np.zeros((context + horizon, k))]).astype(np.float32)
            cidx = o[:, None] + np.arange(context + horizon)[None, :]
            cov[rows] = cp[cidx].reshape(len(rows), -1)
        if target is not None:
            tidx = context + o[:, None] + np.arange(horizon)[None, :]
            limit = limits[i]
            target[rows, :, 0] = padded[tidx]
            target[rows, :, 1] = (tidx - context < limit) & (observed[tidx] > 0)
    scale = (np.abs(x) * mask).sum(1) / np.maximum(mask.sum(1), 1)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    x /= scale[:, None]
    if target is not None:
        target[..., 0] /= scale[:, None]
        target[..., 0] *= target[..., 1]
    return Windows(x, mask, calendar(ordinals, season), sid, cov, scale, target)
