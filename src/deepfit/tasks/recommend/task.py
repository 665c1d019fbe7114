"""The recommendation task: a table of ratings in, a :class:`RecommendPredictor` and a run directory out.

Step by step: read the table → find the user, item and rating (and time) columns (naming the
columns there are) → clean them (data.py: ids stay identifiers, bad ratings are errors,
duplicate pairs resolved) → split off the test rows and carve the validation rows out of the
training rows (each user's latest ratings with a time column, else random rows) → index users
and items (0 = unknown) → fit the bias model by ALS (the prior and the fallback) → train
:class:`~deepfit.models.collab.CollabModel` with the Learner (AdamW, early stopping on the
validation RMSE with the best weights restored, exact resume from ``last.ckpt``) → choose the
MLP branch's share on the validation rows → evaluate: RMSE and MAE on the validation and test
rows, recall@10 and NDCG@10 on them (meaningful on a time split: the items each user rated next).

Extra columns are not model inputs yet (a note says so); an item label column (a title) is
kept for the lists. Not ``distributed``: it refuses to start under ``torchrun``.
"""

from __future__ import annotations

import argparse
import math
import os
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch

from deepfit.data.sources import read_table
from deepfit.data.table import find_column
from deepfit.engine.callbacks import CSVLogger, EarlyStopping, TimeLimit
from deepfit.engine.learner import Learner
from deepfit.engine.rng import seed_everything
from deepfit.errors import ConfigError, DataError
from deepfit.models.collab import CollabModel, collab_loss, fit_biases
from deepfit.tasks.base import Task
from deepfit.tasks.recommend.data import as_ids, clean_ratings, split_rows
from deepfit.tasks.recommend.predictor import RecommendPredictor
from deepfit.tasks.recommend.settings import RecommendSettings
from deepfit.tasks.runner import Run, fit, source_name

__all__ = ["RecommendTask", "fit_recommend"]

LABEL_COLUMNS = ("title", "name")
SHARES = tuple(i / 10 for i in range(11))  # the MLP branch's shares tried on the validation rows


class RecommendTask(Task):
    """Ratings of items by users: predict ratings, rank items for a user."""

    kind = "recommend"
    Settings = RecommendSettings
    Predictor = RecommendPredictor
    distributed = False
    describe = "a table of (user, item, rating) rows with task='recommend'"

    settings: RecommendSettings

    @classmethod
    def accepts(cls, data: Any, hints: dict[str, Any]) -> bool:
        return hints.get("task") == "recommend"

    @classmethod
    def settings_from_cli(cls, args: argparse.Namespace, given: dict[str, Any]) -> dict[str, Any]:
        allowed = {"task", "target", "user", "item", "time", "time_limit", "seed", "epochs", "batch_size", "lr",
                   "checkpoint_every"}
        extra = sorted(set(given) - allowed)
        if extra:
            raise ConfigError(f"--{extra[0].replace('_', '-')} does not apply to --task recommend")
        if hasattr(args, "user") and not getattr(args, "resume", False):  # the command line (Python has defaults)
            missing = [f"--{n}" for n in ("user", "item", "target") if given.get(n) is None]
            if missing:
                raise ConfigError(f"--task recommend needs {', '.join(missing)} (the user id, item id and rating "
                                  "columns)")
        return {("max_epochs" if k == "epochs" else k): v for k, v in given.items() if k != "task"}

    # ------------------------------------------------------------------ the run

    def train(self, data: Any, run: Run, *, test: Any = None) -> RecommendPredictor:
        s = self.settings
        source = source_name(data)
        notes: list[str] = []
        frame, label_of, columns = self._read(data, source, notes)
        by_time = s.time is not None
        train_frame, test_frame, fit_frame, valid_frame = self._splits(frame, test, columns, source)
        users = sorted(fit_frame["user"].unique().tolist())
        items = sorted(fit_frame["item"].unique().tolist())
        lo, hi = s.rating_range or (float(frame["rating"].min()), float(frame["rating"].max()))
        if lo == hi:
            raise DataError(f"{source}: every rating in '{s.target}' is {lo:g}; there is nothing to learn "
                            "(give rating_range if the scale is wider)")
        run.start(s, data=source, data_sha256=self.identity(data),
                  test=source_name(test) if test is not None else None, plan={"rating_range": [lo, hi]})
        if run.resuming and "rating_range" in run.plan:
            lo, hi = run.plan["rating_range"]
        extra = [c for c in columns["others"] if c != columns.get("label")]
        if extra:
            notes.append(f"column(s) {', '.join(map(repr, extra))} not used: side features are not model inputs yet")
        uidx = {u: k + 1 for k, u in enumerate(users)}
        iidx = {u: k + 1 for k, u in enumerate(items)}

        def tensors(f: pd.DataFrame) -> tuple[torch.Tensor, ...]:
            return (torch.from_numpy(np.array(f["user"].map(uidx).fillna(0), dtype=np.int64)),
                    torch.from_numpy(np.array(f["item"].map(iidx).fillna(0), dtype=np.int64)),
                    torch.from_numpy(np.array(f["rating"], dtype=np.float32)))

        train_t = tensors(fit_frame)
        valid_t = tensors(valid_frame)
        u_np, i_np, y_np = (t.numpy() for t in train_t)
        seed_everything(s.seed)
        model = CollabModel(len(users), len(items), dim=s.dim, y_range=(lo, hi), margin=s.margin,
                            mlp_width=s.mlp_width, implicit=s.implicit, rank_dim=s.rank_dim, n_seen=len(u_np))
        mu, b_user, b_item = fit_biases(u_np, i_np, y_np.astype(np.float64), len(users), len(items),
                                        reg_user=s.bias_reg, reg_item=s.bias_reg)
        model.set_prior(mu, b_user, b_item)
        model.set_training_data(u_np, i_np, reg_power=s.reg_power)
        model.init_rank_bias(i_np)
        if s.mlp_width:
            model.mlp_share.fill_(0.5)  # early stopping watches the even blend; the share is chosen after
        history, stop, limit = self._fit(model, train_t, valid_t, run)

        def predictor_of(m: CollabModel) -> RecommendPredictor:
            return RecommendPredictor(m, columns={k: columns[k] for k in ("user", "item", "target", "time")},
                                      users=users, items=items)

        if s.mlp_width:
            share, by_share = self._choose_share(model, valid_t)
            notes.append(f"MLP branch: {share:g} of the rating, chosen on the validation rows (RMSE "
                         f"{by_share[share]:.4f}; the dot product alone {by_share[0.0]:.4f}, the MLP alone "
                         f"{by_share[1.0]:.4f})")
        model.eval()
        valid_metrics = self._evaluate(predictor_of(model), valid_frame, "valid")
        # The items each user rated among all the training rows (the validation rows too): what
        # recommend leaves out, and the implicit part's N(u) from now on (SVD++ uses every known item).
        all_t = tensors(train_frame)
        model.set_training_data(all_t[0].numpy(), all_t[1].numpy(), reg_power=s.reg_power)
        label_list = [label_of.get(i, "") for i in items] if label_of is not None else None
        info = {
            "source": source, "rows": int(len(frame)), "users": len(users), "items": len(items),
            "train_rows": int(len(fit_frame)), "valid_rows": int(len(valid_frame)),
            "test_rows": int(len(test_frame)) if test_frame is not None else 0,
            "split": "per-user time (each user's latest ratings held out)" if by_time else "random rows",
            "rating_range": [lo, hi], "global_mean": mu, "epochs": len(history), "best_epoch": stop.best_epoch,
            "stopped_by_time_limit": bool(limit and limit.stopped), "fit_seconds": round(run.elapsed(), 2),
            "notes": notes,
        }
        predictor = RecommendPredictor(model, columns={k: columns[k] for k in ("user", "item", "target", "time")},
                                       users=users, items=items, item_labels=label_list, info=info)
        predictor.metrics = {**valid_metrics, **self._evaluate(predictor, test_frame, "test")}
        from deepfit.tasks.recommend.report import recommend_report

        eval_frame = test_frame if test_frame is not None else valid_frame
        run.report = lambda path, p: recommend_report(path, p, history=history, fit_frame=fit_frame,
                                                      eval_frame=eval_frame)
        return predictor

    # ------------------------------------------------------------------ data

    def _splits(self, frame: pd.DataFrame, test: Any, columns: dict[str, Any], source: str
                ) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame, pd.DataFrame]:
        """(training rows, test rows or None, the rows the model fits, the validation rows): the
        test rows are ``test`` when given, else held out (each user's latest with a time column)."""
        s = self.settings
        by_time = s.time is not None
        if test is not None:
            test_frame, _, _ = self._read(test, source_name(test), [], columns=columns)
            train_frame = frame
        else:
            keep, held = split_rows(frame, s.test_size, by_time=by_time, seed=s.seed)
            train_frame, test_frame = frame.iloc[keep].reset_index(drop=True), frame.iloc[held].reset_index(drop=True)
            if not len(held):
                test_frame = None
        fit_rows, valid_rows = split_rows(train_frame, s.valid_size, by_time=by_time, seed=s.seed + 1)
        if not len(valid_rows):
            raise DataError(f"{source}: too few ratings to hold out validation rows ({len(train_frame)} rows)")
        return (train_frame, test_frame, train_frame.iloc[fit_rows].reset_index(drop=True),
                train_frame.iloc[valid_rows].reset_index(drop=True))

    def _read(self, data: Any, source: str, notes: list[str], *, columns: dict[str, Any] | None = None
              ) -> tuple[pd.DataFrame, dict[str, str] | None, dict[str, Any]]:
        """(the cleaned ratings, item id -> label or None, the column names found)."""
        s = self.settings
        df = read_table(data)
        if len(df) == 0:
            raise DataError(f"{source} has no rows")
        found = {"user": find_column(df, s.user, role="user id", source=source),
                 "item": find_column(df, s.item, role="item id", source=source),
                 "target": find_column(df, s.target, role="rating", source=source),
                 "time": find_column(df, s.time, role="time", source=source) if s.time is not None else None}
        label = s.item_label
        if label is not None:
            label = find_column(df, label, role="item label", source=source)
        elif columns is None:
            label = next((c for c in df.columns if str(c).strip().lower() in LABEL_COLUMNS), None)
        found["label"] = label
        found["others"] = [c for c in df.columns if c not in {found[k] for k in ("user", "item", "target", "time")}]
        frame = clean_ratings(df, user=found["user"], item=found["item"], target=found["target"], time=found["time"],
                              rating_range=s.rating_range, source=source, notes=notes)
        labels = None
        if label is not None and columns is None:
            named = pd.DataFrame({"item": as_ids(df[found["item"]]), "label": df[label].astype(str)}).dropna()
            labels = dict(zip(named["item"], named["label"]))
        return frame, labels, columns or found

    # ------------------------------------------------------------------ training

    def _fit(self, model: CollabModel, train_t: tuple[torch.Tensor, ...], valid_t: tuple[torch.Tensor, ...],
             run: Run) -> tuple[list[dict], EarlyStopping, TimeLimit | None]:
        s = self.settings
        stop = EarlyStopping("valid_rmse", patience=s.patience, restore_best=True)
        limit = TimeLimit(max(s.time_limit * 0.95 - run.elapsed(), 0.05 * s.time_limit)) if s.time_limit else None
        callbacks: list[Any] = [stop] + ([limit] if limit is not None else [])
        if run.work is not None:
            callbacks.append(CSVLogger(run.work / "history.csv"))
        learner = Learner(model, train_t, valid_t,
                          loss=partial(collab_loss, reg=s.reg, rank_weight=s.rank_weight if s.rank_dim else 0.0,
                                       mlp=bool(s.mlp_width)),
                          metrics=["rmse"], lr=s.lr, weight_decay=s.weight_decay,
                          batch_size=min(s.batch_size, len(train_t[0])), precision="32", compile=False,
                          seed=s.seed, progress=self.progress, out_dir=run.work,
                          checkpoint_every=s.checkpoint_every, callbacks=callbacks)
        history = learner.fit(s.max_epochs, resume=run.resume_from())
        model.eval()
        return history, stop, limit

    @staticmethod
    @torch.no_grad()
    def _choose_share(model: CollabModel, valid_t: tuple[torch.Tensor, ...]) -> tuple[float, dict[float, float]]:
        """The MLP branch's share of the rating with the lowest validation RMSE (set on the model)."""
        model.eval()
        dot, mlp = model.branches(valid_t[0], valid_t[1])
        y = valid_t[2].double()
        by_share = {a: float(((1 - a) * dot.double() + a * mlp.double() - y).pow(2).mean().sqrt()) for a in SHARES}
        share = min(by_share, key=by_share.__getitem__)
        model.mlp_share.fill_(share)
        return share, by_share

    # ------------------------------------------------------------------ evaluation

    @staticmethod
    def _evaluate(predictor: RecommendPredictor, frame: pd.DataFrame | None, name: str) -> dict[str, float]:
        """``name``-prefixed RMSE, MAE, fallback share, recall@10 and NDCG@10 on ``frame`` (cleaned rows)."""
        if frame is None or not len(frame):
            return {}
        users, items = predictor.user_index(frame["user"]), predictor.item_index(frame["item"])
        pred, fallback = predictor.rate(users, items)
        err = pred - frame["rating"].to_numpy(np.float64)
        metrics = {f"{name}_rmse": float(np.sqrt(np.mean(err ** 2))), f"{name}_mae": float(np.mean(np.abs(err))),
                   f"{name}_fallback_share": float(np.mean(fallback != ""))}
        metrics.update({f"{name}_{k}": v for k, v in predictor.ranking_metrics(users, items).items()})
        return {k: v for k, v in metrics.items() if math.isfinite(v)}

def fit_recommend(data: Any, settings: RecommendSettings, *, test: Any = None, out: str | os.PathLike | None = None,
                  resume: bool = False, progress: bool = True) -> RecommendPredictor:
    """Train a recommender on a ratings table (see the module docstring)."""
    return fit("recommend", data, settings, test=test, out=out, resume=resume, progress=progress)  # type: ignore[return-value]

