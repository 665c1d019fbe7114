"""Write ``tests/compat/fixtures/``: run directories and artifacts as deepfit wrote them at commit cd228c3.

The fixtures are a record of what the code of commit **cd228c3** (2026-12, before the one-shape
refactor of the tasks; see issue 12) wrote to disk. Run this script on that code only, **never
on newer code**: re-running it later would overwrite the old formats with new ones, and the
compatibility tests (``test_compat.py``) would then prove nothing. It refuses to run when
``src/`` differs from cd228c3 (``git diff cd228c3 -- src``), and when the fixtures folder exists
(pass ``--out`` to write elsewhere for a look).

What it writes (every run tiny, fixed seeds, no time limits, one torch thread):

* ``table/``: a classifier on a synthetic table (a number with a few missing values, a
  category, a date; 300 rows, ``train.csv``): ``run/`` complete (``deepfit.json``,
  ``model.safetensors``, ``run.json``, ``metrics.json``, ``history.csv``), ``interrupted.incomplete/``
  (the same settings, stopped by an exception at training step 17, after the step-15
  checkpoint: ``run.json``, ``last.ckpt``, ``history.csv``) that ``fit_table(..., resume=True)``
  finishes with the weights of ``run/``; ``rows.csv`` (new rows, one with an unseen category and
  one with a missing number) and ``expected.csv`` (what ``run/`` predicts for them).
* ``table_regress/``: the same table regressing the number ``amount`` (a regression target's
  state); ``run/``, ``rows.csv``, ``expected.csv``.
* ``text/``: a classifier on a table with a free-text column (n-gram part, naive-Bayes prior
  buffer, three cross-fitted models averaged: ``TabularBag``); ``run/``, ``rows.csv``,
  ``expected.csv``.
* ``image/``: 36 real scikit-learn digits (classes 0, 1, 2) as 8x8 grey PNGs in class folders
  (``images/``), a classifier at 16 px trained for 3 epochs: ``run/``, ``interrupted.incomplete/``
  (stopped at step 7, after the step-6 checkpoint), ``expected.csv`` (probabilities on every
  image). The recipe's SmallCNN widths 32-64-128 (~290k parameters, 1.2 MB) are replaced by
  8-16 here (``_small_recipe``) to keep the folder small; the plan is stored in ``run.json`` as
  the code stores any plan, so resuming needs no patch.
* ``lm/``: a GPT (byte-level BPE, 300 ids, 1 layer of 16) trained 24 steps on the first 20,000
  characters of the tweets corpus (``corpus.txt``): ``run/``, ``interrupted.incomplete/`` (stopped
  at step 13, after the step-10 checkpoint), ``expected.json`` (the corpus score, a greedy and a
  seeded sampled generation, the logits after a prompt).
* ``bundled/digits/``: ``train_bundled(RunSettings(data="digits", epochs=1, hidden=(16,)))`` as
  it is today: ``run.json`` (settings at top level), ``model.safetensors`` (no ``deepfit.json``:
  ``deepfit.load`` cannot read it yet), ``metrics.json``, ``history.csv``, ``last.ckpt``,
  ``best.ckpt``; ``bundled/expected.csv``: the MLP's logits on the first 50 test digits.

``report.html`` is dropped from every run (plots and pictures; not a format anything reads back).
``MANIFEST.json`` records the commit, versions and whether the CPU trained in bf16.

Predictions are compared exactly by the tests. Training here ran in bf16 autocast when the CPU
has native bf16 (``deepfit.engine.precision.cpu_has_fast_bf16``), so a resumed run on a CPU
without it would train differently: ``test_compat.py`` skips the bit-exact resume comparison
there (loading and predicting never use bf16).

Usage (from the repository root, on commit cd228c3):
    PYTHONPATH=src OMP_NUM_THREADS=1 python tests/compat/make_fixtures.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

COMMIT = "cd228c3"
ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# The settings of every fixture run, also imported by test_compat.py.
TABLE = dict(target="y", k=2, width=16, depth=1, max_epochs=3, checkpoint_every=5)
TABLE_KILL_STEP = 17  # of 36 (12 per epoch): mid-epoch 2, after the step-15 checkpoint
TABLE_REGRESS = dict(target="amount", k=2, width=16, depth=1, max_epochs=3)
TEXT = dict(target="label", k=2, width=16, depth=1, max_epochs=3, text_bags=2)
IMAGE = dict(size=16, epochs=10, batch_size=8, workers=0, checkpoint_every=6)
IMAGE_WIDTHS = [8, 16]
IMAGE_KILL_STEP = 19  # of 40 (4 per epoch): end of epoch 5, after the mid-epoch step-18 checkpoint
LM = dict(vocab_size=300, context=16, dim=16, layers=1, heads=2, batch_size=8, steps=60, eval_every=20,
          valid_windows=8, warmup=5, checkpoint_every=10)
LM_KILL_STEP = 33  # of 60 (20 per epoch): mid-epoch 2, after the step-30 checkpoint
LM_CHARS = 20_000
LM_PROMPT = "I will"
BUNDLED = dict(data="digits", epochs=1, hidden=(16,))


# ----------------------------------------------------------------------------- data


def table_frame(n: int, seed: int):  # noqa: ANN201 - pandas
    """A synthetic table: ``amount`` (number, some missing), ``colour`` (category), ``day`` (date), ``y``."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    amount = rng.normal(size=n).round(3)
    colour = rng.choice(["red", "green", "blue", "grey"], size=n)
    day = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 365, size=n), unit="D")
    score = amount + (colour == "red") - (colour == "blue") + np.sin(day.day_of_year / 58) + rng.normal(scale=0.5, size=n)
    frame = pd.DataFrame({"amount": amount, "colour": colour, "day": day.strftime("%Y-%m-%d"),
                          "y": np.where(score > 0, "yes", "no")})
    frame.loc[rng.choice(n, 5, replace=False), "amount"] = np.nan
    return frame


def text_frame(n: int, seed: int):  # noqa: ANN201 - pandas
    """A synthetic table with a free-text column ``review``, a number ``stars`` and the target ``label``."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    good, bad = ["good", "great", "love", "fine", "happy"], ["bad", "awful", "hate", "poor", "sad"]
    filler = ["the", "a", "movie", "food", "service", "it", "was", "very", "and", "not"]
    label = rng.choice(["pos", "neg"], size=n)
    reviews = []
    for y in label:
        words = list(rng.choice(filler, size=rng.integers(3, 8)))
        words += list(rng.choice(good if (y == "pos") == (rng.random() < 0.85) else bad, size=2))
        rng.shuffle(words)
        reviews.append(" ".join(words))
    stars = np.where(label == "pos", 3.5, 2.5) + rng.normal(scale=1.0, size=n).round(1)
    return pd.DataFrame({"review": reviews, "stars": stars.round(1), "label": label})


def write_digit_images(root: Path, classes: tuple[int, ...] = (0, 1, 2), per_class: int = 12) -> list[Path]:
    """Real scikit-learn digits as 8x8 grey PNGs in class folders ``root/<class>/<index>.png``."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    paths = []
    for c in classes:
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(d.target == c)[:per_class]:
            p = root / str(c) / f"{i:04d}.png"
            Image.fromarray(np.round(d.images[i] * 255 / 16).astype(np.uint8), mode="L").save(p)
            paths.append(p)
    return paths


# ----------------------------------------------------------------------------- helpers


@contextmanager
def killed_at_step(step: int) -> Iterator[None]:
    """Raise KeyboardInterrupt at the start of training step ``step`` (1-based), as a kill would land."""
    from deepfit.engine.compile import StepRunner

    real = StepRunner.train_step
    calls = {"n": 0}

    def dying(self: Any, batch: Any, *, divisor: int, last_micro: bool) -> Any:
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt(f"fixture: interrupted at training step {step}")
        return real(self, batch, divisor=divisor, last_micro=last_micro)

    StepRunner.train_step = dying  # type: ignore[method-assign]
    try:
        yield
    finally:
        StepRunner.train_step = real  # type: ignore[method-assign]


def interrupt(fit: Callable[[], Any], step: int, work: Path, *, checkpoint_step: int) -> None:
    """Run ``fit`` until step ``step``; check it left a mid-epoch ``last.ckpt`` of ``checkpoint_step``
    and no model. ``best.ckpt`` is dropped: resuming never reads it (only ``last.ckpt``)."""
    from deepfit.engine.checkpoint import load_checkpoint

    with killed_at_step(step):
        try:
            fit()
        except KeyboardInterrupt:
            pass
        else:
            raise RuntimeError(f"the run in {work} finished before step {step}: no interrupted run to record")
    assert (work / "run.json").exists() and (work / "last.ckpt").exists(), sorted(work.iterdir())
    assert not (work / "model.safetensors").exists()
    assert not work.with_name(work.name.removesuffix(".incomplete")).exists()
    state = load_checkpoint(work / "last.ckpt")
    assert state["step"] == checkpoint_step and state["batch"] > 0, (state["step"], state["batch"])
    (work / "best.ckpt").unlink(missing_ok=True)


def tidy(run: Path) -> None:
    """Drop what nothing reads back (the report) and stray temp files."""
    for p in [run / "report.html", *run.glob(".*.tmp")]:
        p.unlink(missing_ok=True)


def write_proba(frame: Any, path: Path) -> None:
    """Probabilities as float64 with 17 digits, so that reading them back gives the exact values."""
    frame.to_csv(path, index=False, float_format="%.17g")


# ----------------------------------------------------------------------------- cases


def make_table() -> None:
    from deepfit.tasks.table import TableSettings, fit_table

    folder = Path("table")
    folder.mkdir()
    table_frame(300, seed=0).to_csv(folder / "train.csv", index=False)
    rows = table_frame(40, seed=1).drop(columns=["y"])
    rows.loc[3, "colour"] = "purple"  # a category the model never saw
    rows.loc[4, "amount"] = float("nan")
    rows.to_csv(folder / "rows.csv", index=False)

    settings = TableSettings(**TABLE)
    predictor = fit_table(str(folder / "train.csv"), settings, out=str(folder / "run"), progress=False)
    tidy(folder / "run")
    frame = predictor.predict_frame(str(folder / "rows.csv"))
    write_proba(frame.astype({c: "float64" for c in frame.columns if c.startswith("proba_")}),
                folder / "expected.csv")
    work = folder / "interrupted.incomplete"
    interrupt(lambda: fit_table(str(folder / "train.csv"), settings, out=str(folder / "interrupted"), progress=False),
              TABLE_KILL_STEP, work, checkpoint_step=15)


def make_table_regress() -> None:
    from deepfit.tasks.table import TableSettings, fit_table

    folder = Path("table_regress")
    folder.mkdir()
    frame = table_frame(300, seed=2).dropna(subset=["amount"])
    frame.to_csv(folder / "train.csv", index=False)
    table_frame(40, seed=3).drop(columns=["amount"]).to_csv(folder / "rows.csv", index=False)
    predictor = fit_table(str(folder / "train.csv"), TableSettings(**TABLE_REGRESS), out=str(folder / "run"),
                          progress=False)
    tidy(folder / "run")
    predictor.predict_frame(str(folder / "rows.csv")).astype("float64").to_csv(
        folder / "expected.csv", index=False, float_format="%.17g")


def make_text() -> None:
    from deepfit.tasks.table import TableSettings, fit_table

    folder = Path("text")
    folder.mkdir()
    text_frame(240, seed=0).to_csv(folder / "train.csv", index=False)
    rows = text_frame(30, seed=1).drop(columns=["label"])
    rows.loc[2, "review"] = "words never seen zebra quixotic"
    rows.loc[3, "review"] = ""
    rows.to_csv(folder / "rows.csv", index=False)
    predictor = fit_table(str(folder / "train.csv"), TableSettings(**TEXT), out=str(folder / "run"), progress=False)
    assert predictor.info["bags"] == 2, predictor.info  # two cross-fitted models: a TabularBag
    tidy(folder / "run")
    frame = predictor.predict_frame(str(folder / "rows.csv"))
    write_proba(frame.astype({c: "float64" for c in frame.columns if c.startswith("proba_")}),
                folder / "expected.csv")


def _small_recipe(real: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    def recipe(native_side: float, n_train: int, settings: Any) -> dict[str, Any]:
        plan = real(native_side, n_train, settings)
        assert plan["backbone"] == "small_cnn", plan
        return {**plan, "backbone_config": {**plan["backbone_config"], "widths": IMAGE_WIDTHS}}

    return recipe


def make_image() -> None:
    import deepfit.tasks.images as images_task
    from deepfit.tasks.images import ImageSettings, fit_images

    folder = Path("image")
    write_digit_images(folder / "images")
    settings = ImageSettings(**IMAGE)
    real = images_task.recipe
    images_task.recipe = _small_recipe(real)  # type: ignore[assignment]
    try:
        predictor = fit_images(str(folder / "images"), settings, out=str(folder / "run"), progress=False)
        work = folder / "interrupted.incomplete"
        interrupt(lambda: fit_images(str(folder / "images"), settings, out=str(folder / "interrupted"),
                                     progress=False), IMAGE_KILL_STEP, work, checkpoint_step=18)
    finally:
        images_task.recipe = real  # type: ignore[assignment]
    tidy(folder / "run")
    frame = predictor.predict_frame(str(folder / "images"))
    frame["path"] = [Path(p).relative_to((folder / "images").resolve()).as_posix() if Path(p).is_absolute()
                     else Path(p).relative_to(folder / "images").as_posix() for p in frame["path"]]
    write_proba(frame.astype({c: "float64" for c in frame.columns if c.startswith("proba_")}),
                folder / "expected.csv")


def lm_expected(predictor: Any, corpus: Path) -> dict[str, Any]:
    """What test_compat.py checks of a language model: score, generations, logits after a prompt."""
    import torch

    ids = predictor._start + predictor.tokenizer.encode(LM_PROMPT)
    with torch.inference_mode():
        logits = predictor.model(torch.tensor([ids]))[0, -1].float()
    return {
        "evaluate": predictor.evaluate(str(corpus)),
        "greedy": predictor.generate(LM_PROMPT, max_tokens=40, temperature=0),
        "sampled_seed0": predictor.generate("", max_tokens=40, temperature=0.8, seed=0),
        "prompt_ids": ids,
        "logits_after_prompt": logits.tolist(),
    }


def make_lm() -> None:
    from deepfit.datasets import tweets_corpus
    from deepfit.tasks.lm import LMSettings, fit_lm

    folder = Path("lm")
    folder.mkdir()
    corpus = folder / "corpus.txt"
    corpus.write_text(tweets_corpus()[:LM_CHARS], encoding="utf-8")
    settings = LMSettings(**LM)
    predictor = fit_lm(str(corpus), settings, out=str(folder / "run"), progress=False)
    tidy(folder / "run")
    (folder / "expected.json").write_text(json.dumps(lm_expected(predictor, corpus), indent=1) + "\n",
                                          encoding="utf-8")
    work = folder / "interrupted.incomplete"
    interrupt(lambda: fit_lm(str(corpus), settings, out=str(folder / "interrupted"), progress=False),
              LM_KILL_STEP, work, checkpoint_step=30)


def bundled_logits(run: Path, n: int = 50):  # noqa: ANN201 - torch
    """The digits MLP of ``run`` rebuilt from ``run.json`` + ``model.safetensors``: logits on ``n`` test rows."""
    import torch
    from safetensors.torch import load_file

    from deepfit import datasets
    from deepfit.models.mlp import MLP

    settings = json.loads((run / "run.json").read_text(encoding="utf-8"))
    d = datasets.load(settings["data"])
    weights = load_file(run / "model.safetensors")
    model = MLP(d.x_train.shape[1], len(d.classes), hidden=tuple(settings["hidden"]), dropout=settings["dropout"])
    model.load_state_dict(weights)
    with torch.inference_mode():
        return model.eval()(torch.from_numpy(d.x_test[:n]).reshape(n, -1)), torch.from_numpy(d.y_test[:n])


def make_bundled() -> None:
    import pandas as pd

    from deepfit.tasks.bundled import RunSettings, train_bundled

    folder = Path("bundled")
    folder.mkdir()
    train_bundled(RunSettings(**BUNDLED), str(folder / "digits"), progress=False)
    tidy(folder / "digits")
    logits, _ = bundled_logits(folder / "digits")
    pd.DataFrame(logits.double().numpy(), columns=[f"logit_{c}" for c in range(logits.shape[1])]).to_csv(
        folder / "expected.csv", index=False, float_format="%.17g")


CASES = {"table": make_table, "table_regress": make_table_regress, "text": make_text, "image": make_image,
         "lm": make_lm, "bundled": make_bundled}


def _check_source() -> None:
    changed = subprocess.run(["git", "diff", "--stat", COMMIT, "--", "src"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
    if changed:
        sys.exit(f"make_fixtures.py: src/ differs from {COMMIT}; these fixtures record what {COMMIT} wrote and "
                 f"must never be regenerated with newer code:\n{changed}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=FIXTURES, help="where to write (default: tests/compat/fixtures)")
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), help="write only these cases")
    args = parser.parse_args(argv)
    _check_source()
    out = args.out.resolve()
    if out.exists():
        sys.exit(f"make_fixtures.py: {out} exists; the committed fixtures are never rewritten (use --out elsewhere)")
    import torch

    from deepfit._version import __version__
    from deepfit.engine.precision import cpu_has_fast_bf16

    torch.set_num_threads(1)
    out.mkdir(parents=True)
    os.chdir(out)  # relative paths: run.json and deepfit.json name "table/train.csv", not this machine's folders
    for name, make in CASES.items():
        if args.only is None or name in args.only:
            print(f"fixture: {name}", flush=True)
            make()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    manifest = {"written_by": "tests/compat/make_fixtures.py", "source_commit": COMMIT, "head_when_written": commit,
                "deepfit_version": __version__, "torch_version": str(torch.__version__),
                "python": platform.python_version(), "machine": platform.machine(),
                "cpu_fast_bf16": cpu_has_fast_bf16(), "torch_threads": torch.get_num_threads()}
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(out / "__pycache__", ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
