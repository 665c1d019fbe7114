"""Transfer learning on photos: deepfit from scratch against deepfit fine-tuning the packaged
EfficientNet-Lite0 (ImageNet), on real CIFAR-10 photos, at the same time budget.

Data: ``/work/shared/data/cifar10-small/`` (README there): 5,000 CIFAR-10 training photos (500 per
class) and 1,000 test photos, 32x32 JPEG, ``train/<class>/`` and ``test/<class>/`` — the task
keeps that split (a 10% validation carve-out comes from ``train/``). Each fit is exactly
``deepfit train cifar10-small/ --time-limit 600 --seed S --pretrained none|efficientnet-lite0``
(= ``fit_images(folder, ImageSettings(time_limit=600, seed=S, pretrained=...))``) in its own
process at 2 torch threads. Seeds 0, 1, 2; headline: the median test accuracy of each arm
(target: pretrained >= 0.85 and >= 20 points above scratch). Time per fit: the whole
``fit_images`` call (decoding, training, evaluation, report).

Also measured: ``imagenet_top1_of_20``, the converted model's top-1 on foolbox's 20 ImageNet
validation photos (read from the foolbox 3.3.4 wheel, tests/pretrained_support.py), and the
cached-features frozen phase of the pretrained runs (features pass seconds, head epochs seconds,
validation accuracy after it).

``--quick`` tunes without the test photos: a carve-out of the TRAINING photos only (``--quick-train``
per class as training, the next ``--quick-test`` per class as its test set), one seed, a short
time limit (``--time-limit``, default 120 s in quick mode).

    python bench/transfer_images.py --json bench/results/transfer_images.json          # 3 seeds, ~60 min
    python bench/transfer_images.py --seeds 0 --json bench/results/transfer_images_seed0.json
    python bench/transfer_images.py --quick                                           # tuning smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path("/work/shared/data/cifar10-small")
ARMS = ("scratch", "pretrained")
PRETRAINED = {"scratch": "none", "pretrained": "efficientnet-lite0"}
now = time.perf_counter
_HERE = Path(__file__).resolve().parent


def child(arm: str, seed: int, folder: str, time_limit: float, threads: int, extra: dict) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    from deepfit.tasks.images import ImageSettings, fit_images

    settings = ImageSettings(seed=seed, time_limit=time_limit, pretrained=PRETRAINED[arm], **extra)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = now()
        predictor = fit_images(folder, settings, out=os.path.join(tmp, "run"), progress=False)
        call_s = now() - t0
    info = predictor.info
    return {"arm": arm, "seed": seed, "test_accuracy": predictor.metrics.get("test_accuracy"),
            "valid_accuracy": predictor.metrics.get("valid_accuracy"), "fit_s": round(call_s, 2),
            "epochs": info["epochs"], "plan": info["plan"], "head_phase": info.get("head_phase"),
            "stopped_by_time_limit": info["stopped_by_time_limit"], "notes": info["notes"],
            "train_rows": info["train_rows"], "test_rows": info["test_rows"], "threads": torch.get_num_threads()}


def run_child(arm: str, seed: int, folder: str, time_limit: float, threads: int, extra: dict, timeout: float) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", arm, "--seed", str(seed), "--folder", folder,
           "--time-limit", str(time_limit), "--threads", str(threads), "--extra", json.dumps(extra)]
    t0 = now()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"arm": arm, "seed": seed, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        err = (p.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return {"arm": arm, "seed": seed, "error": f"exit {p.returncode}: {err[:400]}"}
    result = json.loads(lines[-1][7:])
    result["wall_s"] = round(now() - t0, 2)
    return result


def carve_out(root: Path, per_train: int, per_test: int) -> Path:
    """Tuning data from the TRAINING photos only: per class the first ``per_train`` as train/,
    the next ``per_test`` as test/ (symlinks). The real test photos are never read."""
    for cls in sorted(p.name for p in (DATA / "train").iterdir() if p.is_dir()):
        files = sorted((DATA / "train" / cls).glob("*.jpg"))
        for split, chosen in (("train", files[:per_train]), ("test", files[per_train:per_train + per_test])):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for f in chosen:
                (root / split / cls / f.name).symlink_to(f)
    return root


def imagenet_top1_of_20() -> dict:
    """The converted EfficientNet-Lite0 on foolbox's 20 ImageNet photos (None if the registry is unreachable)."""
    import torch

    sys.path.insert(0, str(_HERE.parent / "tests"))
    from pretrained_support import RegistryUnreachable, imagenet_photos

    from deepfit.pretrained import efficientnet as eff

    try:
        images, labels, _ = imagenet_photos()
    except RegistryUnreachable as e:
        print(f"!!! imagenet_top1_of_20 NOT MEASURED: registry unreachable ({e})", flush=True)
        return {"imagenet_top1_of_20": None}
    model = eff.efficientnet_lite0().eval()
    mean, std = torch.tensor(eff.MEAN).view(1, 3, 1, 1), torch.tensor(eff.STD).view(1, 3, 1, 1)
    with torch.no_grad():
        pred = model((images.float() / 255 - mean) / std).argmax(1)
    return {"imagenet_top1_of_20": int((pred == labels).sum())}


def frozen_phase(folder: str, side: int, threads: int, seed: int = 0) -> dict:
    """Does the cached-features frozen phase pay? On ``folder`` (the tuning carve-out): one frozen
    epoch on the images (FreezeFirst: augmented batches, backbone frozen with its BatchNorm
    statistics) against one features pass plus 20 head epochs on the cached features; the
    seconds each takes and the validation accuracy of the head after it."""
    import torch

    torch.set_num_threads(threads)
    from deepfit.augment.image import AugmentedImages, default_augment
    from deepfit.data.images import decode_images
    from deepfit.engine.learner import Learner
    from deepfit.engine.losses import get_loss
    from deepfit.models.multimodal import ImageTableModel
    from deepfit.pretrained import efficientnet as eff
    from deepfit.tasks.images.callbacks import FreezeFirst

    classes = sorted(p.name for p in (Path(folder) / "train").iterdir())
    def load(split):  # noqa: E306
        paths = [(str(f), i) for i, c in enumerate(classes) for f in sorted((Path(folder) / split / c).glob("*.jpg"))]
        x, bad, _ = decode_images([p for p, _ in paths], side)
        assert not bad
        return x, torch.tensor([i for _, i in paths])

    x, y = load("train")
    xv, yv = load("test")
    loss = get_loss("cross_entropy", label_smoothing=0.1)
    out = {"side": side, "train_images": len(x), "valid_images": len(xv)}
    for how in ("one frozen epoch on images", "features once + 20 head epochs"):
        torch.manual_seed(seed)
        model = ImageTableModel(n_outputs=len(classes), backbone="efficientnet_lite0",
                                backbone_config={"dropout": 0.0, "channels_last": True}, mean=eff.MEAN, std=eff.STD,
                                dropout=0.2)
        eff.load_pretrained(model.backbone)
        t0 = now()
        if how.startswith("one"):
            net = AugmentedImages(model, default_augment(side))
            Learner(net, (x, y), loss=loss, lr=3e-3, batch_size=64, seed=seed, progress=False, compile=False,
                    callbacks=[FreezeFirst(model, 1)]).fit_one_cycle(1)
            model.eval()
        else:
            model.eval()
            with torch.inference_mode():
                f = torch.cat([model.features(x[i:i + 256]) for i in range(0, len(x), 256)])
            head = torch.nn.Sequential(model.drop, model.head)
            Learner(head, (f.clone(), y), loss=loss, lr=3e-3, weight_decay=0.05, batch_size=64, seed=seed,
                    progress=False, compile=False).fit_one_cycle(20)
            model.eval()
        seconds = now() - t0
        with torch.inference_mode():
            pred = torch.cat([model(xv[i:i + 256]).argmax(1) for i in range(0, len(xv), 256)])
        out[how] = {"seconds": round(seconds, 1), "valid_accuracy": round(float((pred == yv).float().mean()), 4)}
        print(f"  frozen phase, {how}: {seconds:.1f} s, head valid accuracy {out[how]['valid_accuracy']:.4f}",
              flush=True)
    return out


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--quick", action="store_true", help="tuning run on a carve-out of the training photos")
    ap.add_argument("--quick-train", type=int, default=200, help="--quick: training photos per class")
    ap.add_argument("--quick-test", type=int, default=50, help="--quick: held-out training photos per class")
    ap.add_argument("--seeds", help="comma list (default 0,1,2; --quick: 0)")
    ap.add_argument("--arms", default=",".join(ARMS), help="comma list of scratch,pretrained")
    ap.add_argument("--time-limit", type=float, default=None, help="seconds per fit (default 600; --quick: 120)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per fit (default 2)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="extra ImageSettings for the pretrained arm (tuning), e.g. --set size=96")
    ap.add_argument("--frozen-phase", type=int, metavar="SIDE", help="only compare the two frozen phases at "
                    "this side on the --quick carve-out (cached features against one frozen epoch)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--extra", default="{}", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print("RESULT " + json.dumps(child(a.child, a.seed, a.folder, a.time_limit, a.threads, json.loads(a.extra))),
              flush=True)
        return

    mode = "quick" if a.quick else "full"
    seeds = [int(s) for s in a.seeds.split(",")] if a.seeds else ([0] if a.quick else [0, 1, 2])
    arms = [x for x in a.arms.split(",") if x]
    time_limit = a.time_limit or (120.0 if a.quick else 600.0)
    extra = {k: json.loads(v) for k, _, v in (s.partition("=") for s in a.set)}
    import torch

    from deepfit import __version__

    if a.frozen_phase:
        with tempfile.TemporaryDirectory() as tmp:
            folder = str(carve_out(Path(tmp) / "carve", a.quick_train, a.quick_test))
            result = frozen_phase(folder, a.frozen_phase, a.threads)
        print("frozen_phase:", json.dumps(result))
        if a.json:
            Path(a.json).write_text(json.dumps(result, indent=1))
        return
    print(f"transfer_images ({mode}): arms {arms}, seeds {seeds}, time limit {time_limit:g}s, {a.threads} threads; "
          f"torch {torch.__version__}; deepfit {__version__}; extra {extra}", flush=True)
    summary: dict = imagenet_top1_of_20()
    print(f"  imagenet_top1_of_20: {summary['imagenet_top1_of_20']}", flush=True)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = str(carve_out(Path(tmp) / "carve", a.quick_train, a.quick_test)) if a.quick else str(DATA)
        for seed in seeds:
            for arm in arms:
                r = run_child(arm, seed, folder, time_limit, a.threads, extra if arm == "pretrained" else {},
                              timeout=time_limit * 2 + 300)
                runs.append(r)
                if "test_accuracy" in r:
                    head = r.get("head_phase") or {}
                    msg = (f"test accuracy {r['test_accuracy']:.4f}  fit {r['fit_s']:.0f} s  ({r['epochs']} epochs, "
                           f"{r['plan']['backbone']} at {r['plan']['size']} px"
                           + (f"; head phase {head['seconds']:.0f} s, valid {head.get('valid_accuracy', 0):.3f}"
                              if head else "") + ")")
                else:
                    msg = r["error"]
                print(f"  seed {seed} {arm:10s}: {msg}", flush=True)
    table = {}
    for arm in arms:
        ok = [r for r in runs if r["arm"] == arm and "test_accuracy" in r]
        table[arm] = {"acc": [r["test_accuracy"] for r in ok], "fit_s": [r["fit_s"] for r in ok]}
        table[arm]["acc_median"] = _median(table[arm]["acc"])
        table[arm]["fit_s_median"] = _median(table[arm]["fit_s"])
    print(f"\n{'arm':34s} | {'test accuracy (seeds) -> median':36s} | {'fit s (seeds) -> median':28s}")
    print("-" * 34 + "-+-" + "-" * 36 + "-+-" + "-" * 28)
    for arm in arms:
        t = table[arm]
        if t["acc"]:
            accs = " ".join(f"{v:.4f}" for v in t["acc"]) + f" -> {t['acc_median']:.4f}"
            secs = " ".join(f"{v:.0f}" for v in t["fit_s"]) + f" -> {t['fit_s_median']:.0f}"
            label = {"scratch": "deepfit, from scratch", "pretrained": "deepfit, EfficientNet-Lite0 (ImageNet)"}[arm]
            print(f"{label:34s} | {accs:36s} | {secs:28s}")
    summary.update({
        "pretrained_acc_median": table.get("pretrained", {}).get("acc_median"),
        "scratch_acc_median": table.get("scratch", {}).get("acc_median"),
        "pretrained_fit_s_median": table.get("pretrained", {}).get("fit_s_median"),
        "scratch_fit_s_median": table.get("scratch", {}).get("fit_s_median"),
    })
    if summary["pretrained_acc_median"] is not None and summary["scratch_acc_median"] is not None:
        summary["points_above_scratch"] = round(100 * (summary["pretrained_acc_median"]
                                                       - summary["scratch_acc_median"]), 2)
    print("summary:", json.dumps(summary))
    if mode == "full" and summary["pretrained_acc_median"] is not None:
        if summary["pretrained_acc_median"] < 0.85 or summary.get("points_above_scratch", 0) < 20:
            print("WARNING: below the target (pretrained >= 0.85 and >= 20 points above scratch)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"mode": mode, "seeds": seeds, "time_limit": time_limit, "threads": a.threads, "extra": extra,
                       "date": time.strftime("%Y-%m-%d %H:%M:%S"), "loadavg": os.getloadavg(), "runs": runs,
                       "table": table, "summary": summary}, f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
