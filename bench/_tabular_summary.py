"""Summary and printed table of bench/tabular.py: per-dataset means, and deepfit against the baselines.

deepfit's mean over the seeds run is compared with HGB's, LightGBM's and the linear model's (and the
dummy's, shown only): the baseline's mean from this run where it ran, otherwise the suite file's
`baselines_here` figure (3-seed mean), which `baseline_source` and the table's '*' say. Ties count as
neither a win nor a loss.
"""

from __future__ import annotations

import statistics

__all__ = ["BASELINES", "COMPARED", "summarize", "print_table"]

BASELINES = ["hgb", "lightgbm", "linear", "dummy"]  # the methods a suite file's baselines_here may hold
COMPARED = ["hgb", "lightgbm", "linear"]  # the ones the summary counts deepfit against


def _mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.pstdev(xs) if len(xs) > 1 else 0.0)


def _better(metric: str, a: float, b: float) -> bool:
    return a > b if metric == "accuracy" else a < b


def _rel_gap(metric: str, a: float, b: float) -> float:
    """deepfit's relative shortfall against a baseline figure b: > 0 means deepfit is worse."""
    return (b - a) / b if metric == "accuracy" else (a - b) / b


def _per_method(runs: list[dict], name: str, m: str, key: str) -> dict:
    ok = [r for r in runs if r["dataset"] == name and r["method"] == m and r.get("ok")]
    failed = [r for r in runs if r["dataset"] == name and r["method"] == m and not r.get("ok")]
    if not ok:
        return {"n_ok": 0, "n_failed": len(failed)}
    mean, std = _mean_std([r[key] for r in ok])
    d = {"mean": mean, "std": std, "per_seed": {str(r["seed"]): r[key] for r in ok},
         "fit_s_mean": statistics.fmean(r["fit_s"] for r in ok), "fit_s_max": max(r["fit_s"] for r in ok),
         "predict_s_mean": statistics.fmean(r["predict_s"] + r.get("predict_proba_s", 0.0) for r in ok),
         "n_ok": len(ok), "n_failed": len(failed),
         "n_fit_over_time_limit": sum(r["fit_s"] > r.get("time_limit", float("inf")) for r in ok),
         "n_time_capped": sum(bool(r.get("stopped_by_time_cap")) for r in ok)}
    if key == "accuracy" and all("log_loss" in r for r in ok):
        d["log_loss_mean"] = statistics.fmean(r["log_loss"] for r in ok)
    if key == "rmse":
        d["nrmse_mean"] = statistics.fmean(r["nrmse"] for r in ok)
    return d


def _vs(d: dict, spec: dict) -> dict:
    """Each baseline's figure for one dataset: this run's mean where it ran, else the suite's baselines_here."""
    out = {}
    dee = d.get("deepfit", {})
    for b in BASELINES:
        r = d.get(b)
        if r and r.get("n_ok"):
            e = {"value": r["mean"], "source": "run"}
        elif b in spec.get("baselines_here", {}):
            e = {"value": spec["baselines_here"][b], "source": "suite"}
        else:
            continue
        if dee.get("n_ok"):
            a = dee["mean"]
            e.update(deepfit_better=_better(d["metric"], a, e["value"]),
                     deepfit_worse=_better(d["metric"], e["value"], a), rel_gap=_rel_gap(d["metric"], a, e["value"]))
        out[b] = e
    return out


def _counts(per: dict, names: list[str]) -> dict:
    """Wins and losses of deepfit's mean against each baseline's figure, over the given datasets."""
    def pairs(b: str) -> list[tuple[str, dict]]:
        return [(n, per[n]["vs"][b]) for n in names if "deepfit_better" in per[n]["vs"].get(b, {})]
    h, lg, lin = pairs("hgb"), pairs("lightgbm"), pairs("linear")
    gaps = [(e["rel_gap"], n) for n, e in h]
    return {"wins_vs_hgb": sum(e["deepfit_better"] for _, e in h) if h else None, "n_datasets_compared": len(h),
            "losses_vs_hgb": [n for n, e in h if e["deepfit_worse"]],
            "wins_vs_lightgbm": sum(e["deepfit_better"] for _, e in lg) if lg else None,
            "n_datasets_compared_lightgbm": len(lg), "losses_vs_lightgbm": [n for n, e in lg if e["deepfit_worse"]],
            "worse_than_linear": sum(e["deepfit_worse"] for _, e in lin) if lin else None,
            "n_datasets_compared_linear": len(lin),
            "worse_than_linear_datasets": [n for n, e in lin if e["deepfit_worse"]],
            "worst_rel_gap_vs_hgb": max(gaps)[0] if gaps else None,
            "worst_rel_gap_vs_hgb_dataset": max(gaps)[1] if gaps else None}


def _baseline_source(per: dict, methods: list[str], na: dict, seeds: list[int], protocol_seeds: list[int]) -> dict:
    out = {}
    for b in BASELINES:
        src = {n: per[n]["vs"][b]["source"] for n in per if b in per[n]["vs"]}
        if not src:
            out[b] = {"source": "none", "note": "not run here and not in the suite file's baselines_here"}
            continue
        suite_ones = [n for n, v in src.items() if v == "suite"]
        why = ("not in --methods" if b not in methods else f"n/a: {na[b]}" if b in na else "its runs failed")
        like = ("" if sorted(seeds) == sorted(protocol_seeds) else
                f"; deepfit's means here are over seeds {seeds}, the suite's over {protocol_seeds}: not like for like")
        if not suite_ones:
            out[b] = {"source": "run", "note": f"run here, side by side, seeds {seeds}"}
        elif len(suite_ones) == len(src):
            out[b] = {"source": "suite", "note": f"the suite file's baselines_here (means over seeds {protocol_seeds}, "
                                                 f"measured at 1 thread); not run here ({why}){like}"}
        else:
            out[b] = {"source": "mixed", "datasets_from_suite": suite_ones,
                      "note": f"run here, except on {suite_ones} (its runs failed), where the suite file's "
                              f"baselines_here figure is used{like}"}
    return out


def summarize(runs: list[dict], specs: dict, methods: list[str], na: dict | None = None, *,
              seeds: list[int] | None = None, protocol_seeds: list[int] | None = None, n_suite: int | None = None,
              subsets: dict[str, list[str]] | None = None) -> dict:
    """Per-dataset means over the seeds, and how deepfit's compare with HGB, LightGBM and the linear model."""
    na, seeds, protocol_seeds = na or {}, seeds or [0, 1, 2], protocol_seeds or [0, 1, 2]
    per: dict = {}
    for name, spec in specs.items():
        key = "accuracy" if spec["task"] == "classification" else "rmse"
        per[name] = {"metric": key, **{m: _per_method(runs, name, m, key) for m in methods}}
        per[name]["vs"] = _vs(per[name], spec)
    s: dict = {"per_dataset": per}
    s.update(_counts(per, list(per)))
    ran = [n for n in per if per[n].get("deepfit", {}).get("n_ok") and per[n].get("hgb", {}).get("n_ok")]
    ratios = [per[n]["deepfit"]["fit_s_mean"] / per[n]["hgb"]["fit_s_mean"] for n in ran]
    s.update(n_datasets_suite=n_suite if n_suite is not None else len(specs),
             fit_time_ratio_vs_hgb=statistics.fmean(ratios) if ratios else None,
             deepfit_fits_over_time_limit=sum(r["fit_s"] > r["time_limit"] for r in runs
                                              if r["method"] == "deepfit" and r.get("ok")),
             deepfit_max_fit_s=max((r["fit_s"] for r in runs if r["method"] == "deepfit" and r.get("ok")),
                                   default=None),
             n_failed_runs=sum(not r.get("ok") for r in runs),
             baseline_source=_baseline_source(per, methods, na, seeds, protocol_seeds),
             comparison="deepfit's mean over the seeds run against each baseline's mean (run here, or the suite "
                        "file's baselines_here where not run); ties count as neither a win nor a loss")
    if subsets:
        s["by_subset"] = {k: {"datasets": [n for n in v if n in per], **_counts(per, [n for n in v if n in per])}
                          for k, v in subsets.items() if any(n in per for n in v)}
    return s


def _fmt(key: str, v: float) -> str:
    return f"{v:.4f}" if key == "accuracy" else f"{v:.0f}" if abs(v) >= 1e4 else f"{v:.4g}"


def _mark(e: dict | None) -> str:
    if not e or "deepfit_better" not in e:
        return "-"
    m = "win" if e["deepfit_better"] else "LOSS" if e["deepfit_worse"] else "tie"
    return m + ("*" if e["source"] == "suite" else "")


def print_table(summary: dict, specs: dict, methods: list[str], na: dict) -> None:
    for name, d in summary["per_dataset"].items():
        spec, key = specs[name], d["metric"]
        better = "higher" if key == "accuracy" else "lower"
        print(f"\n{name} ({spec['task']}, {spec['n_rows']} rows; {key}, {better} is better)")
        print(f"  {'method':10s} {key + ' mean ± std':>22s} {'per seed':>30s} {'fit s':>8s} {'pred s':>7s}")
        for m in methods:
            r = d.get(m)
            if m in na:
                print(f"  {m:10s} n/a: {na[m]}")
            elif not r or not r.get("n_ok"):
                print(f"  {m:10s} FAILED ({r.get('n_failed', 0) if r else 0} runs; see JSON runs[].error)")
            else:
                seeds = " ".join(_fmt(key, v) for v in r["per_seed"].values())
                mean = _fmt(key, r["mean"]) + " ± " + _fmt(key, r["std"])
                print(f"  {m:10s} {mean:>22s} {seeds:>30s} {r['fit_s_mean']:8.2f} {r['predict_s_mean']:7.3f}"
                      + (f"  ({r['n_failed']} failed)" if r["n_failed"] else "")
                      + (f"  ({r['n_time_capped']} stopped by the time cap)" if r["n_time_capped"] else "")
                      + (f"  ({r['n_fit_over_time_limit']} fits over the time limit)" if m == "deepfit"
                         and r["n_fit_over_time_limit"] else ""))
        ref = "  ".join(f"{k} {_fmt(key, v)}" for k, v in spec["baselines_here"].items())
        print(f"  reference (JSON baselines_here, 3-seed means): {ref}")
        if d.get("deepfit", {}).get("n_ok"):
            print("  deepfit " + "; ".join(f"vs {b} {_mark(d['vs'].get(b))} ({_fmt(key, d['vs'][b]['value'])}, "
                                           f"{d['vs'][b]['source']})" for b in COMPARED if b in d["vs"]))

    # one line per dataset: every method's mean (* = the suite's baselines_here figure), and deepfit's marks
    cols = ["deepfit", *BASELINES, *[m for m in methods if m not in ("deepfit", *BASELINES)]]
    print(f"\n{'dataset':14s} {'metric':10s} " + " ".join(f"{c:>9s}" for c in cols)
          + f"  {'vs hgb':>7s} {'vs lgbm':>7s} {'vs linear':>9s}")
    for name, d in summary["per_dataset"].items():
        key, cells = d["metric"], []
        for c in cols:
            r, e = d.get(c, {}), d["vs"].get(c)
            cells.append(_fmt(key, r["mean"]) if r.get("n_ok") else _fmt(key, e["value"]) + "*" if e else "-")
        marks = [_mark(d["vs"].get(b)) for b in COMPARED]
        label = "acc ↑" if key == "accuracy" else "rmse ↓"
        print(f"{name:14s} {label:10s} " + " ".join(f"{c:>9s}" for c in cells)
              + f"  {marks[0]:>7s} {marks[1]:>7s} {marks[2]:>9s}")
    s = summary
    print("* = the suite file's baselines_here figure (3-seed mean, measured at 1 thread), not run in this invocation")
    for b, v in s["baseline_source"].items():
        print(f"  {b}: {v['note']}")

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:+.2f}%"

    def num(x: float | None, unit: str) -> str:
        return "n/a" if x is None else f"{x:.1f}{unit}"

    print(f"\nsummary: deepfit beats HGB on {s['wins_vs_hgb']}/{s['n_datasets_compared']} datasets compared "
          f"(suite: {s['n_datasets_suite']}), LightGBM on {s['wins_vs_lightgbm']}/{s['n_datasets_compared_lightgbm']}; "
          f"worse than the linear baseline on {s['worse_than_linear']}/{s['n_datasets_compared_linear']}"
          + (f" ({', '.join(s['worse_than_linear_datasets'])})" if s["worse_than_linear_datasets"] else "")
          + f"; worst relative gap vs HGB {pct(s['worst_rel_gap_vs_hgb'])} ({s['worst_rel_gap_vs_hgb_dataset']}; "
          f"> 0 = deepfit worse); fit time ratio vs HGB {num(s['fit_time_ratio_vs_hgb'], 'x')}; deepfit max fit "
          f"{num(s['deepfit_max_fit_s'], ' s')} ({s['deepfit_fits_over_time_limit']} fits over the time limit); "
          f"failed runs {s['n_failed_runs']}")
    for k, v in s.get("by_subset", {}).items():
        print(f"  {k}: beats HGB {v['wins_vs_hgb']}/{v['n_datasets_compared']}, LightGBM "
              f"{v['wins_vs_lightgbm']}/{v['n_datasets_compared_lightgbm']}; worse than linear "
              f"{v['worse_than_linear']}/{v['n_datasets_compared_linear']}")
