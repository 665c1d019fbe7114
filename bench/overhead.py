"""Engine overhead: samples/s of deepfit against a hand-written loop and peer libraries.

Same model, random data (20k samples, seed 0), batch, AdamW lr 1e-3, cross-entropy, fp32, one
thread. Every case runs in its own process (this script re-invokes itself with ``--case X
--model M``); cases alternate (A B C ... A B C ...). Per process: import, build, one warm-up
epoch (reported as setup; for B it holds the compile), then N timed epochs. Peers are timed as a
user sees them: wall time of ``fit(N epochs)`` with all their per-epoch and per-fit overhead.

    .venv-bench/bin/python bench/overhead.py                 # full run (see BENCHMARKS.md §1)
    .venv-bench/bin/python bench/overhead.py --quick --json /tmp/overhead.json
    .venv-bench/bin/python bench/overhead.py --cases A,D --models tiny
"""

from __future__ import annotations

import argparse, json, os, platform, resource, statistics, subprocess, sys, time  # noqa: E401

N_SAMPLES = 20_000
MODELS = {"mlp": {"dims": (784, 512, 512, 10), "bs": 256, "label": "MLP 784-512-512-10, bs 256"},
          "tiny": {"dims": (32, 64, 10), "bs": 64, "label": "tiny MLP 32-64-10, bs 64"}}
CASES = {  # key: (description, is a peer)
    "A": ("tight loop, pre-batched tensors, eager", False),
    "B": ("same, fwd+loss and opt.step torch.compile'd", False),
    "C": ("DataLoader(TensorDataset, shuffle=True)", False),
    "D": ("deepfit defaults", False),
    "E": ("Lightning defaults (logger/ckpt/bar/summary off)", True),
    "Eb": ("Lightning barebones=True", True),
    "F": ("fastai Learner, torch AdamW, 0 workers", True),
    "Fa": ("fastai Learner, its default Adam (decoupled wd)", True),
    "G": ("Keras 3, torch backend, fit(numpy)", True),
    "H": ("Accelerate, prepared DataLoader", True),
}
EPOCHS = {"full": {"mlp": 3, "tiny": 10}, "quick": {"mlp": 1, "tiny": 2}}
REPS = {"full": 6, "quick": 1}
BENCH_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv-bench", "bin", "python")
now = time.perf_counter


# ----------------------------------------------------------------------------- child side
def child(case: str, model_key: str, epochs: int) -> dict:
    t_start = now()
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    cfg = MODELS[model_key]
    dims, bs = cfg["dims"], cfg["bs"]
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N_SAMPLES, dims[0], generator=g)
    y = torch.randint(0, dims[-1], (N_SAMPLES,), generator=g)
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers += [nn.Linear(dims[i], dims[i + 1])] + ([nn.ReLU()] if i < len(dims) - 2 else [])
    model = nn.Sequential(*layers)
    out: dict = {"versions": {"torch": torch.__version__}}

    def loop_case(epoch_fn):  # our own loops: 1 warm-up epoch, then `epochs` timed epochs
        t0 = now()
        epoch_fn()
        out["warmup_epoch_s"] = now() - t0
        times = []
        for _ in range(epochs):
            t = now()
            epoch_fn()
            times.append(now() - t)
        out["epoch_s"] = times
        return sum(times)

    def fit_case(fit):  # peers: fit(1) as warm-up, then wall time of fit(epochs)
        t0 = now()
        fit(1)
        out["warmup_epoch_s"] = now() - t0
        t = now()
        fit(epochs)
        return now() - t

    t_import = now()
    if case in ("A", "B"):
        batches = list(zip(X.split(bs), y.split(bs)))
        if case == "A":
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            fwd, opt_step = (lambda xb, yb: F.cross_entropy(model(xb), yb)), opt.step
        else:  # tensor lr so the compiled step is not re-specialised on lr; static shapes (2 graphs)
            opt = torch.optim.AdamW(model.parameters(), lr=torch.tensor(1e-3))
            fwd = torch.compile(lambda xb, yb: F.cross_entropy(model(xb), yb), dynamic=False)
            opt_step = torch.compile(opt.step, dynamic=False)

        def epoch():
            for xb, yb in batches:
                fwd(xb, yb).backward()
                opt_step()
                opt.zero_grad(set_to_none=True)
    elif case in ("C", "H"):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        dl = DataLoader(TensorDataset(X, y), batch_size=bs, shuffle=True, generator=torch.Generator().manual_seed(0))
        backward = lambda loss: loss.backward()  # noqa: E731
        if case == "H":
            import accelerate
            out["versions"]["accelerate"] = accelerate.__version__
            t_import = now()
            acc = accelerate.Accelerator()
            model, opt, dl = acc.prepare(model, opt, dl)
            backward = acc.backward

        def epoch():  # noqa: F811
            for xb, yb in dl:
                backward(F.cross_entropy(model(xb), yb))
                opt.step()
                opt.zero_grad(set_to_none=True)
    if case in ("A", "B", "C", "H"):
        setup_done = now()
        timed = loop_case(epoch)
    elif case == "D":
        import deepfit
        from deepfit import Learner
        from deepfit.engine.callbacks import Callback
        out["versions"]["deepfit"] = deepfit.__version__
        t_import = now()
        marks: list[tuple[str, float]] = []

        class EpochTimer(Callback):
            order = -1000

            def on_epoch_start(self, learner):
                marks.append(("start", now()))

            def on_epoch_end(self, learner):
                marks.append(("end", now()))

        learn = Learner(model, (X, y), loss="cross_entropy", lr=1e-3, batch_size=bs, seed=0, progress=False,
                        callbacks=[EpochTimer()])
        setup_done = t_fit = now()
        learn.fit(epochs + 1)  # first epoch = warm-up (holds a compile if compile="auto" chose one)
        t_end = now()
        ends = [t for k, t in marks if k == "end"]
        starts = [t for k, t in marks if k == "start"]
        assert len(ends) == epochs + 1, f"expected {epochs + 1} epoch ends, saw {len(ends)}"
        out["warmup_epoch_s"] = ends[0] - t_fit
        out["epoch_s"] = [e - s for s, e in zip(starts[1:], ends[1:])]  # callback-to-callback
        timed = t_end - ends[0]  # epochs 2..N+1 plus everything between them and fit()'s return
        out["fit_total_s"] = t_end - t_fit
        policy = getattr(learn, "compile_policy", None)
        out["deepfit_choices"] = {"precision": str(getattr(learn, "precision", "?")),
                                  "compile": getattr(policy, "mode", "?"), "compiled": getattr(learn, "compiled", "?")}
    elif case in ("E", "Eb"):
        import logging, lightning as L  # noqa: E401
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # PYTHONWARNINGS=ignore is set too
        out["versions"]["lightning"] = L.__version__
        t_import = now()

        class Lit(L.LightningModule):
            def __init__(self, net):
                super().__init__()
                self.net = net

            def training_step(self, batch, batch_idx):
                xb, yb = batch
                return F.cross_entropy(self.net(xb), yb)

            def configure_optimizers(self):
                return torch.optim.AdamW(self.parameters(), lr=1e-3)

        lit = Lit(model)
        dl = DataLoader(TensorDataset(X, y), batch_size=bs, shuffle=True, generator=torch.Generator().manual_seed(0))
        kw = {"barebones": True} if case == "Eb" else {
            "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
            "enable_model_summary": False}
        out["trainer_kwargs"] = kw
        setup_done = now()
        timed = fit_case(lambda n: L.Trainer(max_epochs=n, **kw).fit(lit, dl))
    elif case in ("F", "Fa"):
        from functools import partial
        import fastai
        import fastai.basics  # noqa: F401  (what users import)
        import fastai.callback.progress  # noqa: F401  (in fastai.*.all; adds Learner.no_bar)
        from fastai.data.core import DataLoaders
        from fastai.data.load import DataLoader as FDataLoader
        from fastai.learner import Learner as FLearner
        from fastai.optimizer import OptimWrapper
        out["versions"]["fastai"] = fastai.__version__
        t_import = now()
        torch.set_num_threads(1)  # in case the import changed it
        train = FDataLoader(TensorDataset(X, y), bs=bs, shuffle=True, drop_last=False, num_workers=0)
        valid = FDataLoader(TensorDataset(X[:0], y[:0]), bs=bs, num_workers=0)  # empty: no validation work
        kw = {"opt_func": partial(OptimWrapper, opt=torch.optim.AdamW)} if case == "F" else {}
        learn = FLearner(DataLoaders(train, valid, device="cpu"), model, loss_func=nn.CrossEntropyLoss(), lr=1e-3, **kw)

        def fit(n):
            with learn.no_bar(), learn.no_logging():
                learn.fit(n, lr=1e-3)
        setup_done = now()
        timed = fit_case(fit)
    elif case == "G":
        import keras
        out["versions"]["keras"] = keras.__version__
        assert keras.backend.backend() == "torch", keras.backend.backend()
        t_import = now()
        torch.set_num_threads(1)
        keras.utils.set_random_seed(0)
        km = keras.Sequential([keras.Input((dims[0],))]
                              + [keras.layers.Dense(h, activation="relu") for h in dims[1:-1]]
                              + [keras.layers.Dense(dims[-1])])
        km.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=0.01),  # torch defaults
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        Xn, yn = X.numpy(), y.numpy()
        setup_done = now()
        timed = fit_case(lambda n: km.fit(Xn, yn, batch_size=bs, epochs=n, verbose=0, shuffle=True))
    else:
        raise SystemExit(f"unknown case {case}")
    out.update(
        samples_per_s=N_SAMPLES * epochs / timed, timed_s=timed, epochs=epochs,
        import_s=t_import - t_start, build_s=setup_done - t_import,
        threads_after=torch.get_num_threads(), omp=os.environ.get("OMP_NUM_THREADS"))
    return out


# ----------------------------------------------------------------------------- parent side
def busy_cpu_s() -> float:
    """Non-idle CPU seconds of the whole machine so far (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def run_child(py: str, case: str, model_key: str, epochs: int, timeout: float) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", KERAS_BACKEND="torch",
               TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    cmd = [py, os.path.abspath(__file__), "--case", case, "--model", model_key, "--epochs", str(epochs)]
    b0, r0, s0, t0 = busy_cpu_s(), resource.getrusage(resource.RUSAGE_CHILDREN), os.times(), now()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall, r1, s1 = now() - t0, resource.getrusage(resource.RUSAGE_CHILDREN), os.times()
    mine = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) + (s1.user + s1.system - s0.user - s0.system)
    quiet = {"wall_s": round(wall, 3), "own_cpu_s": round(mine, 3),
             "others_cpu_s": round(max(0.0, busy_cpu_s() - b0 - mine), 3)}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        err = (p.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return {"error": f"exit {p.returncode}: {err[:300]}", "quiet": quiet}
    res = json.loads(lines[-1][7:])
    res["quiet"] = quiet
    return res


def fmt_rate(x: float) -> str:  # noqa: E704
    return f"{x:,.0f}"


def summarise(cases: dict, sel: list[str], models: list[str]) -> tuple[dict, dict]:
    table, summary = {}, {}
    for m in models:
        ok = {c: [r["samples_per_s"] for r in cases[c][m] if "samples_per_s" in r] for c in sel}
        ref = statistics.median(ok["A"]) if ok.get("A") else None
        for c in sel:
            v = ok[c]
            if not v:
                errs = [r.get("error", "?") for r in cases[c][m]]
                table[(c, m)] = {"na": errs[0] if errs else "not run"}
                continue
            med = statistics.median(v)
            warm = [r["warmup_epoch_s"] for r in cases[c][m] if "warmup_epoch_s" in r]
            table[(c, m)] = {"median": med, "min": min(v), "max": max(v), "n": len(v),
                             "ratio": med / ref if ref else None,
                             "import_s": statistics.median(r["import_s"] for r in cases[c][m] if "import_s" in r),
                             "warmup_first": warm[0], "warmup_median": statistics.median(warm),
                             "epoch_s": N_SAMPLES / med}
        key = "mlp" if m == "mlp" else "tiny"
        d = table.get(("D", m), {})
        summary[f"deepfit_{key}"] = d.get("ratio")
        peers = [(table[(c, m)]["ratio"], c) for c in sel if CASES[c][1] and table[(c, m)].get("ratio")]
        summary[f"best_peer_{key}"] = max(peers)[0] if peers else None
        summary[f"_best_peer_{key}_case"] = max(peers)[1] if peers else None
        if ref:
            summary[f"A_samples_per_s_{key}"] = ref
    return table, summary


def print_tables(table: dict, sel: list[str], models: list[str]) -> None:
    w = 52
    print(f"\n{'case':{w}s}" + "".join(f" | {MODELS[m]['label']:38s}" for m in models))
    print("-" * w + "".join(" | " + "-" * 38 for _ in models))
    for c in sel:
        row = f"{c + ' ' + CASES[c][0]:{w}s}"
        for m in models:
            t = table[(c, m)]
            if "na" in t:
                cell = f"n/a ({t['na'].split('Error: ')[-1].split(': ', 1)[-1][:32]})"
            else:
                r = f"{t['ratio']:.2f}" if t["ratio"] else "?"
                cell = f"{fmt_rate(t['median'])}/s = {r} ({fmt_rate(t['min'])}-{fmt_rate(t['max'])})"
            row += f" | {cell:38s}"
        print(row)
    print("\nsetup (seconds; warm-up epoch = first epoch incl. compile/first-fit costs; first process / median)")
    print(f"{'case':{w}s}" + "".join(f" | {m + ': import, warm-up epoch, steady epoch':38s}" for m in models))
    for c in sel:
        row = f"{c + ' ' + CASES[c][0]:{w}s}"
        for m in models:
            t = table[(c, m)]
            cell = "n/a" if "na" in t else (f"{t['import_s']:.1f}, {t['warmup_first']:.2f}/{t['warmup_median']:.2f}, "
                                           f"{t['epoch_s']:.3f}")
            row += f" | {cell:38s}"
        print(row)


def env_info(py: str) -> dict:
    code = ("import json,sys,torch,importlib.metadata as md\n"
            "v={'python':sys.version.split()[0],'torch':torch.__version__,'default_threads':torch.get_num_threads()}\n"
            "for p in ['lightning','fastai','keras','accelerate','deepfit','numpy']:\n"
            "  try: v[p]=md.version(p)\n  except Exception as e: v[p]='n/a'\n"
            "print(json.dumps(v))")
    p = subprocess.run([py, "-c", code], capture_output=True, text=True)
    info = json.loads(p.stdout) if p.returncode == 0 else {"error": p.stderr[-300:]}
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    g = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--verify", "-q", "HEAD"],
                       capture_output=True, text=True)
    commit = g.stdout.strip() if g.returncode == 0 else None
    return {"interpreter": py, "versions": info, "cpu": cpu, "nproc": os.cpu_count(), "platform": platform.platform(),
            "threads": "torch.set_num_threads(1), set_num_interop_threads(1), OMP_NUM_THREADS=1 in every case",
            "git_commit": commit, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "loadavg_start": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--quick", action="store_true", help="short smoke run (< 3 minutes)")
    ap.add_argument("--cases", help="comma list, e.g. A,D (default: all; --quick skips Fa)")
    ap.add_argument("--models", default="mlp,tiny", help="comma list of mlp,tiny")
    ap.add_argument("--reps", type=int, help="timed repetitions (processes) per case")
    ap.add_argument("--python", help="interpreter for the cases (default: .venv-bench if present)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per case process")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--epochs", type=int, help="timed epochs per process (default by model)")
    a = ap.parse_args()
    if a.case:  # child
        print("RESULT " + json.dumps(child(a.case, a.model, a.epochs)), flush=True)
        return

    mode = "quick" if a.quick else "full"
    sel = [c.strip() for c in (a.cases or ",".join(c for c in CASES if not (a.quick and c == "Fa"))).split(",")]
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    bad = [c for c in sel if c not in CASES] + [m for m in models if m not in MODELS]
    if bad:
        ap.error(f"unknown case/model {bad}; cases: {list(CASES)}, models: {list(MODELS)}")
    if "A" not in sel:
        sel.insert(0, "A")  # the reference every ratio needs
    py = a.python or (BENCH_PY if os.path.exists(BENCH_PY) else sys.executable)
    reps = a.reps or REPS[mode]
    env = env_info(py)
    print(f"interpreter {py}; torch {env['versions'].get('torch')}; {reps} reps; epochs {a.epochs or EPOCHS[mode]}; 1 thread",
          flush=True)
    cases = {c: {m: [] for m in models} for c in sel}
    b0, t0 = busy_cpu_s(), now()
    for rep in range(reps):  # alternate: A B C ... for each model, then again
        for m in models:
            for c in sel:
                ep = a.epochs or EPOCHS[mode][m]
                r = run_child(py, c, m, ep, a.timeout)
                r["rep"] = rep
                cases[c][m].append(r)
                msg = (f"{fmt_rate(r['samples_per_s'])}/s (warm-up {r['warmup_epoch_s']:.2f} s)"
                       if "samples_per_s" in r else r["error"])
                print(f"  rep {rep} {m:4s} {c:2s} {msg}  [others' CPU {r.get('quiet', {}).get('others_cpu_s', '?')} s]",
                      flush=True)
    wall = now() - t0
    own = sum(r.get("quiet", {}).get("own_cpu_s", 0) for c in cases.values() for rs in c.values() for r in rs)
    others = max(0.0, busy_cpu_s() - b0 - own)
    env["quiet"] = {"wall_s": round(wall, 1), "others_cpu_s": round(others, 1),
                    "others_cores_busy": round(others / wall, 3), "loadavg_end": os.getloadavg(),
                    "quiet_ok": others / wall < 0.1,
                    "note": "others = machine non-idle CPU (/proc/stat) minus this benchmark's processes"}
    table, summary = summarise(cases, sel, models)
    print_tables(table, sel, models)
    print(f"\nquiet check: other processes used {others:.1f} CPU-s over {wall:.0f} s "
          f"({others / wall:.2f} cores busy on average); loadavg {env['quiet']['loadavg_end']}")
    if not env["quiet"]["quiet_ok"]:
        print("WARNING: the machine was NOT quiet (other processes > 0.1 core); figures are unreliable")
    print("summary (ratios to A):", json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                                               for k, v in summary.items()}))
    if a.json:
        numeric = {k: v for k, v in summary.items() if not k.startswith("_")}
        detail = {f"{c}/{m}": v for (c, m), v in table.items()}
        with open(a.json, "w") as f:
            json.dump({"env": env, "mode": mode, "epochs": EPOCHS[mode] if not a.epochs else a.epochs,
                       "cases_described": {c: CASES[c][0] for c in sel}, "cases": cases, "table": detail,
                       "summary": numeric, "best_peer_cases": {k[1:]: v for k, v in summary.items()
                                                                if k.startswith("_")}}, f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
