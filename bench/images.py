"""Images benchmark: accuracy of deepfit's defaults on real handwritten digits, plus the pipeline.

1. **Accuracy** — scikit-learn ``digits`` (1,797 real 8x8 handwritten digits, UCI), written as
   PNGs in class folders by ``deepfit.datasets.digits_images`` (upscaled 4x to 32x32,
   bilinear), then exactly ``deepfit train <folder> --seed s`` =
   ``fit_images(folder, ImageSettings(seed=s))``: stratified 80/20 train/test split by seed
   (plus a 10% validation carve-out of the training part), recipe chosen from the data. Seeds
   0, 1, 2; the headline is the median test accuracy (target >= 0.99). Time: the whole
   ``fit_images`` call (decoding, training, evaluation, report) and the training loop alone
   (sum of epoch times in ``history.csv``). Every seed runs in its own process at one thread.
2. **Pipeline** — ``bench/images_pipeline.py``'s ``run(quick)`` (decoding speed against bare
   Pillow, and training steps/s streaming from files against cached tensors); its summary is
   merged into this one.

    .venv/bin/python bench/images.py --json bench/results/images.json     # full: 3 seeds
    .venv/bin/python bench/images.py --quick                              # smoke: 1 seed, 4 epochs
"""

from __future__ import annotations

import argparse, csv, json, os, statistics, subprocess, sys, tempfile, time  # noqa: E401

SEEDS = {"full": [0, 1, 2], "quick": [0]}
EPOCHS = {"full": None, "quick": 4}  # None: deepfit's default recipe
now = time.perf_counter
_HERE = os.path.dirname(os.path.abspath(__file__))


def child(seed: int, mode: str, folder: str) -> dict:
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    from deepfit.tasks.images import ImageSettings, fit_images

    given = {"epochs": EPOCHS[mode]} if EPOCHS[mode] else {}
    settings = ImageSettings(seed=seed, **given)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = now()
        predictor = fit_images(folder, settings, out=os.path.join(tmp, "run"), progress=False)
        call_s = now() - t0
        with open(os.path.join(tmp, "run", "history.csv"), newline="") as f:
            history = list(csv.DictReader(f))
    return {"seed": seed, "test_accuracy": predictor.metrics["test_accuracy"], "call_s": round(call_s, 2),
            "train_s": round(sum(float(r["time"]) for r in history), 2), "epochs": len(history),
            "plan": predictor.info["plan"], "test_rows": predictor.info["test_rows"],
            "train_rows": predictor.info["train_rows"], "threads": torch.get_num_threads()}


def run_child(seed: int, mode: str, folder: str, timeout: float) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, os.path.abspath(__file__), "--seed", str(seed), "--mode", mode, "--folder", folder]
    t0 = now()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"seed": seed, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        err = (p.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return {"seed": seed, "error": f"exit {p.returncode}: {err[:300]}"}
    result = json.loads(lines[-1][7:])
    result["wall_s"] = round(now() - t0, 2)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 4 epochs, quick pipeline benchmark")
    ap.add_argument("--seeds", help="comma list (default 0,1,2; --quick: 0)")
    ap.add_argument("--no-pipeline", action="store_true", help="skip bench/images_pipeline.py")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per process")
    ap.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.folder:  # child
        print("RESULT " + json.dumps(child(a.seed, a.mode, a.folder)), flush=True)
        return

    mode = "quick" if a.quick else "full"
    seeds = [int(s) for s in a.seeds.split(",")] if a.seeds else SEEDS[mode]
    import torch

    from deepfit import __version__
    from deepfit.datasets import digits_images

    print(f"images ({mode}): digits, seeds {seeds}; 1 thread; torch {torch.__version__}; deepfit {__version__}",
          flush=True)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = now()
        folder = str(digits_images(os.path.join(tmp, "digits")))
        write_s = now() - t0
        for seed in seeds:
            r = run_child(seed, mode, folder, a.timeout)
            runs.append(r)
            msg = (f"test accuracy {r['test_accuracy']:.4f}  train {r['train_s']:.1f} s  fit_images {r['call_s']:.1f} s"
                   f"  ({r['epochs']} epochs, {r['plan']['backbone']} at {r['plan']['size']} px)"
                   if "test_accuracy" in r else r["error"])
            print(f"  seed {seed}: {msg}", flush=True)
    ok = [r for r in runs if "test_accuracy" in r]
    acc = [r["test_accuracy"] for r in ok]
    table = {"acc": acc, "acc_median": statistics.median(acc) if acc else None,
             "train_s": [r["train_s"] for r in ok], "call_s": [r["call_s"] for r in ok],
             "train_s_median": statistics.median(r["train_s"] for r in ok) if ok else None,
             "call_s_median": statistics.median(r["call_s"] for r in ok) if ok else None,
             "write_pngs_s": round(write_s, 2)}
    print(f"\n{'case':44s} | {'test accuracy (seeds) -> median':34s} | {'fit_images s (seeds) -> median':32s}")
    print("-" * 44 + "-+-" + "-" * 34 + "-+-" + "-" * 32)
    if ok:
        accs = " ".join(f"{v:.4f}" for v in acc) + f" -> {table['acc_median']:.4f}"
        secs = " ".join(f"{v:.1f}" for v in table["call_s"]) + f" -> {table['call_s_median']:.1f}"
        print(f"{'digits (real, 8x8 -> 32 px), deepfit defaults':44s} | {accs:34s} | {secs:32s}")
    summary = {"digits_acc_median": table["acc_median"], "digits_train_s_median": table["train_s_median"],
               "digits_fit_s_median": table["call_s_median"]}
    pipeline = None
    if not a.no_pipeline:
        sys.path.insert(0, _HERE)
        import images_pipeline

        print("\npipeline (bench/images_pipeline.py):", flush=True)
        pipeline = images_pipeline.run(quick=a.quick)
        summary.update(pipeline["summary"])
        for k, v in pipeline["summary"].items():
            print(f"  {k}: {v}")
    print("summary:", json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in summary.items()}))
    if ok and table["acc_median"] is not None and table["acc_median"] < 0.99 and mode == "full":
        print("WARNING: median digits accuracy below the 0.99 target")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"mode": mode, "seeds": seeds, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "loadavg": os.getloadavg(), "runs": runs, "table": table, "pipeline": pipeline,
                       "summary": summary}, f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
