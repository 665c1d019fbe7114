"""Side by side: deepfit's score per table in several bench/tabular.py JSON files, against the
suite file's baselines (linear, HGB, LightGBM; 3-seed means measured with the suite). A helper,
not a benchmark: it measures nothing, it reads what bench/tabular.py wrote.

    .venv/bin/python bench/_compare_tabular.py bench/results/tabular_v2_seed0/*.json
    .venv/bin/python bench/_compare_tabular.py --suite ../shared/bench/tabular_public_v2.json A.json B.json

Each column is one file's deepfit mean over the seeds it ran; the last column the longest fit
of each file, seconds. The counts below compare each file's means with the suite's baselines
(a tie is not a win; "worse than linear" is strictly worse). For the summary of a full run,
with baselines run beside deepfit, read the JSON's ``summary`` instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="bench/tabular.py --json files")
    parser.add_argument("--suite", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench",
                                                        "tabular_public_v2.json"))
    args = parser.parse_args(argv)
    with open(args.suite) as f:
        suite = {d["name"]: d for d in json.load(f)["datasets"]}
    runs = []
    for path in args.runs:
        with open(path) as f:
            by: dict[str, list[dict]] = {}
            for r in json.load(f)["runs"]:
                if r.get("method") == "deepfit" and r.get("ok"):
                    by.setdefault(r["dataset"], []).append(r)
        runs.append(by)
    names = [os.path.basename(p)[:14] for p in args.runs]
    print(f"{'table':13s} " + " ".join(f"{n:>14s}" for n in names) + "    linear       hgb  lightgbm   longest fit (s)")
    counts = [[0, 0, 0] for _ in runs]
    for name, d in suite.items():
        classify = d["task"] == "classification"
        metric = "accuracy" if classify else "rmse"
        base = d["baselines_here"]

        def better(a: float, b: float) -> bool:
            return a > b if classify else a < b

        cells, fits = [], []
        for i, by in enumerate(runs):
            rs = by.get(name, [])
            if not rs:
                cells.append(f"{'-':>14s}")
                fits.append("-")
                continue
            v = sum(r[metric] for r in rs) / len(rs)
            cells.append(f"{v:14.4f}")
            fits.append(f"{max(r['fit_s'] for r in rs):.0f}")
            counts[i][0] += better(v, base["hgb"])
            counts[i][1] += better(v, base["lightgbm"])
            counts[i][2] += better(base["linear"], v)
        print(f"{name:13s} " + " ".join(cells) + f" {base['linear']:9.4f} {base['hgb']:9.4f} {base['lightgbm']:9.4f}   "
              + " ".join(fits))
    for n, (hgb, lgb, lin) in zip(names, counts):
        print(f"{n}: beats HGB on {hgb}, LightGBM on {lgb}; worse than linear on {lin} (of {len(suite)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
