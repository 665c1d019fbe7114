"""Paired A/B of the linear part's refit on all training rows: one fit per (table, seed), test
predictions of the same predictor before the refit (A) and after (B), so both arms share every
network. Ran once (commit of this file); the refit was reverted as neutral (BENCHMARKS.md §3a).
  python bench/ab_refit_linear.py OUT.json   (DATA: bench/tabular.py --prepare's folder)"""
import copy, json, os, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
SUITE = "/work/shared/bench/tabular_public_v2.json"
DATA = "/work/ab/data"

def child(name, seed, out):
    import numpy as np, torch
    torch.set_num_threads(2)
    import tabular_lib as tl
    import deepfit.tasks.table as table
    from deepfit.tasks.table.task import TableTask
    meta, train, test = tl.load(DATA, name, seed)
    before = {}
    orig = TableTask._refit_linear
    def wrapped(self, tdata, models, predictor, on_valid):
        before["p"] = copy.deepcopy(predictor)
        return orig(self, tdata, models, predictor, on_valid)
    TableTask._refit_linear = wrapped
    task = "classify" if meta["task"] == "classification" else "regress"
    s = table.TableSettings(target=meta["target"], task=task, time_limit=60.0, seed=seed, test_size=0)
    t = time.perf_counter()
    model = table.fit_table(train, s, progress=False)
    fit_s = time.perf_counter() - t
    x, y = test.drop(columns=[meta["target"]]), test[meta["target"]].to_numpy()
    res = {"dataset": name, "seed": seed, "fit_s": fit_s, "notes": model.info.get("notes")}
    for arm, p in (("A", before.get("p", model)), ("B", model)):
        pred = p.predict(x)
        if task == "classify":
            proba = tl.proba_by_class(p.predict_proba(x), len(meta["classes"]))
            res[arm] = tl.classification_metrics(y, pred, proba, len(meta["classes"]))
        else:
            res[arm] = tl.regression_metrics(y, pred)
    res["refit"] = "p" in before
    json.dump(res, open(out, "w"), default=str)

if __name__ == "__main__":
    if sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4]); sys.exit()
    out_path = sys.argv[1]
    suite = json.load(open(SUITE))
    names = [d["name"] for d in suite["datasets"]]
    results = json.load(open(out_path)) if os.path.exists(out_path) else []
    done = {(r["dataset"], r["seed"]) for r in results}
    for seed in (0, 1, 2):
        for name in names:
            if (name, seed) in done: continue
            tmp = f"/work/ab/_ab_{name}_{seed}.json"
            r = subprocess.run([sys.executable, __file__, "--child", name, str(seed), tmp], capture_output=True, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")})
            if r.returncode: print(name, seed, "FAILED", r.stderr[-2000:]); continue
            res = json.load(open(tmp)); os.remove(tmp); results.append(res)
            json.dump(results, open(out_path, "w"), indent=1)
            k = "accuracy" if "accuracy" in res["A"] else "rmse"
            print(f"{name:14s} {seed} {k} A={res['A'][k]:.4f} B={res['B'][k]:.4f} fit={res['fit_s']:.1f}s refit={res['refit']}", flush=True)
