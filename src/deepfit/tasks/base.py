"""The shape every task has: a :class:`Task` (data in, trained predictor out) and a :class:`BasePredictor`.

A task is registered under its artifact ``kind`` ("table", "image", "lm", "arrays") the way
``features/base.py`` registers column types: defining a subclass with a ``kind`` adds it to
:data:`TASKS`. The runner (``tasks/runner.py``) owns what every task needs — the run
directory and resume, the torchrun policy, ``run.json``, the artifact, ``metrics.json`` and
the report — and calls the task's :meth:`Task.train` in between. ``deepfit.tasks.route``
decides which task some data belongs to; ``deepfit.load`` which predictor reads an artifact.

A predictor holds a trained model with everything needed to use it on raw data. The base
class writes and reads the artifact once for all kinds: ``files`` / ``save`` / ``load``
(validate ``deepfit.json`` → check the kind, task and model name → build the model from the
JSON, turning any inconsistency into an :class:`~deepfit.artifact.ArtifactError` → read the
weights, checking every tensor's name and shape). Each kind adds its own JSON fields
(``_meta`` / ``_from_meta``) and what it predicts.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from deepfit.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    import argparse

    import torch

    from deepfit.tasks.runner import Run
    from deepfit.tasks.settings import TaskSettings

__all__ = ["Task", "BasePredictor", "TASKS", "finite_metrics"]

TASKS: dict[str, type[Task]] = {}  # kind -> Task class, filled as the task modules are imported


def finite_metrics(metrics: dict[str, Any]) -> dict[str, float | None]:
    """Metrics as JSON: floats, and ``None`` for NaN/inf (JSON has neither)."""
    return {k: (float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None) for k, v in metrics.items()}


class BasePredictor(ABC):
    """A trained model that predicts on raw data; see the module docstring.

    Subclasses set ``kind``, ``tasks`` (the ``task`` values it may hold), ``model_names`` and
    ``required`` (its own ``deepfit.json`` fields and their JSON types), and write ``_meta``,
    ``_from_meta``, ``evaluate`` and ``predict_frame``.
    """

    kind: ClassVar[str]
    tasks: ClassVar[tuple[str, ...]]
    model_names: ClassVar[tuple[str, ...]]
    required: ClassVar[dict[str, type | tuple[type, ...]]] = {}

    task: str
    model: torch.nn.Module
    metrics: dict[str, float]
    info: dict[str, Any]

    # ------------------------------------------------------------------ what each kind writes

    @property
    @abstractmethod
    def model_name(self) -> str:
        """The ``model.name`` written to ``deepfit.json`` (one of ``model_names``)."""

    @abstractmethod
    def _meta(self) -> dict[str, Any]:
        """This kind's own ``deepfit.json`` fields (besides kind, task, model, metrics, info)."""

    def _model_config(self) -> dict[str, Any]:
        return self.model.config()  # type: ignore[operator]

    @classmethod
    @abstractmethod
    def _from_meta(cls, meta: dict[str, Any], directory: Path) -> Self:
        """A predictor whose model is built from ``meta`` (weights not loaded yet)."""

    @abstractmethod
    def evaluate(self, data: Any, *, source: str = "rows") -> dict[str, float]:
        """Metrics on labelled data."""

    def predict_frame(self, data: Any, *, source: str = "rows") -> Any:
        """What ``deepfit predict`` writes: one row per input (a pandas DataFrame)."""
        raise DataError(f"a {self.kind} model does not predict table rows")

    # ------------------------------------------------------------------ the artifact, once

    def files(self) -> dict[str, bytes]:
        """The artifact's files as bytes (``deepfit.json``, ``model.safetensors``)."""
        from deepfit.artifact import artifact_files

        meta = {"kind": self.kind, "task": self.task, **self._meta(),
                "model": {"name": self.model_name, "config": self._model_config()},
                "metrics": finite_metrics(self.metrics), "info": self.info}
        return artifact_files(meta, self.model.state_dict())

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the artifact to a new directory (it appears complete or not at all)."""
        from deepfit.artifact import write_artifact

        return write_artifact(directory, self.files())

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Self:
        """Load an artifact written by :meth:`save`; validates the JSON before reading any weights."""
        from deepfit.artifact import ArtifactError, read_meta, read_weights, require_fields

        directory = Path(directory)
        meta = read_meta(directory)
        if meta["kind"] != cls.kind:
            raise ArtifactError(f"{directory} holds a {meta['kind']} model, not a {cls.kind} model; "
                                "load it with deepfit.load(), which picks the right kind")
        require_fields(meta, cls.required, directory)
        if meta["task"] not in cls.tasks:
            raise ArtifactError(f"{directory}: a {cls.kind} model must have task {' or '.join(cls.tasks)}, "
                                f"not {meta['task']!r}")
        if meta["model"]["name"] not in cls.model_names:
            raise ArtifactError(f"{directory}: unknown model {meta['model']['name']!r} "
                                f"(this deepfit knows {', '.join(map(repr, cls.model_names))})")
        try:
            predictor = cls._from_meta(meta, directory)
        except (TypeError, ValueError, KeyError, AttributeError, ConfigError, DataError) as e:
            raise ArtifactError(f"{directory / 'deepfit.json'} is inconsistent: {type(e).__name__}: {e}") from e
        model = predictor.model
        model.load_state_dict(read_weights(directory, {k: v.shape for k, v in model.state_dict().items()}))
        model.eval()
        return predictor

    @staticmethod
    def _stored_metrics(meta: dict[str, Any]) -> dict[str, float]:
        return {k: float(v) for k, v in meta["metrics"].items() if isinstance(v, (int, float))}


class Task(ABC):
    """One kind of job: which data it takes, its settings, how it trains, its predictor.

    Subclasses set ``kind`` (the artifact kind; registers the class in :data:`TASKS`),
    ``Settings`` (a :class:`~deepfit.tasks.settings.TaskSettings` subclass), ``Predictor``
    and ``distributed`` (True when it runs under ``torchrun``), and write :meth:`accepts`,
    :meth:`settings_from_cli` and :meth:`train`. ``describe`` says in one line what data the
    task takes (shown when no task accepts some data).
    """

    kind: ClassVar[str]
    Settings: ClassVar[type[TaskSettings]]
    Predictor: ClassVar[type[BasePredictor]]
    distributed: ClassVar[bool] = False
    describe: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            TASKS[cls.kind] = cls

    def __init__(self, settings: TaskSettings, *, progress: bool = True) -> None:
        self.settings = settings
        self.progress = progress

    @classmethod
    @abstractmethod
    def accepts(cls, data: Any, hints: dict[str, Any]) -> bool:
        """Whether this task trains on ``data``; ``hints`` holds what the user said
        (``task``, ``target``, ``types``). Cheap: no full read where it can be avoided."""

    @classmethod
    @abstractmethod
    def settings_from_cli(cls, args: argparse.Namespace, given: dict[str, Any]) -> dict[str, Any]:
        """The settings fields chosen by the ``deepfit train`` flags in ``given`` (flag name →
        value, only flags given), renamed and checked for this task; ``ConfigError`` for a flag
        that does not apply."""

    @staticmethod
    def default_out(data: Any) -> str:
        """The run directory when ``--out`` is not given."""
        return f"runs/{Path(os.path.abspath(str(data))).stem or 'run'}"

    def identity(self, data: Any) -> str | None:
        """A fingerprint of the training data, checked when a run resumes (None: not checked)."""
        from deepfit.tasks.runner import file_sha256

        return file_sha256(data)

    @abstractmethod
    def train(self, data: Any, run: Run, *, test: Any = None) -> BasePredictor:
        """Read ``data``, train, evaluate, and return the predictor (metrics set).

        Calls ``run.start(...)`` once the inputs are checked (only then does a run folder
        appear), trains with ``run.work`` as the Learner's ``out_dir`` and ``run.resume_from()``
        as its checkpoint, and sets ``run.report`` to write the report. The runner writes the
        artifact, ``metrics.json`` and the report, and renames the folder into place.
        """

    @staticmethod
    def summary_line(predictor: BasePredictor) -> str:
        """The line ``deepfit train`` prints at the end."""
        shown = {k: v for k, v in predictor.metrics.items() if k.startswith("test_")} or predictor.metrics
        return " ".join(f"{k}={v:.4f}" for k, v in shown.items())
