"""The one run lifecycle every task shares: ``fit(kind, data, settings, out=..., resume=...)``.

Step by step:

1. the torchrun policy: a task that is not ``distributed`` refuses to start under torchrun;
2. the run directory (``deepfit.rundir.RunDir``): a new run needs a free ``out``; ``resume``
   reads ``run.json`` (migrated to the current layout, see :data:`RUN_VERSION`), returns the
   finished model if the run is complete, and otherwise continues with the stored settings —
   a setting given with ``resume`` that differs from the stored one is refused, naming it;
3. the task's :meth:`~deepfit.tasks.base.Task.train`, which calls :meth:`Run.start` once its
   inputs are checked (writing ``run.json``; on resume it checks the data is the same);
4. the artifact (``deepfit.json`` + ``model.safetensors``), ``metrics.json`` and
   ``report.html`` (rank 0 only), then the work folder is renamed into place.

``run.json`` (version 2)::

    {"version": 2, "kind": "table", "settings": {...}, "data": "credit.csv",
     "data_sha256": "...", "test": null, "plan": {...}}

``plan`` holds what the task decided before training that a resumed run must not decide
again (an ensemble size measured against the clock, an epoch count, a tokenizer).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepfit.errors import ConfigError
from deepfit.rundir import RunDir
from deepfit.tasks.base import TASKS, BasePredictor, Task
from deepfit.tasks.settings import TaskSettings, explicit_fields, migrate

__all__ = ["fit", "Run", "RUN_VERSION", "read_run_json", "file_sha256", "source_name", "get_task"]

RUN_VERSION = 2


def get_task(kind: str) -> type[Task]:
    """The task class registered under ``kind`` (importing only its module)."""
    import importlib

    from deepfit.tasks import TASK_MODULES

    if kind not in TASK_MODULES:
        from deepfit.errors import unknown_choice

        raise unknown_choice("task kind", kind, TASK_MODULES)
    importlib.import_module(TASK_MODULES[kind])
    return TASKS[kind]


def file_sha256(data: Any) -> str | None:
    """SHA-256 of a file's bytes (None when ``data`` is not a file path)."""
    if isinstance(data, (str, os.PathLike)) and Path(data).is_file():
        h = hashlib.sha256()
        with open(data, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    return None


def source_name(data: Any) -> str:
    """How messages and ``run.json`` name some data: its path, or its type."""
    return str(data) if isinstance(data, (str, os.PathLike)) else type(data).__name__


# --------------------------------------------------------------------------- run.json and its migrations


def _run_v1_to_v2(d: dict[str, Any], kind: str) -> dict[str, Any]:
    """run.json before it had a version (deepfit <= cd228c3): each task had its own layout.

    - table: ``{settings, data, data_sha256, test, ensemble_k, budget_bound}`` (the last two
      missing in runs from before time budgets sized the ensemble: those trained the asked
      ``k``, 16 by default, and were not budget-bound);
    - image: ``{settings, data, data_sha256, test, plan}``;
    - lm: ``{settings, data, text_sha256, tokenizer}``;
    - arrays (bundled datasets): the settings at the top level.
    The per-task keys move into ``plan``; the settings keep their own (absent = 1) version.
    """
    if kind == "arrays":
        settings = dict(d)
        return {"kind": kind, "settings": settings, "data": settings.get("data"), "data_sha256": None,
                "test": None, "plan": {}}
    out = {"kind": kind, "settings": d.get("settings"), "data": d.get("data"), "test": d.get("test"),
           "data_sha256": d.get("data_sha256", d.get("text_sha256"))}
    if kind == "table":
        # A run from before time budgets sized the ensemble trained the k it was asked for.
        settings = d.get("settings") if isinstance(d.get("settings"), dict) else {}
        out["plan"] = {"ensemble_k": d.get("ensemble_k", settings.get("k", 16)),
                       "budget_bound": d.get("budget_bound", False)}
    elif kind == "lm":
        out["plan"] = {"tokenizer": d["tokenizer"]} if "tokenizer" in d else {}
    else:
        out["plan"] = dict(d.get("plan") or {})
    return out


_RUN_KEYS = {"kind", "settings", "data", "data_sha256", "test", "plan"}


def read_run_json(d: dict[str, Any], kind: str, *, where: Any) -> dict[str, Any]:
    """A stored ``run.json`` in the current layout (migrated from older ones), checked."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}/run.json must hold a JSON object")
    d = dict(d)
    version = d.pop("version", 1)
    d = migrate(d, version=version, current=RUN_VERSION, migrations={1: lambda x: _run_v1_to_v2(x, kind)},
                what=f"{where}/run.json")
    unknown = sorted(set(d) - _RUN_KEYS)
    if unknown:
        raise ConfigError(f"{where}/run.json has unknown key(s) {', '.join(map(repr, unknown))}")
    if d.get("kind") != kind:
        raise ConfigError(f"--resume: the run in {where} is a {d.get('kind')!r} run, but this data and these "
                          f"options make a {kind!r} run; resume it with the data and --task it started with")
    if not isinstance(d.get("settings"), dict):
        raise ConfigError(f"{where}/run.json: 'settings' is missing or not an object")
    return d


# --------------------------------------------------------------------------- the run a task sees


class Run:
    """What a task's ``train`` gets from the runner: where to write, what a resumed run decided.

    Attributes:
        work: the work folder (``<out>.incomplete``), or None when nothing is written.
        resuming: True when continuing an interrupted run.
        plan: the stored plan when resuming, else ``{}``.
        t_start: ``time.perf_counter()`` when the fit began (budgets count from it).
        is_main: rank 0 (or a single process): only it writes files.
        report: set by the task: ``report(path, predictor)`` writes ``report.html``.
        keep: checkpoints to keep in the finished run directory (default: none).
    """

    def __init__(self, rundir: RunDir | None, *, kind: str, stored: dict[str, Any] | None, t_start: float,
                 is_main: bool = True) -> None:
        self.dir = rundir
        self.kind = kind
        self.stored = stored
        self.resuming = stored is not None
        self.plan: dict[str, Any] = dict(stored["plan"]) if stored else {}
        self.t_start = t_start
        self.is_main = is_main
        self.report: Callable[[Path, BasePredictor], None] | None = None
        self.keep: tuple[str, ...] = ()

    @property
    def work(self) -> Path | None:
        return self.dir.work if self.dir is not None else None

    def elapsed(self) -> float:
        return time.perf_counter() - self.t_start

    def start(self, settings: TaskSettings, *, data: str, data_sha256: str | None, test: str | None = None,
              plan: dict[str, Any] | None = None) -> None:
        """Inputs are checked: write ``run.json`` (a new run) or check the data is the one the run
        started with (a resumed run). Under torchrun every rank calls it; rank 0 writes."""
        from deepfit.engine import distributed

        if self.resuming:
            stored = self.stored or {}
            if stored.get("data_sha256") and data_sha256 and stored["data_sha256"] != data_sha256:
                raise ConfigError(f"--resume: {data} is not the data the run in {self.work} started with")
            return
        self.plan = dict(plan or {})
        distributed.barrier()  # every rank has checked `out` before rank 0 creates it
        if self.dir is not None and self.is_main:
            self.dir.start({"version": RUN_VERSION, "kind": self.kind, "settings": settings.to_json(), "data": data,
                            "data_sha256": data_sha256, "test": test, "plan": self.plan})

    def update_plan(self, **values: Any) -> None:
        """Add decisions made after training began (e.g. an epoch count from a timed probe) to ``run.json``."""
        self.plan.update(values)
        if self.dir is not None and self.is_main and self.work is not None and self.work.exists():
            stored = json.loads((self.work / "run.json").read_text(encoding="utf-8"))
            stored["plan"] = self.plan
            self.dir.write_json("run.json", stored)

    def resume_from(self) -> Path | None:
        """The checkpoint to continue from (``last.ckpt`` of an interrupted run), else None."""
        last = self.work / "last.ckpt" if self.work is not None else None
        return last if self.resuming and last is not None and last.exists() else None


# --------------------------------------------------------------------------- fit


def _refuse_conflicts(given: dict[str, Any], stored: TaskSettings, where: Any) -> None:
    """One rule for every task: a setting given with --resume must equal the stored one."""
    conflicts = []
    for name, value in given.items():
        old = getattr(stored, name, None)
        norm = tuple(value) if isinstance(value, list) else value
        if norm != old:
            conflicts.append(f"{name}={value!r} (the run has {old!r})")
    if conflicts:
        flags = ", ".join(conflicts)
        raise ConfigError(f"--resume continues the run in {where} with its stored settings; these differ: {flags}. "
                          "Drop them, or start a new run with another --out")


def fit(kind: str, data: Any, settings: TaskSettings | None = None, *, test: Any = None,
        out: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
        given: dict[str, Any] | None = None) -> BasePredictor:
    """Train the task ``kind`` on ``data``; returns its predictor (see the module docstring).

    Args:
        kind: the task ("table", "image", "lm", "arrays"); see :func:`deepfit.tasks.route`.
        data: what the task trains on.
        settings: the task's settings (default: its defaults).
        test: labelled test data (tasks that take it).
        out: run directory, built in ``<out>.incomplete/`` and renamed when complete.
        resume: continue the interrupted run in ``out`` with its stored settings.
        progress: print progress.
        given: the settings the user chose explicitly (the CLI's flags); with ``resume`` each
            must equal the stored value. Default: the fields of ``settings`` that differ from
            the defaults.
    """
    from deepfit.engine import distributed

    task_cls = get_task(kind)
    t_start = time.perf_counter()
    if not task_cls.distributed:
        distributed.single_process_only(f"training {'an' if kind[0] in 'aeiou' else 'a'} {kind} model")
    if settings is None and not resume:
        settings = task_cls.Settings()  # type: ignore[call-arg]
    ddp = distributed.setup() if task_cls.distributed else None
    rundir = RunDir(out) if out is not None else None
    stored = None
    if rundir is not None and resume:
        raw = rundir.stored()
        stored = read_run_json(raw, kind, where=rundir.work if not rundir.complete else rundir.final)
        if rundir.complete:
            return task_cls.Predictor.load(rundir.final)
        stored_settings = task_cls.Settings.from_json(stored["settings"])
        chosen = given if given is not None else (explicit_fields(settings) if settings is not None else {})
        _refuse_conflicts(chosen, stored_settings, rundir.work)
        settings = stored_settings
    elif rundir is not None:
        rundir.check_new()
    elif resume:
        raise ConfigError("resume=True needs out= (the run directory to continue)")

    run = Run(rundir, kind=kind, stored=stored, t_start=t_start, is_main=ddp.is_main if ddp else True)
    predictor = task_cls(settings, progress=progress).train(data, run, test=test)
    if rundir is not None and run.is_main:
        from deepfit.engine.checkpoint import atomic_write_bytes

        for name, blob in predictor.files().items():
            atomic_write_bytes(rundir.work / name, blob)
        rundir.write_json("metrics.json", {k: v for k, v in predictor.metrics.items()})
        if run.report is not None:
            run.report(rundir.work / "report.html", predictor)
        rundir.finish(keep=run.keep)
    return predictor


def settings_with(settings_cls: type[TaskSettings], chosen: dict[str, Any]) -> TaskSettings:
    """``settings_cls(**chosen)``, with a ConfigError naming any field the class does not have."""
    known = {f.name for f in dataclasses.fields(settings_cls)}
    unknown = sorted(set(chosen) - known)
    if unknown:
        from deepfit.errors import unknown_choice

        raise unknown_choice(f"{settings_cls.__name__} setting", unknown[0], sorted(known))
    return settings_cls(**chosen)
