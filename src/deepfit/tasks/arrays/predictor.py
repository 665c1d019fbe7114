"""The predictor of the arrays task: a classifier of fixed-shape numeric arrays (digits, signals).

Inputs it takes (``predict_frame`` / ``evaluate``): the name of the bundled dataset it was
trained on (its test split), a ``.npy`` file of inputs, a ``.npz`` file with arrays ``x``
(and ``y`` to evaluate), a NumPy array, or a table (CSV/Parquet/DataFrame) whose numeric
columns are the flattened inputs, with a ``label`` column to evaluate.

Example:
    >>> import deepfit                                    # doctest: +SKIP
    >>> model = deepfit.load("runs/digits")               # doctest: +SKIP
    >>> model.evaluate("digits")["accuracy"]              # doctest: +SKIP
    0.97
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch

from deepfit.errors import DataError
from deepfit.tasks.base import BasePredictor

__all__ = ["ArraysPredictor", "build_model", "is_legacy_run", "load_legacy_run"]

BATCH = 1024
LABEL_COLUMNS = ("label", "y", "target")


def build_model(name: str, config: dict[str, Any]) -> torch.nn.Module:
    """The network named in ``deepfit.json`` from its config (buffers and weights come from the file)."""
    from deepfit.models.conv1d import ResNet1d
    from deepfit.models.mlp import MLP

    if name == "resnet1d":
        return ResNet1d(int(config["in_channels"]), int(config["out_features"]), widths=tuple(config["widths"]),
                        strides=tuple(config["strides"]), stem_kernel=int(config["stem_kernel"]))
    return MLP(int(config["in_features"]), int(config["out_features"]), hidden=tuple(config["hidden"]),
               dropout=float(config["dropout"]))


class ArraysPredictor(BasePredictor):
    """A trained classifier of numeric arrays, with its class names and input shape."""

    kind = "arrays"
    tasks = ("classify",)
    model_names = ("mlp", "resnet1d")
    required = {"classes": list, "input_shape": list, "data": str}

    def __init__(self, *, model: torch.nn.Module, name: str, config: dict[str, Any], classes: list[str],
                 input_shape: list[int], data: str, metrics: dict[str, float] | None = None,
                 info: dict[str, Any] | None = None) -> None:
        self.task = "classify"
        self.model = model.eval()
        self._name, self.config = name, dict(config)
        self.classes, self.input_shape, self.data = list(classes), [int(s) for s in input_shape], data
        self.metrics: dict[str, float] = dict(metrics or {})
        self.info: dict[str, Any] = dict(info or {})

    @property
    def model_name(self) -> str:
        return self._name

    def _meta(self) -> dict[str, Any]:
        return {"classes": self.classes, "input_shape": self.input_shape, "data": self.data}

    def _model_config(self) -> dict[str, Any]:
        return self.config

    @classmethod
    def _from_meta(cls, meta: dict[str, Any], directory: Path) -> Self:
        config = meta["model"]["config"]
        return cls(model=build_model(meta["model"]["name"], config), name=meta["model"]["name"], config=config,
                   classes=[str(c) for c in meta["classes"]], input_shape=meta["input_shape"], data=meta["data"],
                   metrics=cls._stored_metrics(meta), info=meta.get("info", {}))

    # ------------------------------------------------------------------ reading inputs

    def _arrays(self, data: Any, source: str, *, labels: bool) -> tuple[np.ndarray, np.ndarray | None, str]:
        """(x, y or None, where) from any of the inputs in the module docstring."""
        from deepfit import datasets

        if isinstance(data, str) and data in datasets.names() and not Path(data).exists():
            d = datasets.load(data)
            return d.x_test, d.y_test, f"the test split of {data}"
        if isinstance(data, np.ndarray):
            return data, None, source
        if isinstance(data, (str, os.PathLike)) and str(data).endswith((".npy", ".npz")):
            path = Path(data)
            if not path.is_file():
                raise DataError(f"{path} does not exist")
            try:
                loaded = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise DataError(f"{path} is not a readable NumPy file: {e}") from e
            if isinstance(loaded, np.ndarray):
                return loaded, None, str(path)
            with loaded:
                if "x" not in loaded:
                    raise DataError(f"{path} holds arrays {sorted(loaded.files)}; name the inputs 'x' (and labels 'y')")
                return loaded["x"], (loaded["y"] if "y" in loaded else None), str(path)
        from deepfit.data.sources import read_table

        frame = read_table(data)
        where = str(data) if isinstance(data, (str, os.PathLike)) else source
        label = next((c for c in LABEL_COLUMNS if c in frame.columns), None)
        y = frame[label].to_numpy() if label is not None else None
        x = frame.drop(columns=[label]) if label is not None else frame
        try:
            return x.to_numpy(dtype=np.float32), y, where
        except (TypeError, ValueError) as e:
            raise DataError(f"{where}: every input column must be numeric for this {self.model_name} model: {e}") from e

    def _inputs(self, x: np.ndarray, where: str) -> torch.Tensor:
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise DataError(f"{where}: inputs must be numbers, got dtype {x.dtype}")
        width = int(np.prod(self.input_shape))
        if x.ndim < 1 or len(x) == 0:
            raise DataError(f"{where} has no rows to predict")
        if int(np.prod(x.shape[1:])) != width:
            raise DataError(f"{where}: each input has shape {tuple(x.shape[1:])}, the model takes "
                            f"{tuple(self.input_shape)} ({width} numbers)")
        if not np.isfinite(x).all():
            raise DataError(f"{where} holds NaN or infinite values; this model needs finite numbers")
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(len(x), *self.input_shape)

    def _proba(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return torch.cat([torch.softmax(self.model(x[i:i + BATCH]).float(), dim=1)
                              for i in range(0, len(x), BATCH)])

    def _codes(self, y: np.ndarray, where: str) -> torch.Tensor:
        names = {c: i for i, c in enumerate(self.classes)}
        labels = [str(v) for v in y.tolist()]
        bad = sorted({v for v in labels if v not in names})
        if bad:
            raise DataError(f"{where}: label(s) {bad[:5]} are not among the model's classes {self.classes}")
        return torch.tensor([names[v] for v in labels])

    # ------------------------------------------------------------------ public API

    def predict_proba(self, data: Any, *, source: str = "rows") -> np.ndarray:
        """Class probabilities, ``(N, classes)``, in the order of :attr:`classes`."""
        x, _, where = self._arrays(data, source, labels=False)
        return self._proba(self._inputs(x, where)).numpy()

    def predict(self, data: Any, *, source: str = "rows") -> np.ndarray:
        """Predicted class names."""
        return np.asarray(self.classes, dtype=object)[self.predict_proba(data, source=source).argmax(1)]

    def predict_frame(self, data: Any, *, source: str = "rows") -> Any:
        """What ``deepfit predict`` writes: ``prediction`` and ``proba_<class>`` columns."""
        import pandas as pd

        probs = self.predict_proba(data, source=source)
        frame = pd.DataFrame({"prediction": np.asarray(self.classes, dtype=object)[probs.argmax(1)]})
        for j, c in enumerate(self.classes):
            frame[f"proba_{c}"] = probs[:, j]
        return frame

    def evaluate(self, data: Any, *, source: str = "rows") -> dict[str, float]:
        """accuracy, f1, auroc and log_loss on labelled arrays (the dataset's name: its test split)."""
        from deepfit.metrics import classification_metrics

        x, y, where = self._arrays(data, source, labels=True)
        if y is None:
            raise DataError(f"{where} has no labels: pass a .npz with 'x' and 'y', a table with a "
                            f"'label' column, or the dataset name ({self.data})")
        return classification_metrics(self._proba(self._inputs(x, where)), self._codes(y, where))

    def __repr__(self) -> str:
        return (f"ArraysPredictor(model={self.model_name!r}, input_shape={tuple(self.input_shape)}, "
                f"classes={len(self.classes)}, metrics={self.metrics})")


# --------------------------------------------------------------------------- run directories from before artifacts


def is_legacy_run(directory: str | os.PathLike) -> bool:
    """A bundled-dataset run directory written before it held a ``deepfit.json`` (deepfit <= cd228c3):
    ``run.json`` with the settings at its top level, and ``model.safetensors``."""
    import json

    path = Path(directory)
    try:
        stored = json.loads((path / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(stored, dict) and "settings" not in stored and "version" not in stored
            and isinstance(stored.get("data"), str) and (path / "model.safetensors").exists())


def load_legacy_run(directory: str | os.PathLike) -> ArraysPredictor:
    """Load such a run (migration ``arrays_run_without_artifact``): the model's config comes from
    the stored settings, the classes and input shape from the bundled dataset it names."""
    import json

    from deepfit import datasets
    from deepfit.artifact import ArtifactError, read_weights
    from deepfit.errors import ConfigError
    from deepfit.tasks.arrays.settings import ArraysSettings

    path = Path(directory)
    try:
        settings = ArraysSettings.from_json(json.loads((path / "run.json").read_text(encoding="utf-8")))
        bundle = datasets.load(settings.data)
    except (ConfigError, TypeError, ValueError) as e:
        raise ArtifactError(f"{path}/run.json does not describe a bundled-dataset run: {e}") from e
    shape = list(bundle.x_train.shape[1:])
    classes = [str(c) for c in bundle.classes]
    if settings.model == "resnet1d":
        config: dict[str, Any] = {"in_channels": 1 if len(shape) == 1 else shape[0], "out_features": len(classes),
                                  "widths": [64, 64, 128], "strides": [1, 2, 2], "stem_kernel": 5}
    else:
        config = {"in_features": int(np.prod(shape)), "out_features": len(classes), "hidden": list(settings.hidden),
                  "dropout": settings.dropout}
    metrics_path = path / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.exists() else {}
    model = build_model(settings.model, config)
    model.load_state_dict(read_weights(path, {k: v.shape for k, v in model.state_dict().items()}))
    return ArraysPredictor(model=model, name=settings.model, config=config, classes=classes, input_shape=shape,
                           data=settings.data, metrics={k: float(v) for k, v in metrics.items()
                                                        if isinstance(v, (int, float))},
                           info={"migrated_from": "a bundled-dataset run directory without deepfit.json"})
