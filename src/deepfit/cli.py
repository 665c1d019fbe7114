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

BUNDLED = ("digits", "mnist1d")  # shown in --help; deepfit.datasets.names() is the list (a test keeps them equal)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepfit",
        description="Data in, model out: train, evaluate and ship deep-learning models.",
    )
    parser.add_argument("--version", action="version", version=f"deepfit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser("train", help="train a model and write a run directory")
    train.add_argument("data", help="a table (CSV, TSV, Parquet), a folder of images (one sub-folder per class), "
                       f"a text corpus with --task lm, or a bundled dataset: {', '.join(BUNDLED)}")
    train.add_argument("--target", help="the column to predict (tables)")
    train.add_argument("--out", default=None, help="run directory to create (default: runs/<data name>)")
    train.add_argument("--task", choices=("auto", "classify", "regress", "lm", "recommend", "forecast"), default=None,
                       help="default: auto; lm trains a language model on a text corpus (.txt file or folder); "
                       "recommend a recommender on ratings (--user, --item, --target; docs/recommend.md); "
                       "forecast: time series (docs/forecast.md)")
    train.add_argument("--time-limit", type=float, default=None, metavar="S", help="training budget in seconds")
    train.add_argument("--seed", type=int, default=None, help="seed of splits, initialisation and order (default 0)")
    train.add_argument("--test", default=None, metavar="DATA", help="labelled test table (default: hold out 20%%)")
    train.add_argument("--type", action="append", default=[], metavar="COL=KIND",
                       help="override a column's type, e.g. --type zip=category (repeatable)")
    train.add_argument("--split-by", default=None, metavar="COL", help="hold out the latest rows by this column")
    train.add_argument("--group", default=None, metavar="COL", help="keep each group on one side of the split")
    train.add_argument("--text-encoder", choices=("auto", "ngrams", "minilm", "both"), default=None,
                       help="tables: text columns through n-grams, the pretrained sentence encoder (minilm), both, "
                            "or auto: the one the validation rows prefer (default; docs/text.md)")
    train.add_argument("--epochs", type=int, default=None, help="epochs (bundled datasets; tables stop early)")
    train.add_argument("--batch-size", type=int, default=None, help="samples per step")
    train.add_argument("--lr", type=float, default=None, help="learning rate")
    train.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                       help="also checkpoint every N steps mid-epoch (default: at epoch ends only)")
    train.add_argument("--pretrained", default=None, metavar="NAME",
                       help="images: 'auto' (default: EfficientNet-Lite0 pretrained on ImageNet for colour photos, "
                            "when deepfit[pretrained] is installed), 'efficientnet-lite0', 'none', or a .safetensors file")
    # --task recommend (docs/recommend.md)
    train.add_argument("--user", default=None, metavar="COL", help="the user id column (--task recommend)")
    train.add_argument("--item", default=None, metavar="COL", help="the item id column (--task recommend)")
    forecast = train.add_argument_group("forecasting (--task forecast; docs/forecast.md)")
    train.add_argument("--time", default=None, metavar="COL", help="the time column: --task forecast: dates or integer "
                       "steps; --task recommend: each user's latest ratings are held out")
    forecast.add_argument("--series", default=None, metavar="COL", help="the column naming each series")
    forecast.add_argument("--horizon", type=int, default=None, metavar="H", help="steps to forecast (default 12)")
    forecast.add_argument("--freq", default=None, help="the frequency: Y, Q, M, W, D, h (default: inferred)")
    forecast.add_argument("--known-covariates", default=None, metavar="COLS",
                          help="comma-separated columns known in advance (their future rows go in the history)")
    forecast.add_argument("--quantiles", default=None, metavar="QS", help="quantile levels (default 0.1,0.5,0.9)")
    forecast.add_argument("--backtest-windows", type=int, default=None, metavar="W",
                          help="rolling-origin backtest windows of one horizon each (default 1)")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run for --out exactly")
    train.add_argument("--quiet", action="store_true", help="no progress output")

    predict = sub.add_parser("predict", help="predict with a trained model")
    predict.add_argument("model", help="a model directory written by deepfit train")
    predict.add_argument("data", help="rows to predict: a table (CSV, TSV, Parquet) or, for image models, a folder")
    predict.add_argument("--out", default=None, metavar="FILE", help="write a CSV here (default: standard output)")

    generate = sub.add_parser("generate", help="generate text with a language model trained by --task lm")
    generate.add_argument("model", help="a model directory written by deepfit train --task lm")
    generate.add_argument("--prompt", default="", help="text to continue (default: start of a document)")
    generate.add_argument("--max-tokens", type=int, default=200, metavar="N", help="tokens to generate (default 200)")
    generate.add_argument("--temperature", type=float, default=0.8, metavar="T", help="0 = greedy (default 0.8)")
    generate.add_argument("--top-k", type=int, default=None, metavar="K", help="sample among the K likeliest tokens")
    generate.add_argument("--top-p", type=float, default=None, metavar="P", help="nucleus sampling mass, e.g. 0.9")
    generate.add_argument("--seed", type=int, default=None, help="seed of the sampling (default: random)")

    evaluate = sub.add_parser("evaluate", help="metrics of a trained model on labelled data")
    evaluate.add_argument("model", help="a model directory written by deepfit train")
    evaluate.add_argument("data", help="labelled data: a table holding the target column, or a folder of class folders")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")

    export = sub.add_parser("export", help="export a trained model to ONNX, verified by onnxruntime against it")
    export.add_argument("model", help="a model directory written by deepfit train")
    export.add_argument("--format", choices=("onnx",), default="onnx", help="the file format (default: onnx)")
    export.add_argument("--out", default=None, metavar="FILE", help="the .onnx file to write (default: "
                        "MODEL/model.onnx); export.json goes next to it")
    export.add_argument("--data", default=None, metavar="FILE", help="held-out data to verify on (a table, an image "
                        "folder, a .npz, a corpus); topped up to --verify-rows with rows synthesised from the schema")
    export.add_argument("--verify-rows", type=int, default=1000, metavar="N", help="rows to verify on (>= 1000)")
    export.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    export.add_argument("--exporter", choices=("auto", "torchscript", "dynamo"), default="auto",
                        help="torch.onnx exporter (default auto: TorchScript, dynamo where it lacks a layer)")

    demo = sub.add_parser("demo", help="train on bundled real data and write a report (no setup needed)")
    demo.add_argument("--out", default="runs/demo", help="where to write the demo runs (default runs/demo)")

    serve = sub.add_parser("serve", help="serve a trained model over HTTP (needs deepfit[serve])",
                           description="Serve a trained model over HTTP: GET / (a page to try it), GET /health, "
                           "GET /v1/model, POST /v1/predict, POST /v1/generate (language models), "
                           "GET /openapi.json. Concurrent requests are batched into one forward pass; torch "
                           "runs at --threads threads (default 1). See docs/serve.md.")
    serve.add_argument("model", help="a run directory written by deepfit train")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--token", default=None, help="require 'Authorization: Bearer TOKEN' on /v1 "
                       "(default: the DEEPFIT_TOKEN environment variable; unset: no token)")
    serve.add_argument("--max-batch", type=int, default=256, metavar="N", help="rows per forward pass (default 256)")
    serve.add_argument("--max-wait-ms", type=float, default=0.0, metavar="M",
                       help="how long a request waits for others to share its batch (default 0: requests "
                            "that arrive while the model is busy share the next batch)")
    serve.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    serve.add_argument("--max-rows", type=int, default=10_000, metavar="N", help="rows or images per request "
                       "(default 10000; more: 413)")
    serve.add_argument("--max-body-bytes", type=int, default=10 * 2**20, metavar="B",
                       help="bytes per request body (default 10 MiB; more: 413)")
    serve.add_argument("--max-image-pixels", type=int, default=40_000_000, metavar="P",
                       help="pixels per uploaded image, read from its header (default 40,000,000; more: 413)")
    serve.add_argument("--max-tokens", type=int, default=2048, metavar="N",
                       help="tokens one /v1/generate request may ask for (default 2048)")

    recommend = sub.add_parser("recommend", help="top-k items for a user from a model trained with --task recommend")
    recommend.add_argument("model", help="a model directory written by deepfit train --task recommend")
    recommend.add_argument("--user", default=None, help="the user id (as in the training ratings)")
    recommend.add_argument("--k", type=int, default=10, help="how many items (default 10)")
    recommend.add_argument("--include-seen", action="store_true", help="also list items the user rated")
    recommend.add_argument("--similar-to", default=None, metavar="ITEM",
                           help="instead: the k items most similar to ITEM (--user is then ignored)")

    sub.add_parser("datasets", help="list the bundled datasets")

    learn = sub.add_parser("learn", help="the learning path (docs/learn/): list its chapters, or run one",
                           description="The learning path: ten chapters that follow the standard deep-learning "
                           "books with deepfit on bundled data. Without a chapter: list them. With one: run it, "
                           "print what it measures and write its figures into a folder it names.")
    learn.add_argument("chapter", nargs="?", default=None, help="a chapter number, 1 to 10 (none: list the chapters)")
    learn.add_argument("--out", default=None, metavar="DIR",
                       help="folder for the chapter's figures and output.json (default runs/learn/<NN-name>)")
    learn.add_argument("--quick", action="store_true", help="the seconds-long version (tiny epochs; what make test runs)")
    return parser


def _parse_types(pairs: list[str]) -> dict[str, str]:
    types = {}
    for pair in pairs:
        name, sep, kind = pair.partition("=")
        if not sep or not name or not kind:
            raise ValueError(f"--type takes COLUMN=KIND (e.g. zip=category), got {pair!r}")
        types[name] = kind
    return types


# `deepfit train` flags that choose settings (flag dest -> the common setting name each task maps).
SETTING_FLAGS = ("task", "target", "time_limit", "seed", "epochs", "batch_size", "lr", "checkpoint_every",
                 "split_by", "group", "text_encoder", "pretrained", "user", "item", "time")


def _given(args: argparse.Namespace, types: dict[str, str]) -> dict[str, object]:
    """The settings the user chose on the command line (flags left out are not in it)."""
    given = {name: getattr(args, name) for name in SETTING_FLAGS if getattr(args, name, None) is not None}
    if types:
        given["types"] = types
    return given


def _cmd_train(args: argparse.Namespace) -> int:
    """Route the data to its task, build its settings from the flags, and run it.

    One rule for ``--resume`` in every task: the run continues with its stored settings, so a
    flag that chooses a setting is refused (exit 2, naming it); ``--target`` and ``--task``,
    which say what the data is, must match the stored run.
    """
    from pathlib import Path

    from deepfit.errors import ConfigError
    from deepfit.tasks import UnknownData, route
    from deepfit.tasks.runner import fit, get_task, settings_with

    try:
        types = _parse_types(args.type)
        given = _given(args, types)
        kind = route(args.data, task=args.task, target=args.target, types=types)
        task_cls = get_task(kind)
        chosen = task_cls.settings_from_cli(args, given)
    except (ValueError, UnknownData, ConfigError) as e:
        print(f"deepfit train: {e}", file=sys.stderr)
        return 2
    if args.resume:
        flags = [k for k in given if k not in ("task", "target")]
        if flags:
            print("deepfit train: --resume continues with the run's stored settings; drop "
                  + ", ".join("--" + k.replace("_", "-") for k in flags), file=sys.stderr)
            return 2
    out = args.out or task_cls.default_out(args.data)
    settings = None if args.resume else settings_with(task_cls.Settings, chosen)
    predictor = fit(kind, args.data, settings, test=args.test, out=out, resume=args.resume, progress=not args.quiet,
                    given=chosen if args.resume else None)
    from deepfit.engine.distributed import is_main_process

    if is_main_process():  # under torchrun every rank returns the predictor; one prints
        notes = getattr(predictor, "info", {}).get("notes") or []
        chosen_task = next((n for n in notes if isinstance(n, str) and n.startswith("task: ")), None)
        if chosen_task:  # an inferred task says which and why (deepfit.data.table.task_reason)
            print(chosen_task)
        print(task_cls.summary_line(predictor))
        print(f"run directory: {out}  (report: {Path(out) / 'report.html'})")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    """Predict; a ``DeepfitWarning`` (e.g. inputs outside the training range) is one line on
    stderr, ``deepfit predict: note: ...``; other warnings show as Python shows them."""
    import warnings

    from deepfit.errors import DeepfitWarning
    from deepfit.tasks import load

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeepfitWarning)
        frame = load(args.model).predict_frame(args.data, source=args.data)
    for w in caught:
        if issubclass(w.category, DeepfitWarning):
            print(f"deepfit predict: note: {' '.join(str(w.message).split())}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    text = frame.to_csv(index=False)
    if args.out:
        from deepfit.engine.checkpoint import atomic_write_bytes

        atomic_write_bytes(args.out, text.encode("utf-8"))
        print(f"wrote {len(frame)} predictions to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from deepfit.tasks.lm import generate_cli

    return generate_cli(args)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from deepfit.tasks import load

    metrics = load(args.model).evaluate(args.data, source=args.data)
    if args.json:
        print(json.dumps({k: (v if v == v else None) for k, v in metrics.items()}))
    else:
        for key, value in metrics.items():
            print(f"{key:10s} {value:.4f}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from deepfit.export import export_onnx

    report = export_onnx(args.model, args.out, opset=args.opset, verify_rows=args.verify_rows, data=args.data,
                         exporter=args.exporter)
    print(report.summary())
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Six tasks on bundled real data, each with a run directory and a report (a few minutes)."""
    import shutil
    from pathlib import Path

    from deepfit import datasets
    from deepfit.tasks.arrays import ArraysSettings
    from deepfit.tasks.images import demo as image_demo
    from deepfit.tasks.lm import demo as lm_demo
    from deepfit.tasks.recommend import demo as recommend_demo
    from deepfit.tasks.runner import fit
    from deepfit.tasks.table import TableSettings, fit_table

    root = Path(args.out)
    for name in ("credit_data", "tweets", "mnist1d", "movielens"):  # the demo always starts afresh
        for old in (root / name, root / f"{name}.incomplete"):
            shutil.rmtree(old, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)

    csv = root / "credit_data.csv"
    datasets.rdataset("modeldata", "credit_data").to_csv(csv, index=False)
    print(f"deepfit demo 1/7: a table — credit scoring ({csv}: 4,454 real loans, 13 columns), target 'Status'")
    m = fit_table(csv, TableSettings(target="Status", time_limit=45), out=root / "credit_data").metrics
    print(f"  test accuracy {m['test_accuracy']:.4f}  (majority class 0.72; AUROC {m['test_auroc']:.3f})"
          f"  ->  {root / 'credit_data' / 'report.html'}")

    print("deepfit demo 2/7: images — scikit-learn's 1,797 real handwritten digits as PNG class folders")
    predictor, run = image_demo(root)
    print(f"  test accuracy {predictor.metrics['test_accuracy']:.4f}  ->  {run / 'report.html'}")

    tweets = root / "tweets.csv"
    frame = datasets.rdataset("dslabs", "trump_tweets")
    frame = frame.loc[frame["source"].isin(["Twitter for Android", "Twitter for iPhone"]), ["text", "source"]]
    frame.drop_duplicates("text").to_csv(tweets, index=False)
    print(f"deepfit demo 3/7: text — which phone sent a tweet, from its text alone ({tweets})")
    m = fit_table(tweets, TableSettings(target="source", time_limit=60), out=root / "tweets").metrics
    print(f"  test accuracy {m['test_accuracy']:.4f}  (majority class 0.54)  ->  {root / 'tweets' / 'report.html'}")

    print("deepfit demo 4/7: signals — MNIST-1D (4,000 real-derived 1-D signals, 10 classes), a 1-D ResNet")
    m = fit("arrays", "mnist1d", ArraysSettings(data="mnist1d"), out=root / "mnist1d").metrics
    print(f"  test accuracy {m['test_accuracy']:.4f}  (the paper's CNN: 0.94)  ->  {root / 'mnist1d' / 'report.html'}")

    print("deepfit demo 5/7: a language model — a small GPT on 2.2 M characters of tweets, 60 s")
    lm, sample = lm_demo(root / "lm", time_limit=60)
    print(f"  validation {lm.metrics.get('valid_nats_per_char', float('nan')):.3f} nats/char; a sample:")
    print("    " + sample.replace("\n", "\n    "))
    print("deepfit demo 6/7: recommendations — MovieLens ratings of 300 users, each user's latest ratings held out")
    rec, lines = recommend_demo(root / "movielens")
    print(f"  test RMSE {rec.metrics['test_rmse']:.4f} (the ratings' spread, SD: {rec.info['rating_sd']:.4f}), NDCG@10 "
          f"{rec.metrics.get('test_ndcg10', float('nan')):.3f}  ->  {root / 'movielens' / 'report.html'}")
    print("    " + "\n    ".join(lines))
    from deepfit.tasks.forecast.demo import demo as forecast_demo

    print("deepfit demo 7/7: forecasting — 5 real monthly series (airline passengers, UK/US deaths, temperatures), "
          "12 months ahead, one global N-BEATS beside Theta and seasonal-naive")
    _, scores, _ = forecast_demo(root / "forecast", progress=False)
    print(f"  held-out year MASE {scores['mase']:.3f} (seasonal-naive {scores['mase_snaive']:.3f})"
          f"  ->  {root / 'forecast' / 'report.html'}")
    names = ("credit_data", "digits_images", "tweets", "mnist1d", "lm", "movielens", "forecast")
    print(f"run directories: {', '.join(str(root / n) for n in names)}")
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    """Print a user's top-k list (or an item's most similar items) as CSV."""
    from deepfit.errors import ConfigError
    from deepfit.tasks import load

    model = load(args.model)
    if not hasattr(model, "recommend"):
        raise ConfigError(f"{args.model} holds a {model.kind} model; deepfit recommend needs one trained with "
                          "--task recommend")
    if args.similar_to is None and args.user is None:
        raise ConfigError("deepfit recommend needs --user U (or --similar-to ITEM)")
    if args.similar_to is not None:
        frame = model.similar_items(args.similar_to, k=args.k)
    else:
        frame = model.recommend(args.user, k=args.k, exclude_seen=not args.include_seen)
    sys.stdout.write(frame.to_csv(index=False))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    """Check the artifact, then serve it until SIGTERM / Ctrl-C (exit 0 after draining)."""
    try:
        from deepfit.serve import Limits, serve
    except ImportError as e:
        print(f"deepfit serve: needs the serve extra ({e.name} is missing): pip install 'deepfit[serve]'",
              file=sys.stderr)
        return 2
    limits = Limits(max_body_bytes=args.max_body_bytes, max_rows=args.max_rows, max_image_bytes=args.max_body_bytes,
                    max_image_pixels=args.max_image_pixels, max_tokens=args.max_tokens)
    return serve(args.model, host=args.host, port=args.port, token=args.token, max_batch=args.max_batch,
                 max_wait_ms=args.max_wait_ms, limits=limits, threads=args.threads)


def _cmd_datasets(args: argparse.Namespace) -> int:
    from deepfit import datasets

    for name in datasets.names():
        print(name)
    return 0


def _cmd_learn(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from deepfit.learn import CHAPTERS, chapter, run_chapter

    if args.chapter is None:
        print("The learning path (docs/learn/index.md); run one with: deepfit learn N [--out DIR] [--quick]")
        for ch in CHAPTERS:
            print(f"{ch.number:3d}  {ch.title:32s} {ch.follows}")
            if ch.waits_for:
                print(f"{'':37s}(waits for {ch.waits_for})")
        return 0
    try:
        ch = chapter(args.chapter)
    except DeepfitError as e:
        print(f"deepfit learn: {e}", file=sys.stderr)
        return 2
    out = Path(args.out or Path("runs") / "learn" / ch.page.removesuffix(".md"))
    print(f"chapter {ch.number}: {ch.title} ({'quick' if args.quick else 'full'}); figures go to {out}")
    result = run_chapter(ch.number, out, quick=args.quick)
    (out / "output.json").write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    figures = sorted(p.name for p in out.glob("*.png"))
    print(f"chapter {ch.number} done in {result['seconds']:.0f} s; {out}: {', '.join(figures + ['output.json'])}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handlers = {"train": _cmd_train, "predict": _cmd_predict, "evaluate": _cmd_evaluate, "demo": _cmd_demo,
                "datasets": _cmd_datasets, "generate": _cmd_generate, "export": _cmd_export, "serve": _cmd_serve,
                "recommend": _cmd_recommend, "learn": _cmd_learn}
    try:
        return handlers[args.command](args)
    except DeepfitError as e:
        print(f"deepfit {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"deepfit {args.command}: interrupted", file=sys.stderr)
        return 130
