"""Reading a table of time series: columns found, timestamps parsed and checked, gaps filled.

One rule set for training, ``predict`` and ``evaluate`` (:func:`read_series`):

- the target, time, series and covariate columns must exist (close names are suggested);
- timestamps are dates (any format pandas parses) or integers (steps); one that does not parse
  is an error naming the row and its series; two rows of a series at the same time are an error;
- the frequency is ``freq`` (a pandas alias) or inferred from the median spacing; every
  timestamp must be on that grid — each the start of its period, or each its end (monthly
  data stamped ``2020-01-31`` or ``2020-01-01``) — else the spacing is irregular, an error;
- missing periods (gaps) and missing target values are filled the same way: interior missing
  values are interpolated linearly in time; leading and trailing ones are dropped (a series
  starts at its first observed value and ends at its last). Rows after the last observed
  target are the *future* rows: their known covariates are what ``predict`` forecasts with;
- a series whose every target is missing is dropped (noted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from deepfit.errors import DataError

__all__ = ["SeriesSet", "read_series", "season_of", "to_timestamps"]

SEASON: dict[str, int] = {"Y": 1, "Q": 4, "M": 12, "W": 52, "D": 7, "B": 5, "h": 24, "min": 60, "step": 1}
# Median spacing in days -> period alias, for inferring the frequency.
_SPACING = (("Y", 365.25), ("Q", 91.3), ("M", 30.44), ("W", 7.0), ("D", 1.0), ("h", 1 / 24), ("min", 1 / 1440))


def season_of(freq: str) -> int:
    """The seasonal period of a frequency (the seasonal-naive lag and MASE's scaling lag)."""
    return SEASON.get(freq, 1)


@dataclass
class SeriesSet:
    """Series on one regular grid: per series its id, values (filled), first period ordinal,
    covariates (``(n, K)``) and the covariates of rows after its last target (``(k, K)``)."""

    ids: list[str]
    values: list[np.ndarray]
    starts: list[int]
    freq: str  # a pandas period alias, or "step" for integer time
    convention: str  # "start" or "end" of the period (dates), "step" (integers)
    covariates: list[np.ndarray] = field(default_factory=list)
    future: list[np.ndarray] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def ends(self) -> list[int]:
        """The ordinal of each series' last value."""
        return [s + len(v) - 1 for s, v in zip(self.starts, self.values)]


def to_timestamps(ordinals: np.ndarray, freq: str, convention: str) -> Any:
    """Period ordinals back to what the time column held (dates in the data's convention, or integers)."""
    if freq == "step":
        return np.asarray(ordinals, dtype=np.int64)
    index = pd.PeriodIndex.from_ordinals(np.asarray(ordinals, dtype=np.int64), freq=freq)
    stamps = index.to_timestamp(how="start")
    if convention == "end":
        stamps = index.to_timestamp(how="end")
        if freq in ("Y", "Q", "M", "W", "D", "B"):
            stamps = stamps.normalize()
    return stamps


def _find(frame: pd.DataFrame, name: str, role: str, source: str) -> str:
    from deepfit.data.table import find_column

    return find_column(frame, name, role=role, source=source)


def _infer_freq(times: pd.Series, keys: pd.Series, source: str) -> str:
    order = pd.DataFrame({"k": keys.to_numpy(), "t": times.to_numpy()}).sort_values(["k", "t"])
    gaps = order.groupby("k", sort=False)["t"].diff().dropna()
    days = gaps.dt.total_seconds().to_numpy() / 86400.0
    days = days[days > 0]
    if not len(days):
        raise DataError(f"{source}: cannot infer the frequency from a single timestamp per series; pass freq "
                        "(--freq M, W, D, ...)")
    spacing = float(np.median(days))
    return min(_SPACING, key=lambda item: abs(np.log(spacing / item[1])))[0]


def _parse_times(raw: pd.Series, keys: pd.Series, time: str, source: str) -> tuple[pd.Series, bool]:
    """(parsed times, is_integer); an unparseable value is an error naming its row and series."""
    if pd.api.types.is_integer_dtype(raw.dtype):
        return raw.astype(np.int64), True
    if pd.api.types.is_float_dtype(raw.dtype) and raw.notna().all() and np.all(np.mod(raw.to_numpy(), 1) == 0):
        return raw.astype(np.int64), True
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        parsed = raw
    else:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.to_datetime(raw.astype("string"), errors="coerce", format="mixed")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{source}: time column {time!r} has {len(bad)} value(s) that are not dates, the first "
                        f"{raw.iloc[i]!r} in row {i + 2} (series {keys.iloc[i]!r}); fix or drop those rows")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert(None)
    return parsed, False


def _period_ordinals(times: pd.Series, raw: pd.Series, keys: pd.Series, freq: str,
                     source: str) -> tuple[np.ndarray, str]:
    """Each timestamp's period number at ``freq`` and the convention all of them follow ("start"
    or "end" of their period); a timestamp that is neither, like the others, is an error."""
    periods = times.dt.to_period(freq)
    ordinals = periods.array.asi8.astype(np.int64)
    starts = periods.dt.start_time
    ends = periods.dt.end_time.dt.normalize() if freq in ("Y", "Q", "M", "W", "D", "B") else None
    at_start = (times == starts).to_numpy()
    at_end = (times == ends).to_numpy() if ends is not None else np.zeros(len(times), bool)
    if at_start.all():
        convention = "start"
    elif at_end.all():
        convention = "end"
    else:
        i = int(np.flatnonzero(~(at_start | at_end))[0] if not (at_start | at_end).all()
                else np.flatnonzero(~at_start)[0])
        raise DataError(f"{source}: irregular spacing for freq {freq!r}: {raw.iloc[i]!r} (row {i + 2}, "
                        f"series {keys.iloc[i]!r}) is not the start or the end of its period like the others; "
                        "resample the data to one timestamp per period, or pass the freq it has")
    return ordinals, convention


def _covariates(part: pd.DataFrame, cov_cols: list[str], grid: np.ndarray, last: int, key: Any,
                source: str) -> tuple[np.ndarray, np.ndarray]:
    """One series' known covariates: (on its time grid, interpolated; after its last target,
    gaps filled from the neighbours). Empty arrays without covariates."""
    if not cov_cols:
        return np.zeros((len(grid), 0)), np.zeros((0, 0))
    cov = part.set_index("t")[cov_cols]
    inside = cov.reindex(grid).interpolate(limit_direction="both")
    if inside.isna().any().any():
        bad = inside.columns[inside.isna().any()][0]
        raise DataError(f"{source}: known covariate {bad!r} is missing throughout series {key!r}")
    future = cov.loc[cov.index > last]
    return (inside.to_numpy(np.float64), future.to_numpy(np.float64) if not future.isna().any().any()
            else future.ffill().bfill().to_numpy(np.float64))


def read_series(data: Any, *, target: str, time: str, series: str | None, freq: str | None,
                covariates: tuple[str, ...] = (), source: str = "data", need_target: bool = True) -> SeriesSet:
    """Read, check and fill the series of a table (the rules in the module docstring)."""
    from deepfit.data.sources import read_table

    frame = data if isinstance(data, pd.DataFrame) else read_table(data)
    if not isinstance(data, pd.DataFrame):
        source = str(data)
    if frame.empty:
        raise DataError(f"{source} has no rows")
    target = _find(frame, target, "target", source)
    time = _find(frame, time, "time", source)
    series_col = _find(frame, series, "series", source) if series else None
    cov_cols = [_find(frame, c, "known covariate", source) for c in covariates]
    keys = (frame[series_col].astype("string").fillna("<missing>") if series_col
            else pd.Series(["series"] * len(frame), index=frame.index, dtype="string"))
    keys = keys.reset_index(drop=True)
    frame = frame.reset_index(drop=True)
    times, integer = _parse_times(frame[time], keys, time, source)
    y = pd.to_numeric(frame[target], errors="coerce")
    text = frame[target].notna() & y.isna()
    if text.any():
        i = int(np.flatnonzero(text.to_numpy())[0])
        raise DataError(f"{source}: target {target!r} must be numbers; row {i + 2} holds {frame[target].iloc[i]!r}")
    notes: list[str] = []
    if integer:
        if freq is not None:
            raise DataError(f"{source}: time column {time!r} holds integers (steps); freq={freq!r} applies to dates. "
                            "Drop freq, or give dates")
        ordinals, convention, freq = times.to_numpy(np.int64), "step", "step"
    else:
        if freq is None:
            freq = _infer_freq(times, keys, source)
            notes.append(f"frequency inferred from the timestamps: {freq}")
        ordinals, convention = _period_ordinals(times, frame[time], keys, freq, source)
    table = pd.DataFrame({"key": keys.to_numpy(), "t": ordinals, "y": y.to_numpy(dtype=np.float64)})
    dup = table.duplicated(["key", "t"], keep=False).to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(f"{source}: series {keys.iloc[i]!r} has more than one row at {frame[time].iloc[i]!r} "
                        f"(rows {', '.join(str(j + 2) for j in np.flatnonzero(dup & (keys == keys.iloc[i]).to_numpy(dtype=bool))[:4])}) "
                        f"— a duplicate time (freq {freq!r}); keep one row per series and time")
    for c in cov_cols:
        table[c] = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64)
        if frame[c].notna().sum() != table[c].notna().sum():
            raise DataError(f"{source}: known covariate {c!r} must be numbers")
    out = SeriesSet([], [], [], freq, convention, notes=notes)
    dropped, filled = [], 0
    for key, part in table.groupby("key", sort=True):
        part = part.sort_values("t")
        observed = np.flatnonzero(part["y"].notna().to_numpy())
        if not len(observed):
            if need_target:
                dropped.append(str(key))
                continue
            observed = np.array([], dtype=int)
        t = part["t"].to_numpy()
        if len(observed):
            first, last = t[observed[0]], t[observed[-1]]
        else:
            first, last = t[0], t[0] - 1
        grid = np.arange(first, last + 1)
        values = pd.Series(part["y"].to_numpy(), index=t).reindex(grid)
        filled += int(values.isna().sum())
        values = values.interpolate(method="index", limit_area="inside").to_numpy(dtype=np.float64)
        out.ids.append(str(key))
        out.values.append(values)
        out.starts.append(int(first))
        inside, future = _covariates(part, cov_cols, grid, last, key, source)
        out.covariates.append(inside)
        out.future.append(future)
    if dropped:
        notes.append(f"{len(dropped)} series with no target value dropped: {', '.join(dropped[:5])}")
    if filled:
        notes.append(f"{filled} missing value(s) inside series filled by linear interpolation")
    if not out.ids:
        raise DataError(f"{source}: no series has a target value in {target!r}")
    return out
