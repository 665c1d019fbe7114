"""Tables: typed columns in, a trained :class:`~deepfit.predict.Predictor` and a run directory out.

The path, step by step: read the table → find the target (suggesting close names) → infer
column types (overridable) → drop rows without a target (said in the report) → split off a
test set (stratified for classification; or by time, or by group; or the ``test`` data given)
→ carve a validation set out of the training rows → fit the preprocessing on the training rows
only → train a TabM-style ensemble (``deepfit.models.tabular``) with AdamW, label smoothing and
early stopping on the validation loss (classification) or RMSE (regression), restoring the best
weights, within an optional time budget → evaluate → write the artifact, ``metrics.json`` and
``report.html``.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from deepfit.errors import ConfigError, DataError
from deepfit.metrics import Metric, get_metric

__all__ = ["TableSettings", "fit_table"]

SUPPORTED_KINDS = ("number", "category", "binary", "date", "text", "sequence")


@dataclass(frozen=True)
class TableSettings:
    """Everything that decides a table run (stored in ``run.json`` for ``--resume``)."""

    target: str
    task: str = "auto"
    types: dict[str, str] = field(default_factory=dict)
    time_limit: float | None = None
    seed: int = 0
    test_size: float = 0.2
    valid_size: float = 0.2
    split_by: str | None = None
    group: str | None = None
    max_epochs: int = 200
    patience: int = 8
    # Early stopping watches the validation "loss" or "metric" (accuracy / RMSE); "auto": the loss
    # when classifying (smooth, where accuracy on a few hundred rows moves in coarse steps), the
    # ensemble's RMSE when regressing (the figure reported, and already smooth).
    monitor: str = "auto"
    batch_size: int | None = None
    lr: float = 2e-3
    weight_decay: float = 3e-4
    label_smoothing: float = 0.1
    k: int = 16
    width: int = 256
    depth: int = 3
    dropout: float = 0.1
    # Number embeddings: "b" = linear + piecewise-linear (TabM's default), "a" = ReLU(piecewise-linear).
    ple_version: str = "b"
    text_dim: int = 0  # width of the transformer over text tokens; 0 = n-grams and style numbers only
    text_layers: int = 1
    text_tokenizer: str = "bpe"  # tokens for the transformer: "bpe" or "char"
    # Learning-rate multiplier of the text n-gram logits (the "wide" part): 10 converges in ~3
    # epochs instead of ~20, so the penalised n-gram weights below reach their optimum quickly.
    wide_lr_scale: float = 10.0
    # Classifying with text, the n-gram weights are regularised as in a logistic regression: an
    # L2 penalty of strength 1 / (ngram_c x training rows) (None: none, only the optimizer's weight
    # decay), and with ngram_nb each n-gram's weights scaled by its naive-Bayes log-count ratio
    # (NBSVM, Wang & Manning 2012). Tweets benchmark, seeds 0/1/2, one model each: 0.8930 / 0.8906
    # / 0.8848 (C=10), 0.8959 / 0.8837 / 0.8883 (C=3); without either (and wide_lr_scale 1):
    # 0.8906 / 0.8871 / 0.8802.
    ngram_c: float | None = 10.0
    ngram_nb: bool = True
    # With a time limit: full LR for this share of the budget, then cosine decay to
    # final_lr_frac x lr by its end (1.0 = constant LR throughout).
    lr_hold: float = 0.5
    # With a time limit: fewer ensemble members (k) when k would leave too few epochs.
    auto_k: bool = True
    # With a time limit: more models, each from its own seed, while the budget still pays for
    # one, averaged with the first (a deep ensemble).
    max_bags: int = 4
    # With a text column: models averaged, each early-stopped on its own validation carve-out of
    # the training rows (a text's wide n-gram part is convex and starts from zero, so only other
    # rows make its models differ). Without a time limit this many are trained; with one, the
    # spare-budget models above get their own carve-outs. 1 = one model, as for other tables.
    text_bags: int = 3
    # Extra models alternate the number embedding ("b", "a", "b", ...): a more diverse average
    # (hpc_data, 3 seeds, one-thread screen: 0.830 all "b", 0.836 alternating; HGB 0.834).
    mix_bags: bool = True
    final_lr_frac: float = 0.01
    checkpoint_every: int | None = None

    def __post_init__(self) -> None:
        if self.task not in ("auto", "classify", "regress"):
            raise ConfigError(f"task must be 'auto', 'classify' or 'regress', got {self.task!r}")
        if self.ple_version not in ("a", "b"):
            raise ConfigError(f"ple_version must be 'a' or 'b', got {self.ple_version!r}")
        if self.monitor not in ("auto", "loss", "metric"):
            raise ConfigError(f"monitor must be 'auto', 'loss' or 'metric', got {self.monitor!r}")
        if not 0 <= self.test_size < 1:
            raise ConfigError(f"test_size must be in [0, 1), got {self.test_size}")
        if not 0 < self.valid_size < 1:
            raise ConfigError(f"valid_size must be in (0, 1), got {self.valid_size}")
        if isinstance(self.text_bags, bool) or not isinstance(self.text_bags, int) or not 1 <= self.text_bags <= 16:
            raise ConfigError(f"text_bags must be an integer from 1 to 16, got {self.text_bags!r}")
        if self.ngram_c is not None and (isinstance(self.ngram_c, bool) or not isinstance(self.ngram_c, (int, float))
                                         or not self.ngram_c > 0):
            raise ConfigError(f"ngram_c must be a number > 0 (or None: no penalty), got {self.ngram_c!r}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ConfigError(f"time_limit must be > 0 seconds, got {self.time_limit}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TableSettings:
        # A run started before these settings existed trained version-"a" embeddings, unmixed:
        # resuming it must rebuild the same models.
        d = {"ple_version": "a", "mix_bags": False, "monitor": "metric", "text_bags": 1, "wide_lr_scale": 1.0,
             "ngram_c": None, "ngram_nb": False, **d}
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class _EnsembleMetric(Metric):
    """Adapts a deepfit metric to the ensemble's (B, k, C) output."""

    def __init__(self, name: str, task: str) -> None:
        super().__init__()
        self.inner = get_metric(name)
        self.name = self.inner.name
        self.higher_is_better = self.inner.higher_is_better
        self.task = task

    def reset(self) -> None:
        self.inner.reset()

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        from deepfit.models.tabular import ensemble_predict

        pred = ensemble_predict(output.detach().float(), self.task)
        self.inner.update(pred.clamp(min=1e-15).log() if self.task == "classify" else pred, target)

    def sync(self) -> None:
        self.inner.sync()

    def compute(self) -> float:
        return self.inner.compute()


def _batch_size(n: int) -> int:
    """256 (512 from 20k rows) as calibrated on the public suite; small tables get smaller batches
    so that an epoch still holds ~16 steps and early stopping sees enough updates."""
    if n >= 20_000:
        return 512
    if n >= 4096:
        return 256
    return int(min(256, max(16, 2 ** round(math.log2(max(n, 1) / 16)))))


def _wide_optimizer(wide: torch.nn.Parameter, scale: float) -> Any:
    """AdamW whose group holding the n-gram logits learns ``scale`` times faster.

    The linear n-gram part is convex and slow at the MLP's learning rate (~20 epochs on 5k tweets),
    while early stopping watches the whole model; a faster wide part converges in a few epochs.
    """

    def build(groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        out = []
        for group in groups:
            rest = [p for p in group["params"] if p is not wide]
            if rest:
                out.append({**group, "params": rest})
            if len(rest) < len(group["params"]):
                out.append({**group, "params": [wide], "lr_scale": scale})
        return torch.optim.AdamW(out, lr=1e-3, fused=True)  # lr is set by the Learner's schedule every step

    return build


def _fingerprint(data: Any) -> str | None:
    if isinstance(data, (str, os.PathLike)) and Path(data).is_file():
        h = hashlib.sha256()
        with open(data, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    return None


def _source_name(data: Any) -> str:
    return str(data) if isinstance(data, (str, os.PathLike)) else type(data).__name__


def _class_labels(values: pd.Series, kind: str) -> pd.Series:
    """Classification labels: numbers when every label parses as one (CSV text "1" → 1), else strings."""
    from deepfit.data.table import coerce_column

    if kind in ("number", "binary"):
        numeric = coerce_column(values, "number")
        if numeric.notna().sum() == values.notna().sum() and numeric.notna().any():
            finite = numeric.dropna()
            if (finite == finite.round()).all():
                return numeric.astype("Int64").astype(object).where(numeric.notna(), np.nan)
            return numeric
    return coerce_column(values, "category")


def fit_table(
    data: Any,
    settings: TableSettings,
    *,
    test: Any = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Any:
    """Train on a table; returns a :class:`~deepfit.predict.Predictor` (see module docstring).

    With ``out``, the run is built in ``<out>.incomplete/`` and renamed to ``out`` when complete;
    ``resume=True`` continues an interrupted run there exactly (same settings, same data).
    """
    from deepfit.data.sources import read_table
    from deepfit.data.split import split_indices
    from deepfit.data.table import coerce_column, find_column, infer_task, infer_types
    from deepfit.engine.callbacks import CSVLogger, EarlyStopping, TimeLimit
    from deepfit.engine.distributed import single_process_only
    from deepfit.engine.learner import Learner
    from deepfit.engine.precision import cpu_has_fast_bf16
    from deepfit.engine.rng import seed_everything
    from deepfit.engine.schedules import TimeCosine
    from deepfit.features.preprocessor import TablePreprocessor
    from deepfit.features.target import make_target
    from deepfit.models.tabular import TabularBag, TabularModel, ensemble_loss, ngram_prior
    from deepfit.predict import Predictor
    from deepfit.rundir import RunDir

    single_process_only("training a table model")
    t_start = time.perf_counter()
    source = _source_name(data)
    run = RunDir(out) if out is not None else None
    if run is not None and resume:
        stored = run.stored()
        if run.complete:
            return Predictor.load(run.final)
        settings = TableSettings.from_json(stored["settings"])
        if stored.get("data_sha256") and stored["data_sha256"] != _fingerprint(data):
            raise ConfigError(f"--resume: {source} is not the data the run in {run.work} started with")
    elif run is not None:
        run.check_new()
    elif resume:
        raise ConfigError("resume=True needs out= (the run directory to continue)")

    df = read_table(data)
    target = find_column(df, settings.target, role="target", source=source)
    infos = infer_types(df, target=target, overrides=settings.types, source=source)
    notes: list[str] = []

    # Rows without a target cannot teach anything: drop them, and say so.
    missing_target = coerce_column(df[target], "category").isna()  # the same missing tokens as every column
    if missing_target.all():
        raise DataError(f"target column '{target}' in {source} has no values")
    if missing_target.any():
        notes.append(f"{int(missing_target.sum())} rows without a '{target}' value were left out")
        df = df.loc[~missing_target].reset_index(drop=True)
    task = settings.task if settings.task != "auto" else infer_task(infos[target], df[target])
    if task == "classify":
        y_all = _class_labels(df[target], infos[target].kind)
    else:
        y_all = coerce_column(df[target], "number")
        if y_all.isna().any():
            bad = df[target][y_all.isna()].iloc[0]
            raise DataError(f"target column '{target}' in {source} is numeric but has the value {bad!r}; "
                            "fix it, or pass task='classify'")

    # Which columns feed the model, and how.
    columns = {}
    for name, info in infos.items():
        if name == target or not info.used:
            continue
        if info.kind not in SUPPORTED_KINDS:
            notes.append(f"column '{name}' ({info.kind}) is not used yet by table models")
            continue
        columns[name] = info.kind
    if not columns:
        raise DataError(f"{source} has no usable input columns besides the target '{target}' "
                        f"(types: {', '.join(f'{n}={i.kind}' for n, i in infos.items())})")

    # Splits: test (unless given), then a validation carve-out of the training rows.
    if test is not None:
        test_df = read_table(test)
        find_column(test_df, target, role="target", source=_source_name(test))
        train_rows = np.arange(len(df))
    elif settings.test_size > 0:
        train_rows, test_rows = split_indices(df, target=target, task=task, seed=settings.seed,
                                              test_size=settings.test_size, by=settings.split_by, group=settings.group)
        test_df = df.iloc[test_rows].reset_index(drop=True)
    else:
        train_rows, test_df = np.arange(len(df)), None
    train_df = df.iloc[train_rows].reset_index(drop=True)
    fit_rows, valid_rows = split_indices(train_df, target=target, task=task, seed=settings.seed + 1,
                                         test_size=settings.valid_size, by=settings.split_by, group=settings.group)
    y_train = y_all.iloc[train_rows].reset_index(drop=True)

    def coerced(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({c: coerce_column(frame[c], k, date_format=infos[c].date_format) for c, k in columns.items()})

    x_frame = coerced(train_df)
    date_formats = {c: infos[c].date_format for c, k in columns.items() if k == "date"}
    pre = TablePreprocessor(columns, date_formats=date_formats,
                            text_tokenizer=settings.text_tokenizer).fit(x_frame.iloc[fit_rows])
    target_enc = make_target(task, target).fit(y_train.iloc[fit_rows])

    def tensors(frame: pd.DataFrame, y: pd.Series) -> tuple[torch.Tensor, ...]:
        arrays = pre.arrays(frame)
        return (*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays), torch.from_numpy(target_enc.encode(y)))

    train_t = tensors(x_frame.iloc[fit_rows].reset_index(drop=True), y_train.iloc[fit_rows].reset_index(drop=True))
    valid_t = tensors(x_frame.iloc[valid_rows].reset_index(drop=True), y_train.iloc[valid_rows].reset_index(drop=True))

    smoothing = settings.label_smoothing if task == "classify" else 0.0

    def loss(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ensemble_loss(output, y, task, smoothing)

    # Classifying with text: the n-gram weights are regularised like a logistic regression's (see
    # TableSettings.ngram_c / ngram_nb), each model's prior from the rows it is fitted on.
    text_lr = task == "classify" and bool(pre.spec()["n_text"])
    use_prior = text_lr and settings.ngram_nb

    first_prior: list[torch.Tensor] = []  # the first carve-out's, computed once: sizing builds several models

    def make_model(k: int, ple_version: str = settings.ple_version,
                   fit: tuple[torch.Tensor, ...] | None = None) -> TabularModel:
        m = TabularModel(pre.spec(), n_outputs=target_enc.n_outputs, k=k, width=settings.width,
                         depth=settings.depth, dropout=settings.dropout, ple_version=ple_version,
                         text_dim=settings.text_dim, text_layers=settings.text_layers, ngram_prior=use_prior)
        rows = fit if fit is not None else train_t
        if use_prior:
            prior = first_prior[0] if fit is None and first_prior else None
            if prior is None:
                prior = ngram_prior(rows[2], rows[-1], buckets=int(pre.spec()["text_buckets"]),
                                    n_classes=target_enc.n_outputs)
                if fit is None:
                    first_prior.append(prior)
            m.set_ngram_prior(prior)
        if text_lr and settings.ngram_c is not None and m.text_linear is not None:
            # Coupled L2, (1 / (C x rows)) x w added to the gradient: unlike AdamW's decoupled decay
            # its fixed point under Adam is the penalised optimum, as in LogisticRegression(C=...).
            strength = 1.0 / (settings.ngram_c * len(rows[-1]))
            weight = m.text_linear.weight
            weight.register_hook(lambda grad, w=weight: grad + strength * w.detach())
        return m

    # The budget covers the whole fit: reading and preprocessing have used part of it, and the
    # final evaluation needs a little (5 %) at the end.
    def seconds_left() -> float | None:
        if not settings.time_limit:
            return None
        return settings.time_limit * 0.95 - (time.perf_counter() - t_start)

    n_fit = len(fit_rows)
    batch_size = min(settings.batch_size or _batch_size(n_fit), n_fit)
    # A time budget sizes the ensemble (tasks/table_sizing.py); a resumed run keeps its size.
    k, step_s, budget_bound = settings.k, {}, False
    if resume:
        k = int(stored.get("ensemble_k", settings.k))
        budget_bound = bool(stored.get("budget_bound", False))
    elif settings.time_limit and settings.auto_k:
        from deepfit.tasks.table_sizing import projected_epochs, size_ensemble

        steps = math.ceil(n_fit / batch_size)
        k, step_s = size_ensemble(make_model, [t[:batch_size] for t in train_t], loss, steps_per_epoch=steps,
                                  k_max=settings.k, seconds=seconds_left() or 0.0)
        # A run the budget will end gets early stopping's patience of 16 epochs even when fewer
        # are asked: with the LR held, a short patience stops it before the decay that pays most
        # (diamonds, patience 8: stopped at epoch 20 of ~23 with RMSE 558; patience 16: 537).
        budget_bound = bool(step_s) and projected_epochs(step_s, k, steps_per_epoch=steps,
                                                         seconds=seconds_left() or 0.0) < 40
        if k < settings.k:
            notes.append(f"ensemble of {k} members instead of {settings.k}, so that the time limit of "
                         f"{settings.time_limit:g}s still pays for enough epochs")
    if run is not None and not resume:  # inputs are checked: only now does the run folder appear
        run.start({"settings": settings.to_json(), "data": source, "data_sha256": _fingerprint(data),
                   "test": _source_name(test) if test is not None else None, "ensemble_k": k,
                   "budget_bound": budget_bound})
    metric_name = "accuracy" if task == "classify" else "rmse"

    def train(model: TabularModel, seconds: float | None, seed: int, *, first: bool,
              data: tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]] | None = None
              ) -> tuple[list[dict], Any, Any]:
        """Fit one model (early stopping with best-weights restore; a time limit, and with it the
        held-then-decayed LR) on ``data`` (train, valid tensors; default: the first carve-out).
        Only the first model logs history and writes checkpoints."""
        fit_t, stop_t = data if data is not None else (train_t, valid_t)
        watch = settings.monitor if settings.monitor != "auto" else ("loss" if task == "classify" else "metric")
        monitor = "valid_loss" if watch == "loss" else f"valid_{metric_name}"
        patience = max(settings.patience, 16) if budget_bound else settings.patience
        stop = EarlyStopping(monitor, patience=patience, restore_best=True)
        limit = TimeLimit(seconds) if seconds is not None else None
        callbacks: list[Any] = [stop] + ([limit] if limit is not None else [])
        if run is not None and first:
            callbacks.append(CSVLogger(run.work / "history.csv"))
        optimizer: Any = "adamw"
        if model.text_linear is not None and settings.wide_lr_scale != 1.0:
            optimizer = _wide_optimizer(model.text_linear.weight, settings.wide_lr_scale)
        learner = Learner(
            model, fit_t, stop_t, loss=loss, optimizer=optimizer,
            metrics=[_EnsembleMetric(metric_name, task)],  # type: ignore[list-item]
            lr=settings.lr, weight_decay=settings.weight_decay, batch_size=batch_size,
            precision="bf16" if cpu_has_fast_bf16() else "auto", seed=seed, progress=progress,
            # Text and sequence batches change shape (n-grams per batch, trimmed token lengths):
            # a compiled step would recompile for every batch.
            compile=False if set(columns.values()) & {"text", "sequence"} else "auto",
            out_dir=run.work if run is not None and first else None,
            checkpoint_every=settings.checkpoint_every if first else None, callbacks=callbacks,
        )
        schedule: Any = "constant"
        if limit is not None and settings.lr_hold < 1:
            schedule = TimeCosine(settings.lr, 0, settings.final_lr_frac, hold=settings.lr_hold,
                                  clock=lambda: limit.elapsed() / limit.seconds)
        last = run.work / "last.ckpt" if run is not None and first else None
        history = learner.fit(settings.max_epochs, schedule=schedule,
                              resume=last if resume and last is not None and last.exists() else None)
        model.eval()
        return history, stop, limit

    seed_everything(settings.seed)
    model = make_model(k)
    left = seconds_left()
    history, stopping, time_limit = train(model, None if left is None else max(left, 0.05 * settings.time_limit),
                                          settings.seed, first=True)
    # More models, averaged with the first (a deep ensemble), each from its own seed: with a time
    # limit, while the budget left still pays for most of another one (one the budget ends has its
    # LR decayed by then and keeps its best weights: still useful); without one, text tables train
    # ``text_bags`` models. With a text column each extra model is early-stopped on its own
    # validation carve-out, so together they learn from every training row.
    cross_fit = "text" in columns.values() and settings.text_bags > 1
    models, bag_epochs = [model], [len(history)]
    first_s = time_limit.elapsed() if time_limit is not None else 0.0

    def more() -> bool:
        if time_limit is None:
            return cross_fit and len(models) < settings.text_bags
        return (not time_limit.stopped and len(models) < settings.max_bags
                and (seconds_left() or 0.0) > 0.8 * first_s)

    all_t: tuple[torch.Tensor, ...] | None = None  # every training row, encoded once for the other carve-outs
    while more():
        seed = settings.seed + 1000 * len(models)
        data = None
        if cross_fit:
            if all_t is None:
                all_t = tensors(x_frame, y_train)
            f_rows, v_rows = split_indices(train_df, target=target, task=task, seed=seed + 1,
                                           test_size=settings.valid_size, by=settings.split_by, group=settings.group)
            f_idx, v_idx = torch.from_numpy(f_rows), torch.from_numpy(v_rows)
            data = (tuple(t[f_idx] for t in all_t), tuple(t[v_idx] for t in all_t))
        seed_everything(seed)
        other = "a" if settings.ple_version == "b" else "b"
        extra = make_model(k, other if settings.mix_bags and len(models) % 2 else settings.ple_version,
                           fit=data[0] if data is not None else None)
        extra_history, _, extra_limit = train(extra, seconds_left(), seed, first=False, data=data)
        models.append(extra)  # its best weights, with the LR decayed if the budget ended it
        bag_epochs.append(len(extra_history))
        if extra_limit is not None and extra_limit.stopped:
            break
    first_model = model
    if len(models) > 1:
        model = TabularBag(models).eval()
        why = "in the time limit" if time_limit is not None else f"(text_bags={settings.text_bags})"
        how = ", each early-stopped on its own validation rows" if cross_fit else ""
        notes.append(f"{len(models)} models trained {why}, each from its own seed{how}, and averaged "
                     f"(epochs: {', '.join(map(str, bag_epochs))})")
        if cross_fit:
            notes.append("validation figures are the first model's alone: the other models trained on "
                         "some of its validation rows")

    info = {
        "source": source,
        "rows": int(len(df)),
        "train_rows": int(n_fit),
        "valid_rows": int(len(valid_rows)),
        "test_rows": int(len(test_df)) if test_df is not None else 0,
        "epochs": len(history),
        "ensemble_k": k,
        "sizing_step_s": {str(m): round(t, 5) for m, t in step_s.items()},
        "best_epoch": stopping.best_epoch,
        "bags": len(models),
        "bag_epochs": bag_epochs,
        "stopped_by_time_limit": bool(time_limit and time_limit.stopped),
        "fit_seconds": round(time.perf_counter() - t_start, 2),
        "notes": notes,
    }
    predictor = Predictor(task=task, target=target_enc, preprocessor=pre, model=model,
                          columns=[infos[c].to_dict() for c in infos], model_name="tabular", info=info)
    valid_frame = train_df.iloc[valid_rows].reset_index(drop=True)
    judge = predictor
    if cross_fit and len(models) > 1:  # held-out rows of the first model only
        judge = Predictor(task=task, target=target_enc, preprocessor=pre, model=first_model,
                          columns=predictor.columns, model_name="tabular", info=info)
    metrics = {f"valid_{k}": v for k, v in judge.evaluate(valid_frame, source=f"{source} (validation rows)").items()}
    if test_df is not None:
        metrics.update({f"test_{k}": v for k, v in predictor.evaluate(test_df, source=f"{source} (test rows)").items()})
    predictor.metrics = {k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)}

    if run is not None:
        from deepfit.engine.checkpoint import atomic_write_bytes
        from deepfit.tasks.table_report import table_report

        for name, blob in predictor.files().items():
            atomic_write_bytes(run.work / name, blob)
        run.write_json("metrics.json", predictor.metrics)
        table_report(run.work / "report.html", predictor=predictor, infos=infos, history=history,
                     eval_frame=test_df if test_df is not None else valid_frame)
        run.finish()
    return predictor
