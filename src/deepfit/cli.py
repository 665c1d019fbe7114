"""The ``deepfit`` command line: a thin layer over the Python API.

Imports stay lazy so ``deepfit --help`` answers without importing torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from deepfit._version import __version__
from deepfit.errors import DeepfitError

__all__ = ["main", "build_parser"]

BUNDLED = ("digits", "mnist1d")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepfit",
        description="Data in, model out: train, evaluate and ship deep-learning models.",
    )
    parser.add_argument("--version", action="version", version=f"deepfit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser("train", help="train a model and write a run directory")
    train.add_argument("data", help=f"a bundled dataset: {', '.join(BUNDLED)}")
    train.add_argument("--out", default=None, help="run directory (default: runs/DATA)")
    train.add_argument("--epochs", type=int, default=None, help="passes over the training data (default 20)")
    train.add_argument("--batch-size", type=int, default=None, help="samples per step (default 64)")
    train.add_argument("--lr", type=float, default=None, help="peak learning rate of the one-cycle schedule (default 3e-3)")
    train.add_argument("--seed", type=int, default=None, help="seed of every RNG (default 0)")
    train.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                       help="also checkpoint every N steps mid-epoch (default: at epoch ends only)")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run in --out exactly")
    train.add_argument("--quiet", action="store_true", help="no progress output")

    demo = sub.add_parser("demo", help="train on bundled real data and write a report (no setup needed)")
    demo.add_argument("--out", default="runs/demo", help="where to write the demo runs (default runs/demo)")

    sub.add_parser("datasets", help="list the bundled datasets")
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from deepfit.tasks.bundled import RunSettings, train_bundled

    if args.data not in BUNDLED:
        print(f"deepfit train: unknown data {args.data!r}; bundled datasets: {', '.join(BUNDLED)}", file=sys.stderr)
        return 2
    given = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
    }
    given = {k: v for k, v in given.items() if v is not None}
    settings = RunSettings(data=args.data, **given)
    out = args.out or f"runs/{args.data}"
    if args.resume and given:
        print(f"deepfit train: --resume continues with the run's stored settings; drop {', '.join('--' + k.replace('_', '-') for k in given)}",
              file=sys.stderr)
        return 2
    metrics = train_bundled(settings, out, resume=args.resume, progress=not args.quiet)
    print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    print(f"run directory: {out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from deepfit.tasks.bundled import RunSettings, train_bundled

    out = Path(args.out) / "digits"
    for old in (out, out.with_name(out.name + ".incomplete")):
        shutil.rmtree(old, ignore_errors=True)  # the demo always starts afresh
    print("deepfit demo: an MLP on scikit-learn's handwritten digits (1,797 real 8x8 images)")
    metrics = train_bundled(RunSettings(data="digits", epochs=20), out)
    print(f"test accuracy: {metrics['test_accuracy']:.4f}  (test loss {metrics['test_loss']:.4f})")
    print(f"run directory: {out}  (report: {out / 'report.html'})")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from deepfit import datasets

    for name in datasets.names():
        print(name)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handlers = {"train": _cmd_train, "demo": _cmd_demo, "datasets": _cmd_datasets}
    try:
        return handlers[args.command](args)
    except DeepfitError as e:
        print(f"deepfit {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"deepfit {args.command}: interrupted", file=sys.stderr)
        return 130
