"""Reading ratings: ids kept as identifiers, bad values named, duplicates resolved, splits.

- **ids** are identifiers whatever they look like: ``31``, ``31.0`` (a float column read with
  gaps) and ``"31"`` are the same id ``"31"``; a missing or empty id drops its row (counted in
  the run's notes);
- **ratings** must be numbers: a value that is not one is an error naming a few; a missing
  rating drops its row; with ``rating_range`` a rating outside it is an error;
- **duplicate (user, item) pairs**: the latest by the time column wins, else the last row;
- **splits**: with a time column each user's latest ratings are held out (a per-user time
  split: a user with one rating keeps it for training), else random rows.

Example:
    >>> import pandas as pd
    >>> as_ids(pd.Series([31.0, None, 7.0])).tolist()
    ['31', None, '7']
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from deepfit.errors import DataError

__all__ = ["as_ids", "clean_ratings", "split_rows", "SHOWN"]

SHOWN = 5  # bad values named in an error


def as_ids(values: pd.Series) -> pd.Series:
    """Ids as strings (None where missing or empty); whole floats lose their ``.0``."""
    def one(v: object) -> str | None:
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            return None
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        s = str(v).strip()
        return s or None

    return pd.Series([one(v) for v in values.tolist()], index=values.index, dtype=object)


def clean_ratings(df: pd.DataFrame, *, user: str, item: str, target: str, time: str | None,
                  rating_range: tuple[float, float] | None, source: str, notes: list[str]) -> pd.DataFrame:
    """``df``'s user, item, rating (and time) columns, cleaned as the module docstring says;
    the row order is kept (duplicates resolved). Raises :class:`DataError` naming the problem."""
    users, items = as_ids(df[user]), as_ids(df[item])
    raw = df[target]
    ratings = pd.to_numeric(raw, errors="coerce")
    bad = raw.notna() & ratings.isna() & (raw.astype(str).str.strip() != "")
    if bad.any():
        shown = ", ".join(repr(v) for v in raw[bad].astype(str).unique()[:SHOWN])
        raise DataError(f"{source}: the ratings in '{target}' must be numbers; {int(bad.sum())} row(s) hold "
                        f"other values ({shown})")
    out = pd.DataFrame({"user": users, "item": items, "rating": ratings.astype(np.float64)})
    if time is not None:
        stamps = df[time]
        as_numbers = pd.to_numeric(stamps, errors="coerce")
        if as_numbers.notna().sum() == stamps.notna().sum():  # numbers (also when read as text from a CSV)
            stamps = as_numbers
        else:
            parsed = pd.to_datetime(stamps, errors="coerce", utc=True)
            if parsed.isna().sum() > stamps.isna().sum():
                bad_t = stamps[parsed.isna() & stamps.notna()].astype(str).unique()[:SHOWN]
                raise DataError(f"{source}: the time column '{time}' holds values that are neither numbers nor "
                                f"dates ({', '.join(map(repr, bad_t))})")
            stamps = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        out["time"] = pd.to_numeric(stamps, errors="coerce").astype(np.float64)
    missing = out["user"].isna() | out["item"].isna() | out["rating"].isna()
    if missing.all():
        raise DataError(f"{source}: no row has a user id ('{user}'), an item id ('{item}') and a rating "
                        f"('{target}') all present")
    if missing.any():
        notes.append(f"{int(missing.sum())} row(s) without a user id, item id or rating were left out")
        out = out.loc[~missing]
    if rating_range is not None:
        lo, hi = rating_range
        outside = (out["rating"] < lo) | (out["rating"] > hi)
        if outside.any():
            shown = ", ".join(f"{v:g}" for v in out.loc[outside, "rating"].unique()[:SHOWN])
            raise DataError(f"{source}: {int(outside.sum())} rating(s) in '{target}' are outside rating_range "
                            f"[{lo:g}, {hi:g}] ({shown}); fix the data or widen rating_range")
    dup = out.duplicated(["user", "item"], keep=False)
    if dup.any():
        order = out.assign(_row=np.arange(len(out)))
        keys = ["time", "_row"] if "time" in out else ["_row"]
        order = order.sort_values(keys, kind="mergesort", na_position="first")
        keep = order.drop_duplicates(["user", "item"], keep="last")["_row"].sort_values().to_numpy()
        n_pairs = int(out.loc[dup].drop_duplicates(["user", "item"]).shape[0])
        rule = "the latest by time" if "time" in out else "the last row"
        notes.append(f"{int(dup.sum())} rows rate the same (user, item) pair more than once ({n_pairs} pairs): "
                     f"{rule} wins")
        out = out.iloc[keep]
    out = out.reset_index(drop=True)
    n_users, n_items = out["user"].nunique(), out["item"].nunique()
    if n_users < 2 or n_items < 2:
        raise DataError(f"{source}: recommending needs at least 2 users and 2 items; the ratings have "
                        f"{n_users} user(s) in '{user}' and {n_items} item(s) in '{item}'")
    return out


def split_rows(frame: pd.DataFrame, share: float, *, by_time: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept rows, held-out rows) of ``frame``: ``share`` of each user's ratings, their latest
    (by time, then row order) with ``by_time``, else ``share`` of the rows at random."""
    n = len(frame)
    if share <= 0:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    if not by_time:
        perm = np.random.default_rng(seed).permutation(n)
        n_out = int(round(share * n))
        return np.sort(perm[n_out:]), np.sort(perm[:n_out])
    order = frame.assign(_row=np.arange(n)).sort_values(["user", "time", "_row"], kind="mergesort",
                                                        na_position="first")
    counts = order.groupby("user", sort=False)["user"].transform("size").to_numpy()
    from_end = order.groupby("user", sort=False).cumcount(ascending=False).to_numpy()
    held = np.minimum(np.ceil(share * counts), counts - 1)  # a user keeps at least one rating
    out = from_end < held
    rows = order["_row"].to_numpy()
    return np.sort(rows[~out]), np.sort(rows[out])
