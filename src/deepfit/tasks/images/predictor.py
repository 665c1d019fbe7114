"""The image task's predictor: a trained image model with its decoding, labels and table preprocessing.

``data`` for every method: a folder (class folders, or a flat folder of images), a CSV/Parquet
file or DataFrame with the image-path column (and the other input columns the model was trained
with), or a list of image paths. An unusable image at prediction time is a ``DataError`` naming
every such file: a prediction file silently shorter than its input is worse than a clear stop.

Example:
    >>> import deepfit                                          # doctest: +SKIP
    >>> model = deepfit.load("runs/photos")                     # doctest: +SKIP
    >>> model.predict(["new/1.jpg"]), model.evaluate("labelled/")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import torch

from deepfit.errors import DataError
from deepfit.tasks.base import BasePredictor
from deepfit.tasks.images.readers import predict_rows

__all__ = ["ImagePredictor", "BATCH"]

BATCH = 256  # images per forward pass when predicting


class ImagePredictor(BasePredictor):
    """A trained image classifier (single- or multi-label); see the module docstring.

    Args:
        task: ``"classify"`` or ``"multilabel"``.
        target: the fitted target (:class:`~deepfit.features.target.ClassTarget` or
            :class:`~deepfit.features.target.MultiLabelTarget`).
        feature: the fitted :class:`~deepfit.features.image.ImageFeature` (size, crop, channel statistics).
        preprocessor: the fitted table preprocessing of the other columns, or None.
        model: the :class:`~deepfit.models.multimodal.ImageTableModel`.
        metrics, info: what training measured and recorded.
        tta: average over test-time augmented views (the image, its mirror when ``flip``, 4 shifts).
        flip: the model was trained with horizontal flips.
    """

    kind = "image"
    tasks = ("classify", "multilabel")
    model_names = ("image_table",)
    required = {"target": dict, "image": dict, "preprocessor": (dict, type(None)), "tta": bool, "flip": bool}

    def __init__(self, *, task: str, target: Any, feature: Any, preprocessor: Any, model: torch.nn.Module,
                 metrics: dict[str, float] | None = None, info: dict[str, Any] | None = None, tta: bool = False,
                 flip: bool = False) -> None:
        self.task, self.target, self.feature, self.preprocessor = task, target, feature, preprocessor
        self.model = model.eval()
        self.metrics: dict[str, float] = dict(metrics or {})
        self.info: dict[str, Any] = dict(info or {})
        self.tta, self.flip = tta, flip

    @property
    def model_name(self) -> str:
        return "image_table"

    @property
    def image_column(self) -> str:
        return self.feature.name

    @property
    def target_name(self) -> str:
        return self.target.name

    @property
    def classes(self) -> list[Any]:
        """Class labels, in the order of ``predict_proba``'s columns."""
        if self.task == "multilabel":
            return list(self.target.labels)
        return list(self.target.decode(np.arange(self.target.n_outputs)))

    # ------------------------------------------------------------------ the artifact

    def _meta(self) -> dict[str, Any]:
        return {"target": self.target.state_dict(), "image": {"column": self.image_column, **self.feature.state_dict()},
                "preprocessor": self.preprocessor.state_dict() if self.preprocessor is not None else None,
                "tta": self.tta, "flip": self.flip}

    @classmethod
    def _from_meta(cls, meta: dict[str, Any], directory: Path) -> Self:
        from deepfit.features.image import ImageFeature
        from deepfit.features.preprocessor import TablePreprocessor
        from deepfit.features.target import target_from_state
        from deepfit.models.multimodal import ImageTableModel

        image = dict(meta["image"])
        feature = ImageFeature.from_state(str(image.pop("column")), image)
        target = target_from_state(meta["target"])
        pre = TablePreprocessor.from_state(meta["preprocessor"]) if meta.get("preprocessor") else None
        model = ImageTableModel(n_outputs=target.n_outputs, table_spec=pre.spec() if pre is not None else None,
                                **dict(meta["model"]["config"]))
        return cls(task=meta["task"], target=target, feature=feature, preprocessor=pre, model=model,
                   metrics=cls._stored_metrics(meta), info=meta.get("info", {}), tta=meta["tta"], flip=meta["flip"])

    # ------------------------------------------------------------------ tensors

    def _views(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Test-time augmentation: the image, its mirror (if trained with flips), and 4 small shifts."""
        from deepfit.augment.image import affine_matrices, apply_affine

        views = [x]
        if not self.tta:
            return views
        xf = x.float() / 255.0
        if self.flip:
            views.append(xf.flip(-1))
        B, _, H, W = x.shape
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            t = torch.tensor([[dx / W, dy / H]]).expand(B, 2)
            views.append(apply_affine(xf, affine_matrices(batch=B, height=H, width=W, translate=t), padding="border"))
        return views

    def proba_tensors(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Probabilities ``(N, C)`` for encoded inputs ``(images uint8 (N, 3, H, W), table tensors...)``."""
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(inputs[0]), BATCH):
                batch = tuple(t[start:start + BATCH] for t in inputs)
                views = self._views(batch[0])
                acc = None
                for v in views:
                    logits = self.model(v, *batch[1:]).float()
                    p = torch.sigmoid(logits) if self.task == "multilabel" else torch.softmax(logits, dim=1)
                    acc = p if acc is None else acc + p
                outputs.append(acc / len(views))
        return torch.cat(outputs)

    def metrics_of(self, probs: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """The task's metrics from probabilities and encoded labels."""
        from deepfit.metrics import classification_metrics, multilabel_metrics

        if self.task == "classify":
            return classification_metrics(probs, y)
        return multilabel_metrics(probs, y)

    def _encode(self, data: Any, source: str) -> tuple[pd.DataFrame, tuple[torch.Tensor, ...], str]:
        from deepfit.data.images import decode_images

        df, where = predict_rows(data, self.image_column, self.target_name)
        where = source if source != "rows" else where
        if len(df) == 0:
            raise DataError(f"{where} has no images to predict")
        images, bad, _ = decode_images(list(df[self.image_column]), self.feature.size, crop=self.feature.crop)
        if bad:
            listed = "\n".join(f"  {s.path}: {s.reason}" for s in bad[:20])
            more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
            raise DataError(f"{where}: {len(bad)} of {len(df)} image(s) cannot be used:\n{listed}{more}\n"
                            "fix or remove them and try again")
        inputs: tuple[torch.Tensor, ...] = (images,)
        if self.preprocessor is not None:
            coerced = self.preprocessor.check_input(df, source=where)
            inputs += tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in self.preprocessor.transform(coerced))
        return df, inputs, where

    # ------------------------------------------------------------------ public API

    def predict_proba(self, data: Any, *, source: str = "rows") -> pd.DataFrame:
        """Class probabilities (softmax; per-label sigmoid for multi-label), one column per class."""
        df, inputs, _ = self._encode(data, source)
        probs = self.proba_tensors(inputs).numpy()
        return pd.DataFrame(probs, columns=[str(c) for c in self.classes], index=df.index)

    def predict(self, data: Any, *, source: str = "rows") -> np.ndarray:
        """Predicted labels (multi-label: the labels with probability >= 0.5 joined by ``|``)."""
        probs = self.predict_proba(data, source=source).to_numpy()
        if self.task == "multilabel":
            return self.target.decode_multi(probs)
        return self.target.decode(probs.argmax(axis=1))

    def predict_frame(self, data: Any, *, source: str = "rows") -> pd.DataFrame:
        """What ``deepfit predict`` prints: ``path``, ``prediction`` and ``proba_<class>`` columns."""
        df, inputs, _ = self._encode(data, source)
        probs = self.proba_tensors(inputs).numpy()
        pred = self.target.decode_multi(probs) if self.task == "multilabel" else self.target.decode(probs.argmax(1))
        frame = pd.DataFrame({"path": df[self.image_column].to_numpy(), "prediction": pred})
        for j, c in enumerate(self.classes):
            frame[f"proba_{c}"] = probs[:, j]
        return frame

    def evaluate(self, data: Any, *, source: str = "rows") -> dict[str, float]:
        """Metrics on labelled images (class folders, or a table with the target column):
        accuracy, log_loss, f1, auroc (multi-label: accuracy per label, subset_accuracy, f1, log_loss)."""
        df, inputs, where = self._encode(data, source)
        if self.target_name not in df.columns:
            raise DataError(f"{where} has no labels: pass class folders, or a table with the "
                            f"'{self.target_name}' column")
        values = df[self.target_name].astype(str) if self.task == "classify" else df[self.target_name]
        y = torch.from_numpy(self.target.encode(values))
        return self.metrics_of(self.proba_tensors(inputs), y)

    def __repr__(self) -> str:
        return (f"ImagePredictor(task={self.task!r}, classes={len(self.classes)}, size={self.feature.size}, "
                f"metrics={self.metrics})")
