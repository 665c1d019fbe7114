"""The table task: typed columns in, a trained :class:`TablePredictor` and a run directory out.

The path, step by step (one method each): read the table → find the target (suggesting close
names) → infer column types (overridable) → drop rows without a target (said in the report) →
split off a test set (stratified for classification; or by time, or by group; or the ``test``
data given) → carve a validation set out of the training rows → fit the preprocessing on the
training rows only (:meth:`TableTask._prepare`) → with a time limit, size the ensemble to it
(:meth:`TableTask._plan`, ``sizing.py``) → train a TabM-style ensemble
(``deepfit.models.tabular``) with AdamW, label smoothing and early stopping on the validation
loss (classification) or RMSE (regression), restoring the best weights, within the time budget
(:meth:`TableTask._fit_one`) → more models while the budget or ``text_bags`` ask for them
(:meth:`TableTask._bag`, ``ensemble.py``) → evaluate (:meth:`TableTask._evaluate`). The runner
(``tasks/runner.py``) writes the artifact, ``metrics.json`` and ``report.html``.

Under ``torchrun`` every rank reads and preprocesses the same table (deterministic), and each
trains on its share of every batch (DDP; the batch size is the global batch, as in one process).
What is decided against the clock — the ensemble size a time limit pays for, whether another
model joins the ensemble — rank 0 decides and every rank follows (:func:`decided_by_rank0`);
early stopping reads validation metrics reduced over the ranks, and the time limit is agreed
by the engine, so all ranks stop together. Only rank 0 writes.

Example:
    >>> from deepfit.tasks.table import TableSettings, fit_table                      # doctest: +SKIP
    >>> model = fit_table("credit.csv", TableSettings(target="Status", time_limit=60))  # doctest: +SKIP
    >>> model.metrics["test_accuracy"]                                                 # doctest: +SKIP
    0.80
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from deepfit.data.sources import read_table
from deepfit.data.split import split_indices
from deepfit.data.table import ColumnInfo, coerce_column, find_column, infer_types
from deepfit.engine.callbacks import CSVLogger, EarlyStopping, TimeLimit
from deepfit.engine.distributed import from_rank_0, world_size
from deepfit.engine.learner import Learner
from deepfit.engine.precision import cpu_has_fast_bf16
from deepfit.engine.rng import seed_everything
from deepfit.engine.schedules import TimeCosine
from deepfit.errors import ConfigError, DataError
from deepfit.features.preprocessor import SUPPORTED_KINDS, TablePreprocessor
from deepfit.features.target import make_target, skewed_positive
from deepfit.models.tabular import TabularBag, TabularModel, ensemble_loss
from deepfit.tasks.base import Task
from deepfit.tasks.runner import Run, fit, source_name
from deepfit.tasks.table.ensemble import BagRule, EnsembleMetric
from deepfit.tasks.table.labels import clean_target
from deepfit.tasks.table.linear import LinearFit, choose_alpha, fit_linear_part
from deepfit.tasks.table.predictor import TablePredictor
from deepfit.tasks.table.report import table_report
from deepfit.tasks.table.settings import TableSettings
from deepfit.tasks.table.sizing import (BUDGET_BOUND_EPOCHS, BUDGET_BOUND_PATIENCE, default_batch_size,
                                        projected_epochs, size_ensemble)
from deepfit.tasks.table.text import (TextViews, choose_text_encoder, ngram_prior_of,
                                      penalise_like_logistic_regression, uses_ngram_penalty, wide_optimizer)

__all__ = ["TableTask", "TableData", "TablePlan", "fit_table"]

Tensors = tuple[torch.Tensor, ...]  # the preprocessor's arrays, then the encoded target


@dataclass
class TableData:
    """A table read, cleaned, split and encoded: everything training needs before any model."""

    source: str
    target: str
    task: str  # "classify" or "regress"
    infos: dict[str, ColumnInfo]
    columns: dict[str, str]  # the model's input columns and their kinds
    notes: list[str]  # what the report tells about the run
    n_rows: int  # rows with a target
    train_df: pd.DataFrame  # the training rows (the test rows split off)
    test_df: pd.DataFrame | None
    fit_rows: np.ndarray  # rows of train_df the first model is fitted on ...
    valid_rows: np.ndarray  # ... and early-stopped on
    x_frame: pd.DataFrame  # train_df's input columns, coerced to their kinds
    y_train: pd.Series
    pre: TablePreprocessor
    target_enc: Any
    train_t: Tensors
    valid_t: Tensors
    first_prior: torch.Tensor | None = None  # the first carve-out's n-gram prior: computed once
    first_linear: LinearFit | None = None  # the first carve-out's linear part: fitted once
    text_encoder: str | None = None  # how text columns are read ("ngrams", "minilm", "both"); None: no text
    text_encoder_losses: dict[str, float] | None = None  # the judges' validation losses, when "auto" chose

    @property
    def has_text(self) -> bool:
        """Whether a text column is among the inputs (its bags cross-fit; the linear part leaves it out)."""
        return "text" in self.columns.values()

    def tensors(self, frame: pd.DataFrame, y: pd.Series) -> Tensors:
        """``frame`` (coerced input columns) and ``y`` (targets) as the model's tensors."""
        arrays = self.pre.arrays(frame)
        return (*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays),
                torch.from_numpy(self.target_enc.encode(y)))


@dataclass(frozen=True)
class TablePlan:
    """What is decided before training and kept by a resumed run (``run.json``'s ``plan``)."""

    k: int  # ensemble members
    batch_size: int  # per rank: the global batch (as one process would take) over the ranks
    budget_bound: bool  # the time limit, not early stopping, will end the run
    step_s: dict[int, float]  # sizing's measured step seconds by k ({} when not measured)


class TableTask(Task):
    """Classification or regression of one column of a table from the others."""

    kind = "table"
    Settings = TableSettings
    Predictor = TablePredictor
    distributed = True
    describe = "a table (CSV/TSV/Parquet path, pandas DataFrame, 2-D NumPy array) and the target column to predict"

    settings: TableSettings

    @classmethod
    def accepts(cls, data: Any, hints: dict[str, Any]) -> bool:
        """Any data that is not a path to nothing (the table task is asked last)."""
        return not (isinstance(data, (str, os.PathLike)) and not Path(data).exists())

    @classmethod
    def settings_from_cli(cls, args: argparse.Namespace, given: dict[str, Any]) -> dict[str, Any]:
        allowed = {"task", "target", "time_limit", "seed", "epochs", "batch_size", "lr", "checkpoint_every",
                   "split_by", "group", "types", "text_encoder"}
        extra = sorted(set(given) - allowed)
        if extra:
            raise ConfigError(f"--{extra[0].replace('_', '-')} does not apply to a table")
        if given.get("target") is None and not getattr(args, "resume", False):
            raise ConfigError("--target COL is required for a table (the column to predict)")
        return {("max_epochs" if name == "epochs" else name): value for name, value in given.items()}

    @staticmethod
    def default_out(data: Any) -> str:
        return f"runs/{Path(str(data)).stem or 'run'}"

    # ------------------------------------------------------------------ the run

    def train(self, data: Any, run: Run, *, test: Any = None) -> TablePredictor:
        s = self.settings
        table = self._prepare(data, test, run)
        plan = self._plan(table, run)
        # Inputs are checked: only now does the run folder appear.
        run.start(s, data=table.source, data_sha256=self.identity(data),
                  test=source_name(test) if test is not None else None,
                  plan={"ensemble_k": plan.k, "budget_bound": plan.budget_bound,
                        **({"text_encoder": table.text_encoder} if table.text_encoder else {})})
        seed_everything(s.seed)
        model = self._model(table, plan.k)
        left = self._seconds_left(run)
        # Every model of a bag early-stops on its own carve-out of the training rows, so the bag
        # sees every training row (a text table's text_bags; with cross_fit, a time limit's extra models).
        cross_fit = (table.has_text and s.text_bags > 1) or bool(s.cross_fit and s.time_limit)
        history, stopping, limit = self._fit_one(table, plan, run, model,
                                                 None if left is None else max(left, 0.05 * s.time_limit),
                                                 s.seed, first=True, label=BagRule.first_label(s, cross_fit))
        rule = BagRule(s, cross_fit=cross_fit, first_limit=limit,
                       first_seconds=limit.elapsed() if limit is not None else 0.0)
        models, histories = self._bag(table, plan, run, rule, model, history)
        bag_epochs = [len(h) for h in histories]
        final: torch.nn.Module = model
        if len(models) > 1:
            final = TabularBag(models).eval()
            table.notes.extend(rule.notes(bag_epochs))
        if s.linear:
            if rule.cross_fit and len(models) > 1 and not table.has_text:
                self._blend(table, model, own=[m.lin_alpha.item() for m in models[1:]])
            else:
                self._blend(table, final, cross_fit=rule.cross_fit and len(models) > 1)
        info = {
            "source": table.source,
            "rows": table.n_rows,
            "train_rows": int(len(table.fit_rows)),
            "valid_rows": int(len(table.valid_rows)),
            "test_rows": int(len(table.test_df)) if table.test_df is not None else 0,
            "epochs": len(history),
            "ensemble_k": plan.k,
            "sizing_step_s": {str(m): round(t, 5) for m, t in plan.step_s.items()},
            "best_epoch": stopping.best_epoch,
            "bags": len(models),
            "bag_epochs": bag_epochs,
            "stopped_by_time_limit": bool(limit and limit.stopped),
            "fit_seconds": round(run.elapsed(), 2),
            **({"text_encoder": table.text_encoder} if table.text_encoder else {}),
            **({"text_encoder_losses": table.text_encoder_losses} if table.text_encoder_losses else {}),
            "notes": table.notes,
        }
        predictor = TablePredictor(task=table.task, target=table.target_enc, preprocessor=table.pre, model=final,
                                   columns=[table.infos[c].to_dict() for c in table.infos], info=info)
        judge = models[0] if rule.cross_fit and len(models) > 1 else None  # held-out rows of the first model only
        on_valid = self._judged_by(table, predictor, judge)
        predictor.metrics, valid_frame = self._evaluate(table, predictor, on_valid)
        eval_frame = table.test_df if table.test_df is not None else valid_frame
        run.report = lambda path, p: table_report(
            path, predictor=p, infos=table.infos, histories=histories, eval_frame=eval_frame, valid_frame=valid_frame,
            valid_predictor=on_valid if on_valid is not predictor else None)
        return predictor

    # ------------------------------------------------------------------ data

    def _prepare(self, data: Any, test: Any, run: Run | None = None) -> TableData:
        """Read the table, clean its target, choose the input columns, split, fit the preprocessing
        (and how text columns are read: :meth:`_encode_text`)."""
        s = self.settings
        source = source_name(data)
        df = read_table(data)
        target = find_column(df, s.target, role="target", source=source)
        infos = infer_types(df, target=target, overrides=s.types, source=source)
        notes: list[str] = []
        df, task, y_all = clean_target(df, target, infos[target], task=s.task, source=source, notes=notes)
        columns = self._inputs(infos, target, notes, source)
        train_rows, test_df = self._test_split(df, target, task, test)
        train_df = df.iloc[train_rows].reset_index(drop=True)
        fit_rows, valid_rows = split_indices(train_df, target=target, task=task, seed=s.seed + 1,
                                             test_size=s.valid_size, by=s.split_by, group=s.group)
        y_train = y_all.iloc[train_rows].reset_index(drop=True)
        x_frame = pd.DataFrame({c: coerce_column(train_df[c], k, date_format=infos[c].date_format)
                                for c, k in columns.items()})
        date_formats = {c: infos[c].date_format for c, k in columns.items() if k == "date"}
        has_text = "text" in columns.values()
        mode = self._text_mode(run, notes) if has_text else "ngrams"
        pre = TablePreprocessor(columns, date_formats=date_formats, text_tokenizer=s.text_tokenizer,
                                text_encoder="both" if mode == "auto" else mode).fit(x_frame.iloc[fit_rows])
        target_enc = make_target(task, target).fit(y_train.iloc[fit_rows])  # log1p: _choose_transform
        table = TableData(source=source, target=target, task=task, infos=infos, columns=columns, notes=notes,
                          n_rows=int(len(df)), train_df=train_df, test_df=test_df, fit_rows=fit_rows,
                          valid_rows=valid_rows, x_frame=x_frame, y_train=y_train, pre=pre, target_enc=target_enc,
                          train_t=(), valid_t=())
        if has_text:
            self._encode_text(table, mode)
        table.train_t = table.tensors(x_frame.iloc[fit_rows].reset_index(drop=True),
                                      y_train.iloc[fit_rows].reset_index(drop=True))
        table.valid_t = table.tensors(x_frame.iloc[valid_rows].reset_index(drop=True),
                                      y_train.iloc[valid_rows].reset_index(drop=True))
        self._choose_transform(table)
        return table

    def _text_mode(self, run: Run | None, notes: list[str]) -> str:
        """``text_encoder``, or what a resumed run decided; "auto" without the encoder's package is
        "ngrams" (with a note); "minilm" / "both" without it is a ConfigError naming the install command."""
        from deepfit.models.bert import MINILM_INSTALL, minilm_available, minilm_files

        mode = self.settings.text_encoder
        if run is not None and run.resuming and "text_encoder" in (run.plan or {}):
            mode = str(run.plan["text_encoder"])
        if mode == "auto" and not minilm_available():
            notes.append(f"text encoder: n-grams (the pretrained sentence encoder is not installed: {MINILM_INSTALL})")
            return "ngrams"
        if mode in ("minilm", "both"):
            minilm_files()
        return mode

    def _encode_text(self, table: TableData, mode: str) -> None:
        """Embed every training text once (cached), and with ``mode="auto"`` choose between the
        n-grams, the encoder and both by the linear judges' validation loss (text.py,
        :func:`choose_text_encoder`); the choice is noted, printed and kept in ``run.json``'s plan."""
        import time

        from deepfit.features.text import TextFeature

        texts = {n: f for n, f in table.pre.features.items() if isinstance(f, TextFeature)}
        if mode != "ngrams":
            start = time.perf_counter()
            for name, feature in texts.items():
                feature.embeddings(table.x_frame[name], progress=self.progress)  # fills the cache
                if table.test_df is not None and name in table.test_df:
                    feature.embeddings(coerce_column(table.test_df[name], "text"), progress=self.progress)
            seconds = time.perf_counter() - start
            if seconds > 1:
                table.notes.append(f"text: new texts embedded by the pretrained encoder in {seconds:.0f} s "
                                   f"(cached per text for the rest of the run and later runs)")
        if mode == "auto":
            mode, losses = self._judge_text(table, texts)
            table.text_encoder_losses = {k: round(v, 5) for k, v in losses.items()}
            for feature in texts.values():
                feature.use(mode)
            kind = "loss" if table.task == "classify" else "MSE, standardised"
            note = (f"text encoder: {mode} (chosen on the validation rows: linear judges' {kind} n-grams "
                    f"{losses['ngrams']:.4f}, pretrained encoder {losses['minilm']:.4f}, both {losses['both']:.4f})")
        else:
            note = f"text encoder: {mode} (text_encoder={self.settings.text_encoder!r})"
        table.text_encoder = mode
        table.notes.append(note)
        if self.progress:
            print(note, flush=True)

    def _judge_text(self, table: TableData, texts: dict[str, Any]) -> tuple[str, dict[str, float]]:
        """The judges' choice on the first carve-out (text.py, :func:`choose_text_encoder`)."""
        def views(rows: np.ndarray) -> TextViews:
            ids, weights, embs, offset = [], [], [], 0
            for name, feature in texts.items():
                values = table.x_frame[name].iloc[rows]
                i, w = feature.ngrams(values)
                ids.append(np.where(i > 0, i + offset, 0))
                weights.append(w)
                embs.append(feature.embeddings(values))
                offset += feature.ngram_vocab_size() - 1
            width = max(a.shape[1] for a in ids)
            pad = [np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in ids]
            padw = [np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in weights]
            y = table.target_enc.encode(table.y_train.iloc[rows].reset_index(drop=True))
            return TextViews(torch.from_numpy(np.concatenate(pad, 1)), torch.from_numpy(np.concatenate(padw, 1)),
                             torch.from_numpy(np.concatenate(embs, 1)), torch.from_numpy(y))

        vocab = 1 + sum(f.ngram_vocab_size() - 1 for f in texts.values())
        return choose_text_encoder(views(table.fit_rows), views(table.valid_rows), task=table.task,
                                   n_outputs=table.target_enc.n_outputs, vocab=vocab,
                                   c=self.settings.ngram_c or 10.0)

    def _choose_transform(self, table: TableData) -> None:
        """The regression target's transform: ``target_transform`` when it names one; with "auto",
        for a skewed non-negative target (prices, counts: ``skewed_positive``) the one whose linear
        model (linear.py, a judge, not the model trained) has the lower validation RMSE in the
        target's own units, standardised vs log1p. The first carve-out's tensors are re-encoded."""
        s = self.settings
        if table.task != "regress" or s.target_transform == "standard":
            return
        y_fit = table.y_train.iloc[table.fit_rows].reset_index(drop=True)
        y_valid = table.y_train.iloc[table.valid_rows].reset_index(drop=True)
        if s.target_transform == "auto" and not skewed_positive(y_fit.to_numpy(dtype=np.float64)):
            return
        log1p = make_target("regress", table.target, "log1p").fit(y_fit)
        if s.target_transform == "auto":
            judge = TabularModel(table.pre.spec(), n_outputs=1, k=1, width=1, depth=1, linear=True).eval()
            rmse = {}
            for name, enc in (("standard", table.target_enc), ("log1p", log1p)):
                fit_t = (*table.train_t[:-1], torch.from_numpy(enc.encode(y_fit)))
                valid_t = (*table.valid_t[:-1], torch.from_numpy(enc.encode(y_valid)))
                fit_linear_part(judge, fit_t, valid_t, task="regress", seed=s.seed).install(judge)
                judge.lin_alpha.fill_(1.0)  # the linear part alone
                with torch.no_grad():
                    z = judge(*valid_t[:-1])[:, 0, 0].double().numpy()
                rmse[name] = float(np.sqrt(np.mean((enc.decode(z) - y_valid.to_numpy(dtype=np.float64)) ** 2)))
            chosen = min(rmse, key=rmse.__getitem__)
            table.notes.append(f"target transform: {chosen}, chosen on the validation rows for the skewed "
                               f"non-negative '{table.target}' (a linear model's RMSE: standardised "
                               f"{rmse['standard']:.4g}, log1p {rmse['log1p']:.4g}); "
                               "target_transform='standard' or 'log1p' fixes it")
            if chosen == "standard":
                return
        else:
            table.notes.append("target transform: log1p (target_transform='log1p')")
        table.target_enc = log1p
        table.train_t = (*table.train_t[:-1], torch.from_numpy(log1p.encode(y_fit)))
        table.valid_t = (*table.valid_t[:-1], torch.from_numpy(log1p.encode(y_valid)))

    @staticmethod
    def _inputs(infos: dict[str, ColumnInfo], target: str, notes: list[str], source: str) -> dict[str, str]:
        """Which columns feed the model, and as what kind (a note for each kind not used yet)."""
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
        return columns

    def _test_split(self, df: pd.DataFrame, target: str, task: str, test: Any) -> tuple[np.ndarray, pd.DataFrame | None]:
        """(the training rows of ``df``, the test rows): the ``test`` data given, else ``test_size``
        of the rows held out (none when it is 0)."""
        s = self.settings
        if test is not None:
            test_df = read_table(test)
            find_column(test_df, target, role="target", source=source_name(test))
            return np.arange(len(df)), test_df
        if s.test_size > 0:
            train_rows, test_rows = split_indices(df, target=target, task=task, seed=s.seed, test_size=s.test_size,
                                                  by=s.split_by, group=s.group)
            return train_rows, df.iloc[test_rows].reset_index(drop=True)
        return np.arange(len(df)), None

    # ------------------------------------------------------------------ models

    def _loss(self, table: TableData) -> Any:
        smoothing = self.settings.label_smoothing if table.task == "classify" else 0.0
        return partial(ensemble_loss, task=table.task, label_smoothing=smoothing)

    def _model(self, table: TableData, k: int, ple_version: str | None = None,
               carve: tuple[Tensors, Tensors] | None = None) -> TabularModel:
        """A fresh model of ``k`` members (seeded by the caller) for the rows of ``carve`` (train,
        valid tensors; default: the first carve-out); with ``linear``, the first carve-out's linear
        part is fitted (linear.py) and installed; with text, its n-gram part is set up like a logistic regression (text.py).
        What depends only on the first carve-out is computed once."""
        s = self.settings
        spec = table.pre.spec()
        text_lr = uses_ngram_penalty(table.task, spec)
        use_prior = text_lr and s.ngram_nb
        m = TabularModel(spec, n_outputs=table.target_enc.n_outputs, k=k, width=s.width, depth=s.depth,
                         dropout=s.dropout, ple_version=ple_version or s.ple_version, text_dim=s.text_dim,
                         text_layers=s.text_layers, ngram_prior=use_prior, linear=s.linear)
        rows, valid = carve if carve is not None else (table.train_t, table.valid_t)
        if use_prior:
            if carve is not None:
                prior = ngram_prior_of(rows, spec, table.target_enc.n_outputs)
            else:
                if table.first_prior is None:
                    table.first_prior = ngram_prior_of(rows, spec, table.target_enc.n_outputs)
                prior = table.first_prior
            m.set_ngram_prior(prior)
        if s.linear and carve is not None and not table.has_text:
            fit_linear_part(m, rows, valid, task=table.task, seed=s.seed).install(m)  # blended on its own carve-out
        if s.linear and carve is None:  # a cross-fitted text model's linear part is never blended in (_blend): left 0
            if table.first_linear is None:
                table.first_linear = fit_linear_part(m, rows, valid, task=table.task, seed=s.seed)
                table.notes.append(table.first_linear.note())
            table.first_linear.install(m)
        if text_lr and s.ngram_c is not None and m.text_linear is not None:
            penalise_like_logistic_regression(m.text_linear.weight, c=s.ngram_c, n_rows=len(rows[-1]))
        return m

    def _seconds_left(self, run: Run) -> float | None:
        """The budget covers the whole fit: reading and preprocessing have used part of it, and the
        final evaluation needs a little (5 %) at the end. None without a time limit."""
        if not self.settings.time_limit:
            return None
        return self.settings.time_limit * 0.95 - run.elapsed()

    def _plan(self, table: TableData, run: Run) -> TablePlan:
        """The batch size, and the ensemble size a time budget pays for (sizing.py; measured on
        rank 0, followed by every rank); a resumed run keeps what it decided when it started."""
        s = self.settings
        n_fit = len(table.fit_rows)
        batch = min(s.batch_size or default_batch_size(n_fit), n_fit)  # the global batch
        per_rank = math.ceil(batch / world_size())
        if run.resuming:
            return TablePlan(k=int(run.plan["ensemble_k"]), batch_size=per_rank,
                             budget_bound=bool(run.plan["budget_bound"]), step_s={})
        if not (s.time_limit and s.auto_k):
            return TablePlan(k=s.k, batch_size=per_rank, budget_bound=False, step_s={})
        measured = self._size(table, run, per_rank, steps=math.ceil(n_fit / batch)) if run.is_main else None
        plan: TablePlan = from_rank_0(measured)  # type: ignore[assignment]
        if plan.k < s.k:
            table.notes.append(f"ensemble of {plan.k} members instead of {s.k}, so that the time limit of "
                               f"{s.time_limit:g}s still pays for enough epochs")
        return plan

    def _size(self, table: TableData, run: Run, batch_size: int, *, steps: int) -> TablePlan:
        """Time a few training steps at ``k`` and at one member and keep the ``k`` the budget left
        pays for (sizing.py); ``steps`` per epoch."""
        s = self.settings
        k, step_s = size_ensemble(partial(self._model, table), [t[:batch_size] for t in table.train_t],
                                  self._loss(table), steps_per_epoch=steps, k_max=s.k,
                                  seconds=self._seconds_left(run) or 0.0)
        budget_bound = bool(step_s) and projected_epochs(step_s, k, steps_per_epoch=steps,
                                                         seconds=self._seconds_left(run) or 0.0) < BUDGET_BOUND_EPOCHS
        return TablePlan(k=k, batch_size=batch_size, budget_bound=budget_bound, step_s=step_s)

    def _fit_one(self, table: TableData, plan: TablePlan, run: Run, model: TabularModel, seconds: float | None,
                 seed: int, *, first: bool, carve: tuple[Tensors, Tensors] | None = None, label: str = ""
                 ) -> tuple[list[dict], EarlyStopping, TimeLimit | None]:
        """Fit one model (early stopping with best-weights restore; a time limit, and with it the
        held-then-decayed LR) on ``carve`` (train, valid tensors; default: the first carve-out).
        Only the first model logs history and writes (and resumes from) checkpoints; ``label``
        starts its progress lines (which model of a bag)."""
        s = self.settings
        fit_t, stop_t = carve if carve is not None else (table.train_t, table.valid_t)
        metric_name = "accuracy" if table.task == "classify" else "rmse"
        watch = s.monitor if s.monitor != "auto" else ("loss" if table.task == "classify" else "metric")
        monitor = "valid_loss" if watch == "loss" else f"valid_{metric_name}"
        patience = max(s.patience, BUDGET_BOUND_PATIENCE) if plan.budget_bound else s.patience
        stop = EarlyStopping(monitor, patience=patience, restore_best=True)
        limit = TimeLimit(seconds) if seconds is not None else None
        callbacks: list[Any] = [stop] + ([limit] if limit is not None else [])
        if run.work is not None and first:
            callbacks.append(CSVLogger(run.work / "history.csv"))
        optimizer: Any = "adamw"
        if model.text_linear is not None and s.wide_lr_scale != 1.0:
            optimizer = wide_optimizer(model.text_linear.weight, s.wide_lr_scale)
        learner = Learner(
            model, fit_t, stop_t, loss=self._loss(table), optimizer=optimizer,
            metrics=[EnsembleMetric(metric_name, table.task)],  # type: ignore[list-item]
            lr=s.lr, weight_decay=s.weight_decay, batch_size=plan.batch_size,
            precision="bf16" if cpu_has_fast_bf16() else "auto", seed=seed, progress=self.progress,
            progress_label=label,
            # Text and sequence batches change shape (n-grams per batch, trimmed token lengths):
            # a compiled step would recompile for every batch.
            compile=False if set(table.columns.values()) & {"text", "sequence"} else "auto",
            out_dir=run.work if first else None,
            checkpoint_every=s.checkpoint_every if first else None, callbacks=callbacks,
        )
        schedule: Any = "constant"
        if limit is not None and s.lr_hold < 1:
            schedule = TimeCosine(s.lr, 0, s.final_lr_frac, hold=s.lr_hold,
                                  clock=lambda: limit.elapsed() / limit.seconds)
        history = learner.fit(s.max_epochs, schedule=schedule, resume=run.resume_from() if first else None)
        model.eval()
        return history, stop, limit

    def _bag(self, table: TableData, plan: TablePlan, run: Run, rule: BagRule, first: TabularModel,
             first_history: list[dict]) -> tuple[list[TabularModel], list[list[dict]]]:
        """More models after the first while ``rule`` wants them, each from its own seed (and,
        cross-fitting, early-stopped on its own carve-out); returns every model and its history."""
        s = self.settings
        models, histories = [first], [first_history]
        all_t: Tensors | None = None  # every training row, encoded once for the other carve-outs
        while from_rank_0(rule.wants_more(len(models), self._seconds_left(run))):
            seed = rule.seed(len(models))
            carve = None
            if rule.cross_fit:
                if all_t is None:
                    all_t = table.tensors(table.x_frame, table.y_train)
                f_rows, v_rows = split_indices(table.train_df, target=table.target, task=table.task, seed=seed + 1,
                                               test_size=s.valid_size, by=s.split_by, group=s.group)
                f_idx, v_idx = torch.from_numpy(f_rows), torch.from_numpy(v_rows)
                carve = (tuple(t[f_idx] for t in all_t), tuple(t[v_idx] for t in all_t))
            seed_everything(seed)
            extra = self._model(table, plan.k, rule.ple_version(len(models)), carve=carve)
            history, _, limit = self._fit_one(table, plan, run, extra, self._seconds_left(run), seed, first=False,
                                              carve=carve, label=rule.label(len(models)))
            if s.linear and carve is not None and not table.has_text:
                choose_alpha(extra, carve[1], task=table.task)  # its own share, on its own validation rows
            models.append(extra)  # its best weights, with the LR decayed if the budget ended it
            histories.append(history)
            if limit is not None and limit.stopped:
                break
        return models, histories

    @staticmethod
    def _blend(table: TableData, final: torch.nn.Module, *, cross_fit: bool = False,
               own: list[float] | None = None) -> None:
        """The linear part's share of the output, chosen on the validation rows (linear.py);
        none for a cross-fitted text bag, whose models each saw other validation rows. ``own``:
        the shares the other models of a cross-fitted bag chose on their own carve-outs (then
        ``final`` is the first model, judged on the first carve-out)."""
        if own is not None:
            alpha, losses = choose_alpha(final, table.valid_t, task=table.task)
            loss = "loss" if table.task == "classify" else "MSE, standardised"
            table.notes.append(f"linear part: each model's share chosen on its own validation rows "
                               f"({', '.join(f'{a:g}' for a in [alpha, *own])}); the first model's {loss} "
                               f"{losses[alpha]:.4g}, its network alone {losses[0.0]:.4g}, its linear model alone "
                               f"{losses[1.0]:.4g}")
            return
        if cross_fit:
            table.notes.append("linear part: not blended in (a cross-fitted bag has no common validation rows)")
            return
        alpha, losses = choose_alpha(final, table.valid_t, task=table.task)
        loss = "loss" if table.task == "classify" else "MSE, standardised"
        table.notes.append(f"linear part: {alpha:g} of the output, chosen on the validation rows ({loss} "
                           f"{losses[alpha]:.4g}; the network alone {losses[0.0]:.4g}, the linear model alone "
                           f"{losses[1.0]:.4g})")

    # ------------------------------------------------------------------ evaluation

    @staticmethod
    def _judged_by(table: TableData, predictor: TablePredictor, judge: TabularModel | None) -> TablePredictor:
        """The predictor the validation rows judge: ``predictor``, or ``judge`` alone — the model
        whose own held-out rows they are, when they are not the whole predictor's."""
        if judge is None:
            return predictor
        return TablePredictor(task=table.task, target=table.target_enc, preprocessor=table.pre, model=judge,
                              columns=predictor.columns, info=predictor.info)

    def _evaluate(self, table: TableData, predictor: TablePredictor,
                  on_valid: TablePredictor) -> tuple[dict[str, float], pd.DataFrame]:
        """(validation metrics of ``on_valid`` and test metrics of ``predictor``, the validation rows)."""
        valid_frame = table.train_df.iloc[table.valid_rows].reset_index(drop=True)
        metrics = {f"valid_{k}": v for k, v in
                   on_valid.evaluate(valid_frame, source=f"{table.source} (validation rows)").items()}
        if table.test_df is not None:
            metrics.update({f"test_{k}": v for k, v in
                            predictor.evaluate(table.test_df, source=f"{table.source} (test rows)").items()})
        return {k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)}, valid_frame


def fit_table(data: Any, settings: TableSettings, *, test: Any = None, out: str | os.PathLike | None = None,
              resume: bool = False, progress: bool = True) -> TablePredictor:
    """Train on a table; returns a :class:`TablePredictor` (see the module docstring).

    Args:
        data: a CSV/TSV/Parquet path, a pandas DataFrame or a 2-D NumPy array.
        settings: what decides the run (``TableSettings``; ``target`` names the column to predict).
        test: labelled test data (default: ``settings.test_size`` of the rows are held out).
        out: the run directory, built in ``<out>.incomplete/`` and renamed when complete.
        resume: continue the interrupted run in ``out`` exactly (its stored settings, the same data).
        progress: print progress.
    """
    return fit("table", data, settings, test=test, out=out, resume=resume, progress=progress)  # type: ignore[return-value]
