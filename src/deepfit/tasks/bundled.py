"""Train a model on a bundled dataset (``deepfit.datasets``) into a run directory.

The run directory holds ``run.json`` (settings), ``model.safetensors`` (final weights),
``metrics.json`` (test metrics), ``history.csv``, ``report.html``, ``last.ckpt`` and ``best.ckpt``. It is
built in ``<out>.incomplete/`` and renamed into place when complete (see ``deepfit.rundir``);
``resume=True`` continues an interrupted run with the settings it started with.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deepfit.errors import ConfigError
from deepfit.rundir import RunDir

__all__ = ["RunSettings", "train_bundled"]


@dataclass(frozen=True)
class RunSettings:
    data: str = "digits"
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    hidden: tuple[int, ...] = (256, 256)
    dropout: float = 0.1
    seed: int = 0
    valid_fraction: float = 0.1
    checkpoint_every: int | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunSettings:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "hidden" in known:
            known["hidden"] = tuple(known["hidden"])
        return cls(**known)


def train_bundled(settings: RunSettings, out: str | Path, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train an MLP on ``settings.data``; returns the test metrics.

    With ``resume=True`` and an interrupted run in ``out``, training continues from
    ``out/last.ckpt`` with the stored settings and ends with the weights an uninterrupted run
    would have had.
    """
    import numpy as np
    import safetensors.torch
    import torch

    from deepfit import datasets
    from deepfit.engine.callbacks import CSVLogger
    from deepfit.engine.checkpoint import atomic_write_bytes
    from deepfit.engine.learner import Learner
    from deepfit.engine.rng import seed_everything
    from deepfit.models.mlp import MLP
    from deepfit.report import write_report

    run = RunDir(out)
    if resume:
        settings = RunSettings.from_json(run.stored())
        if run.complete:
            return json.loads((run.final / "metrics.json").read_text(encoding="utf-8"))
    else:
        run.check_new()
    work = run.work

    data = datasets.load(settings.data)
    if data.task != "classify":
        raise ConfigError(f"dataset {settings.data!r} is a {data.task} task; only classification is wired here")
    if not resume:
        run.start(settings.to_json())
    # Validation carve-out from the training rows, fixed by the seed.
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(len(data.x_train))
    n_valid = int(round(settings.valid_fraction * len(order)))
    valid_idx, train_idx = order[:n_valid], order[n_valid:]
    x_tr = torch.from_numpy(data.x_train[train_idx]).reshape(len(train_idx), -1)
    y_tr = torch.from_numpy(data.y_train[train_idx])
    x_va = torch.from_numpy(data.x_train[valid_idx]).reshape(len(valid_idx), -1)
    y_va = torch.from_numpy(data.y_train[valid_idx])

    seed_everything(settings.seed)
    model = MLP(
        x_tr.shape[1],
        len(data.classes),
        hidden=settings.hidden,
        dropout=settings.dropout,
        mean=x_tr.mean(0),
        std=x_tr.std(0),
    )
    learner = Learner(
        model,
        (x_tr, y_tr),
        (x_va, y_va) if n_valid else None,
        metrics=["accuracy"],
        lr=settings.lr,
        batch_size=settings.batch_size,
        seed=settings.seed,
        progress=progress,
        out_dir=work,
        checkpoint_every=settings.checkpoint_every,
        callbacks=[CSVLogger(work / "history.csv")],
    )
    last = work / "last.ckpt"
    t0 = time.perf_counter()
    history = learner.fit_one_cycle(settings.epochs, settings.lr, resume=last if resume and last.exists() else None)
    train_time = time.perf_counter() - t0

    test = learner.validate((torch.from_numpy(data.x_test).reshape(len(data.x_test), -1), torch.from_numpy(data.y_test)))
    metrics = {f"test_{k}": v for k, v in test.items()}
    weights = {k: v.detach().cpu().contiguous() for k, v in learner.model.state_dict().items()}
    atomic_write_bytes(work / "model.safetensors", safetensors.torch.save(weights, metadata={"format": "pt"}))
    write_report(
        work / "report.html",
        title=f"deepfit: {settings.data}",
        summary={"dataset": settings.data, "description": data.description, "train rows": len(train_idx),
                 "valid rows": n_valid, "test rows": len(data.x_test), "epochs": settings.epochs,
                 "train seconds (this process)": round(train_time, 2)},
        metrics=metrics,
        history=history,
    )
    run.write_json("metrics.json", metrics)
    run.finish(keep=("last.ckpt", "best.ckpt"))
    return metrics
