"""MNIST-1D: deepfit's defaults against the paper's reference CNN, trained in the same run.

Data: ``deepfit.datasets.load("mnist1d")`` = ``mnist1d.data.make_dataset(get_dataset_args())``,
4000 train / 1000 test signals of length 40 (seed 42). Cases (BENCHMARKS.md §2):

* ``ref``: the reference CNN of Greydanus' mnist1d repo — 3 Conv1d of 25 channels (kernels
  5/3/3, stride 2, padding 1, ReLU), Linear 125→10; Adam lr 1e-2, batch 100, 6000 steps over
  consecutive slices of the training set (as the repo's ``train_model`` does), all 4000 rows.
* ``deepfit``: ``deepfit.tasks.runner.fit("arrays", "mnist1d", ArraysSettings(data="mnist1d", seed=s))`` —
  exactly ``deepfit train mnist1d --seed s`` (1-D ResNet with augmentation, trained on 3600 rows
  with a 400-row validation carve-out; run directory in a temporary folder).

Every (case, seed) runs in its own process at one thread (``torch.set_num_threads(1)``,
``OMP_NUM_THREADS=1``), alternating ref, deepfit, ref, deepfit, ... Training time is the
training loop only (for deepfit, the sum of the epoch times in ``history.csv``, validation
included); data generation and start-up are reported separately. Each process also records the
CPU seconds other processes used meanwhile (the quiet-machine check).

    .venv/bin/python bench/mnist1d.py --json bench/results/mnist1d.json      # full: 3 seeds
    .venv/bin/python bench/mnist1d.py --quick                                # smoke: 1 seed, short
"""

from __future__ import annotations

import argparse, json, os, statistics, sys, tempfile  # noqa: E401

from _common import busy_cpu_s, now
from _common import env_info as common_env_info
from _common import run_child as common_run_child

CASES = {"ref": "reference CNN (Greydanus), Adam 1e-2, bs 100, 6000 steps",
         "deepfit": "deepfit defaults (deepfit train mnist1d)"}
REF_STEPS = {"full": 6000, "quick": 1000}
DEEPFIT_EPOCHS = {"full": None, "quick": 3}  # None: deepfit's default
SEEDS = {"full": [0, 1, 2], "quick": [0]}
# Run as a script, this file's folder is sys.path[0], and this file would shadow the `mnist1d`
# package that generates the data: drop the folder.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]


# ----------------------------------------------------------------------------- child side
def child(case: str, seed: int, mode: str) -> dict:
    t_start = now()
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    out: dict = {"case": case, "seed": seed, "torch": torch.__version__, "threads": torch.get_num_threads()}
    if case == "ref":
        import torch.nn.functional as F
        from torch import nn

        from deepfit import datasets

        t0 = now()
        d = datasets.load("mnist1d")
        out["data_s"] = now() - t0
        x, y = torch.from_numpy(d.x_train).unsqueeze(1), torch.from_numpy(d.y_train)  # (4000, 1, 40)
        xt, yt = torch.from_numpy(d.x_test).unsqueeze(1), torch.from_numpy(d.y_test)
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv1d(1, 25, 5, stride=2, padding=1), nn.ReLU(),  # (B, 25, 19)
            nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),  # (B, 25, 10)
            nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),  # (B, 25, 5)
            nn.Flatten(), nn.Linear(125, 10),
        )
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        bs, steps = 100, REF_STEPS[mode]
        t0 = now()
        for step in range(steps):
            i = (step * bs) % len(x)
            loss = F.cross_entropy(model(x[i : i + bs]), y[i : i + bs])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        out["train_s"] = now() - t0
        with torch.no_grad():
            out["test_accuracy"] = float((model.eval()(xt).argmax(1) == yt).float().mean())
        out["steps"] = steps
    elif case == "deepfit":
        import csv

        import deepfit
        from deepfit.tasks.arrays import ArraysSettings
        from deepfit.tasks.runner import fit

        given = {"epochs": DEEPFIT_EPOCHS[mode]} if DEEPFIT_EPOCHS[mode] else {}
        settings = ArraysSettings(data="mnist1d", seed=seed, **given)
        out["deepfit"] = deepfit.__version__
        out["settings"] = settings.to_json()
        with tempfile.TemporaryDirectory() as tmp:
            t0 = now()
            metrics = fit("arrays", "mnist1d", settings, out=os.path.join(tmp, "run"), progress=False).metrics
            out["call_s"] = now() - t0  # data generation + training + test + writing the run
            with open(os.path.join(tmp, "run", "history.csv"), newline="") as f:
                history = list(csv.DictReader(f))
        out["train_s"] = sum(float(r["time"]) for r in history)
        out["epoch_s"] = [round(float(r["time"]), 3) for r in history]
        out["valid_accuracy"] = [round(float(r["valid_accuracy"]), 4) for r in history if r.get("valid_accuracy")]
        out["test_accuracy"] = metrics["test_accuracy"]
        n_train = 4000 - round(settings.valid_size * 4000)
        out["steps"] = len(history) * -(-n_train // settings.batch_size)
    else:
        raise SystemExit(f"unknown case {case}")
    out["steps_per_s"] = out["steps"] / out["train_s"]
    out["process_s"] = now() - t_start
    return out


# ----------------------------------------------------------------------------- parent side
def run_child(case: str, seed: int, mode: str, timeout: float) -> dict:
    return common_run_child(__file__, case, seed, mode, timeout)


def env_info() -> dict:
    return common_env_info(('torch', 'numpy', 'deepfit', 'mnist1d'), 'torch.set_num_threads(1), set_num_interop_threads(1), OMP_NUM_THREADS=1 in every case')


def summarise(runs: list[dict]) -> dict:
    table = {}
    for case in CASES:
        ok = [r for r in runs if r["case"] == case and "test_accuracy" in r]
        if not ok:
            table[case] = {"na": next((r.get("error") for r in runs if r["case"] == case), "not run")}
            continue
        acc, train = [r["test_accuracy"] for r in ok], [r["train_s"] for r in ok]
        table[case] = {"acc": acc, "acc_median": statistics.median(acc), "acc_mean": statistics.mean(acc),
                       "acc_sd": statistics.stdev(acc) if len(acc) > 1 else 0.0, "train_s": train,
                       "train_s_median": statistics.median(train),
                       "steps_per_s_median": statistics.median(r["steps_per_s"] for r in ok),
                       "others_cores_busy": [r["quiet"]["others_cores_busy"] for r in ok]}
    return table


def print_table(table: dict) -> None:
    print(f"\n{'case':58s} | {'test accuracy (seeds) -> median':34s} | {'train s (seeds) -> median':30s} | steps/s")
    print("-" * 58 + "-+-" + "-" * 34 + "-+-" + "-" * 30 + "-+--------")
    for case, desc in CASES.items():
        t = table[case]
        if "na" in t:
            print(f"{case + ' ' + desc:58s} | n/a ({t['na']})")
            continue
        accs = " ".join(f"{a:.3f}" for a in t["acc"])
        secs = " ".join(f"{s:.1f}" for s in t["train_s"])
        print(f"{case + ' ' + desc:58s} | {accs + ' -> ' + format(t['acc_median'], '.3f'):34s} | "
              f"{secs + ' -> ' + format(t['train_s_median'], '.1f'):30s} | {t['steps_per_s_median']:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 1000 reference steps, 3 deepfit epochs")
    ap.add_argument("--seeds", help="comma list (default 0,1,2; --quick: 0)")
    ap.add_argument("--cases", default="ref,deepfit", help="comma list of ref,deepfit")
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
    cases = [c.strip() for c in a.cases.split(",") if c.strip()]
    bad = [c for c in cases if c not in CASES]
    if bad:
        ap.error(f"unknown case {bad}; cases: {list(CASES)}")
    env = env_info()
    print(f"mnist1d ({mode}): seeds {seeds}; cases {cases}; 1 thread; torch {env['versions']['torch']}", flush=True)
    runs, b0, t0 = [], busy_cpu_s(), now()
    for seed in seeds:  # alternate: ref deepfit, ref deepfit, ...
        for case in cases:
            r = run_child(case, seed, mode, a.timeout)
            runs.append(r)
            msg = (f"test {r['test_accuracy']:.4f}  train {r['train_s']:.1f} s  ({r['steps_per_s']:.1f} steps/s)"
                   if "test_accuracy" in r else r["error"])
            print(f"  seed {seed} {case:8s} {msg}  [others' CPU {r.get('quiet', {}).get('others_cpu_s', '?')} s "
                  f"over {r.get('quiet', {}).get('wall_s', '?')} s]", flush=True)
    wall = now() - t0
    own = sum(r.get("quiet", {}).get("own_cpu_s", 0) for r in runs)
    others = max(0.0, busy_cpu_s() - b0 - own)
    env["quiet"] = {"wall_s": round(wall, 1), "others_cpu_s": round(others, 1),
                    "others_cores_busy": round(others / wall, 3), "loadavg_end": os.getloadavg(),
                    "quiet_ok": others / wall < 0.1,
                    "note": "others = machine non-idle CPU (/proc/stat) minus this benchmark's processes"}
    table = summarise(runs)
    print_table(table)
    print(f"\nquiet check: other processes used {others:.1f} CPU-s over {wall:.0f} s "
          f"({others / wall:.2f} cores busy on average); loadavg {env['quiet']['loadavg_end']}")
    if not env["quiet"]["quiet_ok"]:
        print("WARNING: the machine was NOT quiet (other processes > 0.1 core); training times are inflated")
    get = lambda c, k: table.get(c, {}).get(k)  # noqa: E731
    summary = {"mnist1d_acc_median": get("deepfit", "acc_median"),
               "mnist1d_train_s_median": get("deepfit", "train_s_median"),
               "reference_cnn_acc_median": get("ref", "acc_median"),
               "reference_cnn_train_s_median": get("ref", "train_s_median"),
               "others_cores_busy": env["quiet"]["others_cores_busy"]}
    print("summary:", json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in summary.items()}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"env": env, "mode": mode, "seeds": seeds, "cases_described": {c: CASES[c] for c in cases},
                       "runs": runs, "table": table, "summary": summary}, f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
