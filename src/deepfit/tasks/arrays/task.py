"""The arrays task: train on a dataset bundled with deepfit (``deepfit train digits``, ``mnist1d``).

The model depends on the data: ``digits`` trains an MLP; ``mnist1d`` (signals) a 1-D ResNet
(``deepfit.models.conv1d``) with shift/scale/noise augmentation, label smoothing 0.1 and AdamW
with weight decay 0.05 and one-cycle to 1e-2 for 18 epochs, tuned with ``bench/mnist1d.py``
(~99% test accuracy, ~25 s of training at one thread on a quiet CPU). Settings left unset take
that dataset's defaults (``DEFAULTS``). The run directory is a model like every other
(``deepfit predict`` / ``evaluate``), and keeps ``last.ckpt`` and ``best.ckpt``. Under
``torchrun`` each rank trains on its share of every batch (DDP) and rank 0 writes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfit.errors import ConfigError
from deepfit.tasks.arrays.predictor import ArraysPredictor
from deepfit.tasks.arrays.settings import ArraysSettings
from deepfit.tasks.base import BasePredictor, Task
from deepfit.tasks.runner import Run

__all__ = ["ArraysTask"]


class ArraysTask(Task):
    """Classification of fixed-shape arrays from a bundled dataset (``deepfit.datasets``)."""

    kind = "arrays"
    Settings = ArraysSettings
    Predictor = ArraysPredictor
    distributed = True
    describe = "the name of a bundled dataset (deepfit datasets)"

    @classmethod
    def accepts(cls, data: Any, hints: dict[str, Any]) -> bool:
        from deepfit import datasets

        return (isinstance(data, str) and data in datasets.names() and not Path(data).exists()
                and hints.get("task") in (None, "auto", "classify"))

    @classmethod
    def settings_from_cli(cls, args: argparse.Namespace, given: dict[str, Any]) -> dict[str, Any]:
        allowed = {"epochs", "batch_size", "lr", "seed", "checkpoint_every"}
        extra = sorted(set(given) - allowed)
        if extra:
            raise ConfigError(f"--{extra[0].replace('_', '-')} does not apply to a bundled dataset "
                              f"(it takes {', '.join('--' + a.replace('_', '-') for a in sorted(allowed))})")
        return {"data": args.data, **given}

    @staticmethod
    def default_out(data: Any) -> str:
        return f"runs/{data}"

    def identity(self, data: Any) -> str | None:
        return None

    def train(self, data: Any, run: Run, *, test: Any = None) -> BasePredictor:
        from deepfit import datasets

        s = self.settings
        if isinstance(data, str) and data != s.data:
            raise ConfigError(f"the settings are for dataset {s.data!r}, the data is {data!r}")
        if test is not None:
            raise ConfigError("a bundled dataset comes with its own test split; drop test=")
        bundle = datasets.load(s.data)
        if bundle.task != "classify":
            raise ConfigError(f"dataset {s.data!r} is a {bundle.task} task; only classification is wired here")
        run.start(s, data=s.data, data_sha256=None)
        # Validation carve-out from the training rows, fixed by the seed.
        order = np.random.default_rng(s.seed).permutation(len(bundle.x_train))
        n_valid = int(round(s.valid_size * len(order)))
        valid_idx, train_idx = order[:n_valid], order[n_valid:]
        x_tr, y_tr = self._xy(bundle.x_train[train_idx], bundle.y_train[train_idx])
        x_va, y_va = self._xy(bundle.x_train[valid_idx], bundle.y_train[valid_idx])
        predictor, history, train_s = self._fit(bundle, (x_tr, y_tr), (x_va, y_va) if n_valid else None, run)
        summary = {"dataset": s.data, "description": bundle.description, "train rows": len(train_idx),
                   "valid rows": n_valid, "test rows": len(bundle.x_test), "model": s.model, "epochs": s.epochs,
                   "train seconds (this process)": round(train_s, 2)}
        predictor.info = {"source": s.data, "train_rows": int(len(train_idx)), "valid_rows": n_valid,
                          "test_rows": int(len(bundle.x_test)), "epochs": s.epochs, "train_seconds": round(train_s, 2)}

        def report(path: Path, p: BasePredictor) -> None:
            from deepfit.report import write_report

            write_report(path, title=f"deepfit: {s.data}", summary=summary, metrics=p.metrics, history=history)

        run.report = report
        run.keep = ("last.ckpt", "best.ckpt")
        return predictor

    def _xy(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Signals keep their shape, (N, L) or (N, C, L); everything else is flattened for the MLP."""
        xt = torch.from_numpy(x)
        return (xt if self.settings.model == "resnet1d" else xt.reshape(len(x), -1)), torch.from_numpy(y)

    def _model(self, x_tr: torch.Tensor, n_classes: int) -> tuple[torch.nn.Module, dict[str, Any]]:
        """The network for the data (seeded by the caller) and its artifact config."""
        from deepfit.models.conv1d import ResNet1d
        from deepfit.models.mlp import MLP

        s = self.settings
        if s.model == "resnet1d":
            channels = 1 if x_tr.dim() == 2 else x_tr.shape[1]
            per_channel = x_tr.reshape(len(x_tr), channels, -1).transpose(0, 1).reshape(channels, -1)  # (C, N*L)
            model = ResNet1d(channels, n_classes, mean=per_channel.mean(1), std=per_channel.std(1))
            config = {"in_channels": channels, "out_features": n_classes, "widths": [64, 64, 128],
                      "strides": [1, 2, 2], "stem_kernel": 5}
            return model, config
        model = MLP(x_tr.shape[1], n_classes, hidden=s.hidden, dropout=s.dropout, mean=x_tr.mean(0), std=x_tr.std(0))
        return model, {"in_features": int(x_tr.shape[1]), "out_features": n_classes, "hidden": list(s.hidden),
                       "dropout": s.dropout}

    def _fit(self, bundle: Any, train: tuple[torch.Tensor, torch.Tensor],
             valid: tuple[torch.Tensor, torch.Tensor] | None, run: Run) -> tuple[ArraysPredictor, list[dict], float]:
        from deepfit.augment import Augmented, SignalAugment
        from deepfit.engine.callbacks import CSVLogger
        from deepfit.engine.learner import Learner
        from deepfit.engine.rng import seed_everything

        s = self.settings
        seed_everything(s.seed)
        bare, config = self._model(train[0], len(bundle.classes))  # what model.safetensors holds
        model = Augmented(bare, SignalAugment(max_shift=5, scale=(0.8, 1.2), noise=0.05)) if s.augment else bare
        callbacks = [CSVLogger(run.work / "history.csv")] if run.work is not None else []
        learner = Learner(model, train, valid, metrics=["accuracy"], lr=s.lr, weight_decay=s.weight_decay,
                          label_smoothing=s.label_smoothing, batch_size=s.batch_size, seed=s.seed,
                          progress=self.progress, out_dir=run.work, checkpoint_every=s.checkpoint_every,
                          callbacks=callbacks)
        t0 = time.perf_counter()
        history = learner.fit_one_cycle(s.epochs, s.lr, resume=run.resume_from())
        train_s = time.perf_counter() - t0
        test = learner.validate(self._xy(bundle.x_test, bundle.y_test))
        predictor = ArraysPredictor(model=bare, name=s.model, config=config, classes=list(bundle.classes),
                                    input_shape=list(bundle.x_train.shape[1:]), data=s.data,
                                    metrics={f"test_{k}": v for k, v in test.items()})
        return predictor, history, train_s
