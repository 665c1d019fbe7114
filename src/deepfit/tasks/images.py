"""Images: a folder (or a table with an image-path column) in, a trained :class:`ImagePredictor` out.

The path, step by step: read the data (``root/<class>/*.jpg``, optional ``train``/``valid``/
``test`` split folders, or a CSV/DataFrame whose image-path column is found by type inference,
plus any other columns, which join the model) → look at a few images for their native size →
pick the recipe (image side, backbone, epochs, batch size, learning rate: :func:`recipe`) →
decode every image once into a uint8 tensor in memory (unreadable files are skipped and listed
in the report) → split off a test set (stratified; or the ``test`` data / ``test`` folder) and a
validation set → train with the engine's ``Learner``: augmentation on each batch on the device
(:mod:`deepfit.augment.image`; no horizontal flips unless ``flip=True``), AdamW with one-cycle,
label smoothing, optionally mixup/cutmix, a pretrained backbone from a local safetensors file
with discriminative learning rates and a frozen first epoch → evaluate (optionally with
test-time augmentation) → write the artifact, ``metrics.json`` and ``report.html``.

Unusable files at prediction time are an error naming every one of them (``DataError``): a
prediction file silently shorter than its input is worse than a clear stop.

Example:
    >>> from deepfit.tasks.images import ImageSettings, fit_images          # doctest: +SKIP
    >>> predictor = fit_images("photos/", ImageSettings(), out="runs/photos")  # doctest: +SKIP
    >>> predictor.predict(["photos/cat/1.jpg"])                              # doctest: +SKIP
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

from deepfit.engine.callbacks import Callback
from deepfit.errors import ConfigError, DataError

__all__ = ["ImageSettings", "ImagePredictor", "fit_images", "train_cli", "demo", "recipe", "has_image_column",
           "is_image_data", "MULTILABEL_SEP"]

MULTILABEL_SEP = "|"  # multi-label targets: "cat|dog"
TABLE_KINDS = ("number", "category", "binary", "date", "text")
MODELS = ("auto", "small_cnn", "resnet18", "resnet34", "resnet50")
BATCH = 256  # prediction batch


@dataclass(frozen=True)
class ImageSettings:
    """Everything that decides an image run (stored in ``run.json`` for ``--resume``).

    ``None`` means "chosen by :func:`recipe` from the data". ``task``: ``"auto"`` (single-label
    classification, or multi-label when labels hold ``|``), ``"classify"`` or ``"multilabel"``.
    """

    target: str = "label"
    task: str = "auto"
    image_column: str | None = None
    types: dict[str, str] = field(default_factory=dict)
    time_limit: float | None = None
    seed: int = 0
    test_size: float = 0.2
    valid_size: float = 0.1
    split_by: str | None = None
    group: str | None = None
    model: str = "auto"
    size: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    flip: bool = False
    mixup: float = 0.0
    cutmix: float = 0.0
    tta: bool = False
    pretrained: str | None = None
    lr_ratio: float = 0.1
    freeze_epochs: int = 1
    checkpoint_every: int | None = None
    workers: int | None = None
    max_memory_gb: float = 4.0

    def __post_init__(self) -> None:
        if self.task not in ("auto", "classify", "multilabel"):
            raise ConfigError(f"image task must be 'auto', 'classify' or 'multilabel', got {self.task!r} "
                              "(regression on images is not supported yet)")
        if self.model not in MODELS:
            raise ConfigError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if not 0 <= self.test_size < 1 or not 0 < self.valid_size < 1:
            raise ConfigError(f"test_size must be in [0, 1) and valid_size in (0, 1), got {self.test_size}, "
                              f"{self.valid_size}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ConfigError(f"time_limit must be > 0 seconds, got {self.time_limit}")
        if self.size is not None and not 8 <= self.size <= 1024:
            raise ConfigError(f"size must be in 8..1024 pixels, got {self.size}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.mixup < 0 or self.cutmix < 0 or (self.mixup and self.cutmix):
            raise ConfigError("mixup and cutmix take a Beta alpha > 0 (e.g. 0.2 / 1.0); use at most one of them")
        if self.pretrained is not None and not Path(self.pretrained).is_file():
            raise ConfigError(f"pretrained weights {self.pretrained} not found; pass a local .safetensors file")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ImageSettings:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def recipe(native_side: float, n_train: int, settings: ImageSettings) -> dict[str, Any]:
    """The default training recipe for images whose typical short side is ``native_side`` px.

    * <= 40 px (digits, icons, CIFAR-like): 32 px, :class:`~deepfit.models.resnet.SmallCNN`
      (32-64-128, stride-2 first conv), lr 3e-3;
    * <= 96 px: 64 px, ResNet-18-D at half width (32-64-128-256, stride-2 stem), lr 2e-3;
    * larger: 128 px, ResNet-18-D (64-128-256-512, classic stride-4 stem), lr 2e-3.

    Batch 64; 20 epochs, more for small sets (at least ~400 optimizer steps, at most 60 epochs);
    fine-tuning ``pretrained`` weights: lr 1e-3, 10 epochs. Explicit settings win; a time
    limit shortens the schedule to fit (see :func:`fit_images`).
    """
    if native_side <= 40:
        size, name, cfg, lr = 32, "small_cnn", {"widths": [32, 64, 128], "stem_stride": 2, "channels_last": True}, 3e-3
    elif native_side <= 96:
        size, name, cfg, lr = 64, "resnet", {"depths": [2, 2, 2, 2], "block": "basic", "widths": [32, 64, 128, 256],
                                             "stem_width": 16, "stem_stride": 2, "channels_last": True}, 2e-3
    else:
        size, name, cfg, lr = 128, "resnet", {"depths": [2, 2, 2, 2], "block": "basic", "widths": [64, 128, 256, 512],
                                              "stem_width": 32, "stem_stride": 4, "channels_last": True}, 2e-3
    if settings.model != "auto":
        depths = {"resnet18": ([2, 2, 2, 2], "basic"), "resnet34": ([3, 4, 6, 3], "basic"),
                  "resnet50": ([3, 4, 6, 3], "bottleneck")}
        if settings.model == "small_cnn":
            name, cfg = "small_cnn", {"widths": [32, 64, 128], "stem_stride": 2 if size >= 32 else 1,
                                      "channels_last": True}
        else:
            d, block = depths[settings.model]
            name, cfg = "resnet", {"depths": d, "block": block, "widths": [64, 128, 256, 512], "stem_width": 32,
                                   "stem_stride": 4 if size >= 96 else 2, "channels_last": True}
    batch = settings.batch_size or 64
    steps_per_epoch = max(1, math.ceil(n_train / batch))
    if settings.pretrained:
        lr, epochs = 1e-3, 10
    else:  # at least ~400 optimizer steps: small sets need more passes
        epochs = int(min(60, max(20, math.ceil(400 / steps_per_epoch))))
    return {"size": settings.size or size, "backbone": name, "backbone_config": cfg,
            "epochs": settings.epochs or epochs, "batch_size": batch, "lr": settings.lr or lr}


# ----------------------------------------------------------------------------- reading data


def has_image_column(df: pd.DataFrame, *, target: str | None = None, types: dict[str, str] | None = None) -> bool:
    """Whether type inference finds an image-path column in ``df`` (used by :func:`deepfit.fit`)."""
    from deepfit.data.table import infer_types

    try:
        infos = infer_types(df, target=target, overrides=types or {}, source="data")
    except DataError:
        return False
    return any(i.kind == "image" for n, i in infos.items() if n != target)


def is_image_data(data: Any, *, target: str | None = None, types: dict[str, str] | None = None) -> bool:
    """Whether ``data`` is for the image task: a folder, or a table (path or DataFrame) in which
    type inference finds an image-path column (used by :func:`deepfit.fit` and ``deepfit train``)."""
    from deepfit.data.sources import read_table

    if isinstance(data, (str, os.PathLike)):
        if Path(data).is_dir():
            return True
        if not Path(data).is_file():
            return False
    try:
        frame = read_table(data)
    except DataError:
        return False  # the table path reports the problem with the data
    return has_image_column(frame, target=target, types=types)


def _source_name(data: Any) -> str:
    return str(data) if isinstance(data, (str, os.PathLike)) else type(data).__name__


def _list_flat(folder: Path) -> list[str]:
    from deepfit.data.images import IMAGE_SUFFIXES

    return sorted(str(p.resolve()) for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_training(data: Any, settings: ImageSettings) -> tuple[pd.DataFrame, str, str, dict[str, Any], list]:
    """``(frame, image_column, target, infos, skipped)`` for training data (folder, file or DataFrame)."""
    from deepfit.data.images import read_image_folder, read_image_table
    from deepfit.data.sources import read_table
    from deepfit.data.table import find_column, infer_types

    source = _source_name(data)
    if isinstance(data, (str, os.PathLike)) and Path(data).is_dir():
        df, skipped = read_image_folder(data)
        return df, "path", "label", {}, list(skipped)
    df = read_table(data)
    target = find_column(df, settings.target, role="target", source=source)
    infos = infer_types(df, target=target, overrides=settings.types, source=source)
    images = [n for n, i in infos.items() if i.kind == "image" and n != target]
    if settings.image_column is not None:
        col = find_column(df, settings.image_column, role="image-path column", source=source)
    elif len(images) == 1:
        col = images[0]
    elif not images:
        raise DataError(f"{source} has no image-path column (values ending in .jpg, .png, ...); "
                        f"columns: {', '.join(map(str, df.columns[:20]))}")
    else:
        raise ConfigError(f"{source} has {len(images)} image columns ({', '.join(images)}); deepfit uses one: "
                          "pass image_column=")
    df = read_image_table(data if not isinstance(data, pd.DataFrame) else df, col)
    return df, col, target, infos, []


def _predict_rows(data: Any, image_column: str, target: str) -> tuple[pd.DataFrame, str]:
    """Rows to predict: a folder (class folders or flat), a table, or a list of paths."""
    from deepfit.data.images import read_image_folder, read_image_table

    if isinstance(data, (list, tuple)) and all(isinstance(p, (str, os.PathLike)) for p in data):
        if not data:
            raise DataError("no image paths to predict")
        return pd.DataFrame({image_column: [os.path.abspath(os.fspath(p)) for p in data]}), f"{len(data)} paths"
    if isinstance(data, (str, os.PathLike)) and Path(data).is_dir():
        flat = _list_flat(Path(data))
        if flat:
            return pd.DataFrame({image_column: flat}), str(data)
        df, _ = read_image_folder(data)  # labelled class folders (skipped non-images are ignored)
        df = df.rename(columns={"path": image_column, "label": target})
        return df.drop(columns=[c for c in ("split",) if c in df.columns]), str(data)
    if isinstance(data, (str, os.PathLike)) and not Path(data).exists():
        raise DataError(f"{data} does not exist: pass a folder of images, a CSV with the '{image_column}' column, "
                        "or a list of image paths")
    return read_image_table(data, image_column), _source_name(data)


def _fingerprint(data: Any) -> str | None:
    """Identity of the training data for --resume: file hash, or folder listing (names and sizes)."""
    if not isinstance(data, (str, os.PathLike)):
        return None
    p = Path(data)
    h = hashlib.sha256()
    if p.is_file():
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    if p.is_dir():
        for f in sorted(p.rglob("*")):
            if f.is_file():
                h.update(f"{f.relative_to(p)}\0{f.stat().st_size}\n".encode())
        return h.hexdigest()
    return None


def _native_side(paths: list[str], k: int = 64) -> float:
    """Median short side of up to ``k`` evenly spaced images (headers only)."""
    from PIL import Image

    sides = []
    for i in np.linspace(0, len(paths) - 1, min(k, len(paths))).round().astype(int):
        try:
            with Image.open(paths[i]) as im:
                sides.append(min(im.size))
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    return float(np.median(sides)) if sides else 128.0


def _split_labels(values: pd.Series, name: str) -> list[list[str]]:
    out = []
    for i, v in enumerate(values.to_numpy(dtype=object)):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            raise DataError(f"target '{name}' is missing in row {i}")
        out.append(sorted({s.strip() for s in str(v).split(MULTILABEL_SEP) if s.strip()}))
    return out


class MultiLabelTarget:
    """Labels like ``"cat|dog"`` → multi-hot float32 ``(N, C)``; ``decode`` joins the labels above 0.5."""

    task = "multilabel"

    def __init__(self, name: str, labels: list[str] | None = None) -> None:
        self.name, self.labels = name, list(labels or [])

    @property
    def n_outputs(self) -> int:
        return len(self.labels)

    def fit(self, values: pd.Series) -> MultiLabelTarget:
        self.labels = sorted({lab for row in _split_labels(values, self.name) for lab in row})
        if len(self.labels) < 2:
            raise DataError(f"target '{self.name}' has fewer than 2 distinct labels: nothing to learn")
        return self

    def encode(self, values: pd.Series) -> np.ndarray:
        index = {lab: j for j, lab in enumerate(self.labels)}
        out = np.zeros((len(values), len(self.labels)), dtype=np.float32)
        for i, row in enumerate(_split_labels(values, self.name)):
            for lab in row:
                if lab not in index:
                    raise DataError(f"target '{self.name}' has the label {lab!r} (row {i}) that was not in the "
                                    f"training rows; known labels: {', '.join(self.labels[:20])}")
                out[i, index[lab]] = 1.0
        return out

    def decode_multi(self, probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        return np.array([MULTILABEL_SEP.join(lab for lab, p in zip(self.labels, row) if p >= threshold)
                         for row in probs], dtype=object)

    def state_dict(self) -> dict:
        return {"task": "multilabel", "name": self.name, "labels": self.labels}


def _target_from_state(state: dict) -> Any:
    from deepfit.features.target import target_from_state

    if state.get("task") == "multilabel":
        return MultiLabelTarget(str(state["name"]), [str(s) for s in state["labels"]])
    return target_from_state(state)


# ----------------------------------------------------------------------------- training


class _FreezeFirst(Callback):
    """Train only the head (and the table encoder) for the first ``epochs`` epochs, then everything."""

    def __init__(self, model: torch.nn.Module, epochs: int) -> None:
        self.model, self.epochs = model, epochs

    def on_epoch_start(self, learner: Any) -> None:
        from deepfit.models.resnet import freeze, unfreeze

        if learner.epoch < self.epochs:
            freeze(self.model, keep=1)
        else:
            unfreeze(self.model)


def _probe_step_seconds(model: torch.nn.Module, loss: Any, images: torch.Tensor, extra: tuple, y: torch.Tensor,
                        batch: int) -> float:
    """Seconds per training step: the faster of two batches after a warm-up one (forward + backward, no update, grads cleared;
    BatchNorm statistics restored, so the probe leaves the model as it found it)."""
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    model.train()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = model(images[:batch], *(e[:batch] for e in extra))
        loss(out, y[:batch]).backward()
        times.append(time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for k, v in model.named_buffers():
            v.copy_(buffers[k])
    return min(times[1:]) * 1.15  # + optimizer step and loader


def fit_images(
    data: Any,
    settings: ImageSettings | None = None,
    *,
    test: Any = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
) -> ImagePredictor:
    """Train an image classifier (see the module docstring); returns an :class:`ImagePredictor`.

    Args:
        data: a folder with one sub-folder per class (optionally under ``train``/``valid``/``test``),
            or a CSV/Parquet file or DataFrame with an image-path column and the ``settings.target``
            column (other columns join the model).
        settings: :class:`ImageSettings` (default: all automatic).
        test: labelled test data in the same forms (default: hold out ``test_size``).
        out: run directory to create (built in ``<out>.incomplete`` and renamed when complete).
        resume: continue the interrupted run in ``out`` exactly.
        progress: print progress.

    Example:
        >>> predictor = fit_images("digits_png/", ImageSettings(seed=0), out="runs/digits")  # doctest: +SKIP
        >>> predictor.metrics["test_accuracy"]                                               # doctest: +SKIP
        0.99
    """
    from deepfit.augment.image import AugmentedImages, ImageAugment, MixBatch, MixedLoss, default_augment
    from deepfit.data.images import decode_images
    from deepfit.data.split import split_indices
    from deepfit.data.table import coerce_column
    from deepfit.engine.callbacks import CSVLogger, TimeLimit
    from deepfit.engine.distributed import single_process_only
    from deepfit.engine.learner import Learner
    from deepfit.engine.losses import get_loss
    from deepfit.engine.rng import seed_everything
    from deepfit.features.image import ImageFeature, channel_stats
    from deepfit.features.preprocessor import TablePreprocessor
    from deepfit.features.target import make_target
    from deepfit.models.multimodal import ImageTableModel
    from deepfit.models.resnet import discriminative_groups, load_weights
    from deepfit.rundir import RunDir

    settings = settings or ImageSettings()
    single_process_only("training an image model")
    t_start = time.perf_counter()
    source = _source_name(data)
    run = RunDir(out) if out is not None else None
    plan_stored = None
    if run is not None and resume:
        stored = run.stored()
        if run.complete:
            return ImagePredictor.load(run.final)
        settings = ImageSettings.from_json(stored["settings"])
        if stored.get("data_sha256") and stored["data_sha256"] != _fingerprint(data):
            raise ConfigError(f"--resume: {source} is not the data the run in {run.work} started with")
        plan_stored = stored.get("plan")
    elif run is not None:
        run.check_new()
    elif resume:
        raise ConfigError("resume=True needs out= (the run directory to continue)")

    df, image_col, target, infos, skipped = _read_training(data, settings)
    notes: list[str] = []
    labels = df[target]
    missing = labels.isna() | (labels.astype(str).str.strip() == "")
    if missing.all():
        raise DataError(f"target column '{target}' in {source} has no values")
    if missing.any():
        notes.append(f"{int(missing.sum())} rows without a '{target}' value were left out")
        df = df.loc[~missing].reset_index(drop=True)
    task = settings.task
    if task == "auto":
        task = "multilabel" if df[target].astype(str).str.contains(MULTILABEL_SEP, regex=False).any() else "classify"

    # Splits: given split folders, given test data, or stratified carve-outs.
    split_task = "classify"
    strat = target if task == "classify" else None
    if test is not None:
        test_df, _, _, _, test_skipped = _read_training(test, settings)
        skipped += test_skipped
        pool = df
    elif "split" in df.columns and (df["split"] == "test").any():
        test_df = df.loc[df["split"] == "test"].reset_index(drop=True)
        pool = df.loc[df["split"] != "test"].reset_index(drop=True)
    elif settings.test_size > 0:
        tr, te = split_indices(df, target=strat, task=split_task, seed=settings.seed, test_size=settings.test_size,
                               by=settings.split_by, group=settings.group)
        pool, test_df = df.iloc[tr].reset_index(drop=True), df.iloc[te].reset_index(drop=True)
    else:
        pool, test_df = df, None
    if "split" in pool.columns and (pool["split"] == "valid").any():
        fit_df = pool.loc[pool["split"] != "valid"].reset_index(drop=True)
        valid_df = pool.loc[pool["split"] == "valid"].reset_index(drop=True)
    else:
        fr, va = split_indices(pool, target=strat, task=split_task, seed=settings.seed + 1,
                               test_size=settings.valid_size, by=settings.split_by, group=settings.group)
        fit_df, valid_df = pool.iloc[fr].reset_index(drop=True), pool.iloc[va].reset_index(drop=True)

    # The recipe, from the images' native size and the number of training rows.
    native = _native_side([str(p) for p in fit_df[image_col]])
    plan = plan_stored or recipe(native, len(fit_df), settings)
    size = int(plan["size"])

    # The row's other columns (a table with an image column) go through the table preprocessing.
    columns = {n: i.kind for n, i in infos.items() if n not in (target, image_col) and i.used and i.kind in TABLE_KINDS}
    # Sets too large for memory stream from the files (decode, random resized crop and flip in
    # worker processes: deepfit.data.images.ImageBatches); the rest is decoded once.
    stream = len(fit_df) * 3 * size * size > settings.max_memory_gb * 1e9
    if stream and (task != "classify" or columns):
        notes.append("the set is larger than max_memory_gb but streaming supports single-label images without "
                     "other columns only: decoding it all into memory")
        stream = False

    def decoded(frame: pd.DataFrame, what: str) -> tuple[pd.DataFrame, torch.Tensor]:
        images, bad, keep = decode_images(list(frame[image_col]), size, workers=settings.workers)
        if bad:
            skipped.extend(bad)
            notes.append(f"{len(bad)} {what} image(s) could not be read and were left out")
        return frame.loc[keep].reset_index(drop=True), images

    feature = ImageFeature(image_col, size=size, workers=settings.workers)
    if stream:
        x_fit = None
        feature.fit(fit_df[image_col])  # channel statistics of a sample of 512 images
        notes.append(f"{len(fit_df)} training images streamed from the files (larger than "
                     f"max_memory_gb={settings.max_memory_gb:g} once decoded)")
    else:
        fit_df, x_fit = decoded(fit_df, "training")
        feature.mean, feature.std = channel_stats(x_fit)
        feature.std = [max(s, 1e-3) for s in feature.std]
        feature.fitted = True
    valid_df, x_valid = decoded(valid_df, "validation")
    if len(fit_df) < 2 or len(valid_df) < 1:
        raise DataError(f"{source}: too few readable images to train ({len(fit_df)} training, {len(valid_df)} "
                        "validation); see the skipped files: " + "; ".join(f"{s.path}: {s.reason}" for s in skipped[:5]))

    # Targets.
    if task == "classify":
        target_enc: Any = make_target("classify", target).fit(fit_df[target].astype(str))
    else:
        target_enc = MultiLabelTarget(target).fit(fit_df[target])

    def y_of(frame: pd.DataFrame) -> torch.Tensor:
        values = frame[target].astype(str) if task == "classify" else frame[target]
        return torch.from_numpy(target_enc.encode(values))

    pre = None
    if columns:
        date_formats = {c: infos[c].date_format for c, k in columns.items() if k == "date"}
        pre = TablePreprocessor(columns, date_formats=date_formats)

        def coerced(frame: pd.DataFrame) -> pd.DataFrame:
            return pd.DataFrame({c: coerce_column(frame[c], k, date_format=infos[c].date_format)
                                 for c, k in columns.items()})

        pre.fit(coerced(fit_df))

        def table_of(frame: pd.DataFrame) -> tuple[torch.Tensor, ...]:
            return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in pre.transform(coerced(frame)))
    else:
        def table_of(frame: pd.DataFrame) -> tuple[torch.Tensor, ...]:
            return ()

    valid_t = (x_valid, *table_of(valid_df), y_of(valid_df))
    batch_size = min(int(plan["batch_size"]), len(fit_df))
    if stream:
        from deepfit.data.images import ImageBatches

        train: Any = ImageBatches(list(fit_df[image_col]), y_of(fit_df).numpy(), size=size, batch_size=batch_size,
                                  augment=True, flip=settings.flip, seed=settings.seed, num_workers=settings.workers)
        first = next(iter(train.iterate(0)))
        probe_batch = (first[0], (), first[-1])
    else:
        train = (x_fit, *table_of(fit_df), y_of(fit_df))
        probe_batch = (train[0], tuple(train[1:-1]), train[-1])

    if run is not None and not resume:  # inputs are checked: only now does the run folder appear
        run.start({"settings": settings.to_json(), "data": source, "data_sha256": _fingerprint(data),
                   "test": _source_name(test) if test is not None else None, "plan": plan})
    seed_everything(settings.seed)
    model = ImageTableModel(n_outputs=target_enc.n_outputs, backbone=plan["backbone"],
                            backbone_config=plan["backbone_config"], mean=feature.mean, std=feature.std,
                            table_spec=pre.spec() if pre is not None else None)
    if settings.pretrained:
        report = load_weights(model.backbone, settings.pretrained)
        notes.append(f"backbone initialised from {settings.pretrained}: {len(report['loaded'])} tensors loaded, "
                     f"{len(report['skipped'])} skipped (shape), {len(report['missing'])} fresh")
    mix = None
    if settings.mixup:
        mix = MixBatch("mixup", alpha=settings.mixup)
    elif settings.cutmix:
        mix = MixBatch("cutmix", alpha=settings.cutmix)
    augment = default_augment(size, flip=settings.flip)
    if stream:  # the workers already crop and flip
        augment = ImageAugment(**{**augment.config(), "crop_scale": None, "flip": 0.0})
    net = AugmentedImages(model, augment, mix)
    base_loss = get_loss("cross_entropy" if task == "classify" else "bce",
                         label_smoothing=settings.label_smoothing if task == "classify" else 0.0)
    loss = MixedLoss(base_loss, mix) if mix is not None else base_loss

    if "epochs_planned" not in plan:
        epochs = int(plan["epochs"])
        if settings.time_limit and settings.epochs is None:
            # Fit the one-cycle schedule into the budget: time a few steps, keep 10% in reserve.
            step_s = _probe_step_seconds(net, base_loss, *probe_batch, batch_size)
            steps_per_epoch = math.ceil(len(fit_df) / batch_size)
            left = settings.time_limit * 0.9 - (time.perf_counter() - t_start)
            epochs = int(max(1, min(epochs, left // (step_s * steps_per_epoch * 1.1))))
            notes.append(f"time limit {settings.time_limit:g}s: {epochs} epochs planned "
                         f"({step_s * 1000:.0f} ms per step measured)")
        plan = {**plan, "epochs_planned": epochs}
        if run is not None:
            stored = run.stored()
            run.write_json("run.json", {**stored, "plan": plan})
    epochs = int(plan["epochs_planned"])

    callbacks: list[Any] = []
    time_limit = None
    if settings.time_limit:
        left = settings.time_limit * 0.95 - (time.perf_counter() - t_start)
        time_limit = TimeLimit(max(left, 0.05 * settings.time_limit))
        callbacks.append(time_limit)
    if run is not None:
        callbacks.append(CSVLogger(run.work / "history.csv"))
    optimizer: Any = "adamw"
    lr = float(plan["lr"])
    if settings.pretrained:
        groups = discriminative_groups(model, lr_ratio=settings.lr_ratio, weight_decay=settings.weight_decay)
        optimizer = lambda _groups: torch.optim.AdamW(groups, lr=lr)  # noqa: E731 - our groups, not the default two
        if settings.freeze_epochs:
            callbacks.append(_FreezeFirst(model, settings.freeze_epochs))
    learner = Learner(
        net, train, valid_t, loss=loss, metrics=["accuracy"] if task == "classify" else [],
        optimizer=optimizer, lr=lr, weight_decay=settings.weight_decay, batch_size=batch_size,
        seed=settings.seed, progress=progress, out_dir=run.work if run is not None else None,
        checkpoint_every=settings.checkpoint_every, callbacks=callbacks, compile=False if mix is not None else "auto",
    )
    last = run.work / "last.ckpt" if run is not None else None
    history = learner.fit_one_cycle(epochs, resume=last if resume and last is not None and last.exists() else None)
    model.eval()

    info = {
        "source": source,
        "images": int(len(df)),
        "train_rows": int(len(fit_df)),
        "valid_rows": int(len(valid_df)),
        "test_rows": int(len(test_df)) if test_df is not None else 0,
        "streamed": stream,
        "native_side": native,
        "plan": plan,
        "augment": augment.config(),
        "epochs": len(history),
        "stopped_by_time_limit": bool(time_limit and time_limit.stopped),
        "fit_seconds": round(time.perf_counter() - t_start, 2),
        "skipped": [{"path": s.path, "reason": s.reason} for s in skipped[:200]],
        "notes": notes,
    }
    predictor = ImagePredictor(task=task, target=target_enc, feature=feature, preprocessor=pre, model=model,
                               info=info, tta=settings.tta, flip=settings.flip)
    valid_probs = predictor._proba_tensors((x_valid, *table_of(valid_df)))
    metrics = {f"valid_{k}": v for k, v in predictor._metrics(valid_probs, valid_t[-1]).items()}
    eval_df, eval_x, eval_probs, eval_y = valid_df, x_valid, valid_probs, valid_t[-1]
    if test_df is not None and len(test_df):
        # In chunks, so a large test set is never decoded all at once when streaming.
        chunk = 2048 if stream else max(len(test_df), 1)
        kept, probs, images = [], [], []
        for lo in range(0, len(test_df), chunk):
            part, x_part = decoded(test_df.iloc[lo:lo + chunk], "test")
            kept.append(part)
            probs.append(predictor._proba_tensors((x_part, *table_of(part))))
            if not stream:
                images.append(x_part)
        test_df = pd.concat(kept, ignore_index=True)
        test_probs = torch.cat(probs)
        y_test = y_of(test_df)
        metrics.update({f"test_{k}": v for k, v in predictor._metrics(test_probs, y_test).items()})
        eval_df, eval_x, eval_probs, eval_y = test_df, torch.cat(images) if images else None, test_probs, y_test
    predictor.metrics = {k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)}

    if run is not None:
        from deepfit.engine.checkpoint import atomic_write_bytes
        from deepfit.tasks.images_report import image_report

        for name, blob in predictor.files().items():
            atomic_write_bytes(run.work / name, blob)
        run.write_json("metrics.json", predictor.metrics)
        image_report(run.work / "report.html", predictor=predictor, history=history,
                     train_frame=fit_df, train_images=x_fit, train_labels=y_of(fit_df), eval_frame=eval_df,
                     eval_images=eval_x,
                     eval_probs=eval_probs, eval_labels=eval_y, image_column=image_col)
        run.finish()
    return predictor


# ----------------------------------------------------------------------------- the predictor


class ImagePredictor:
    """A trained image model with its decoding and labels; see :func:`fit_images` and :meth:`load`.

    ``data`` for every method: a folder (class folders, or a flat folder of images), a CSV/Parquet
    file or DataFrame with the image-path column (and the other input columns the model was
    trained with), or a list of image paths. An unreadable image is a ``DataError`` naming it.
    """

    def __init__(self, *, task: str, target: Any, feature: Any, preprocessor: Any, model: torch.nn.Module,
                 metrics: dict[str, float] | None = None, info: dict[str, Any] | None = None, tta: bool = False,
                 flip: bool = False) -> None:
        self.task, self.target, self.feature, self.preprocessor = task, target, feature, preprocessor
        self.model = model.eval()
        self.metrics: dict[str, float] = dict(metrics or {})
        self.info: dict[str, Any] = dict(info or {})
        self.tta, self.flip = tta, flip

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

    # -- tensors

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

    def _proba_tensors(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
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

    def _metrics(self, probs: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        from deepfit.predict import classification_metrics

        if self.task == "classify":
            return classification_metrics(probs, y)
        pred = probs >= 0.5
        truth = y >= 0.5
        tp = float((pred & truth).sum())
        fp, fn = float((pred & ~truth).sum()), float((~pred & truth).sum())
        p = probs.clamp(1e-7, 1 - 1e-7)
        return {"accuracy": float((pred == truth).float().mean()),
                "subset_accuracy": float((pred == truth).all(dim=1).float().mean()),
                "f1": 2 * tp / max(2 * tp + fp + fn, 1.0),
                "log_loss": float(-(y * p.log() + (1 - y) * (1 - p).log()).mean())}

    def _encode(self, data: Any, source: str) -> tuple[pd.DataFrame, tuple[torch.Tensor, ...], str]:
        from deepfit.data.images import decode_images

        df, where = _predict_rows(data, self.image_column, self.target_name)
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

    # -- public API

    def predict_proba(self, data: Any, *, source: str = "rows") -> pd.DataFrame:
        """Class probabilities (softmax; per-label sigmoid for multi-label), one column per class."""
        df, inputs, _ = self._encode(data, source)
        probs = self._proba_tensors(inputs).numpy()
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
        probs = self._proba_tensors(inputs).numpy()
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
        return self._metrics(self._proba_tensors(inputs), y)

    # -- artifact

    def files(self) -> dict[str, bytes]:
        from deepfit.artifact import artifact_files
        from deepfit.predict import _finite

        meta = {
            "kind": "image",
            "task": self.task,
            "target": self.target.state_dict(),
            "image": {"column": self.image_column, **self.feature.state_dict()},
            "preprocessor": self.preprocessor.state_dict() if self.preprocessor is not None else None,
            "model": {"name": "image_table", "config": self.model.config()},
            "tta": self.tta,
            "flip": self.flip,
            "metrics": _finite(self.metrics),
            "info": self.info,
        }
        return artifact_files(meta, self.model.state_dict())

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the artifact to a new directory (it appears complete or not at all)."""
        from deepfit.artifact import write_artifact

        return write_artifact(directory, self.files())

    @classmethod
    def load(cls, directory: str | os.PathLike) -> ImagePredictor:
        """Load an artifact written by :meth:`save`; validates the JSON before reading any weights."""
        from deepfit.artifact import ArtifactError, read_meta, read_weights, require_fields
        from deepfit.features.image import ImageFeature
        from deepfit.features.preprocessor import TablePreprocessor
        from deepfit.models.multimodal import ImageTableModel

        meta = read_meta(directory)
        require_fields(meta, {"target": dict, "image": dict}, directory)
        if meta.get("kind") != "image" or meta["task"] not in ("classify", "multilabel"):
            raise ArtifactError(f"{directory}: not an image classifier (kind {meta.get('kind')!r}, task {meta['task']!r})")
        if meta["model"]["name"] != "image_table":
            raise ArtifactError(f"{directory}: unknown model {meta['model']['name']!r} (this deepfit knows 'image_table')")
        try:
            image = dict(meta["image"])
            feature = ImageFeature.from_state(str(image.pop("column")), image)
            target = _target_from_state(meta["target"])
            pre = TablePreprocessor.from_state(meta["preprocessor"]) if meta.get("preprocessor") else None
            cfg = dict(meta["model"]["config"])
            model = ImageTableModel(n_outputs=target.n_outputs, table_spec=pre.spec() if pre is not None else None,
                                    **cfg)
        except (TypeError, ValueError, KeyError, DataError, ConfigError) as e:
            raise ArtifactError(f"{directory}/deepfit.json is inconsistent: {type(e).__name__}: {e}") from e
        expected = {k: v.shape for k, v in model.state_dict().items()}
        model.load_state_dict(read_weights(directory, expected))
        return cls(task=meta["task"], target=target, feature=feature, preprocessor=pre, model=model,
                   metrics=meta["metrics"], info=meta.get("info", {}), tta=bool(meta.get("tta", False)),
                   flip=bool(meta.get("flip", False)))

    def __repr__(self) -> str:
        return (f"ImagePredictor(task={self.task!r}, classes={len(self.classes)}, size={self.feature.size}, "
                f"metrics={self.metrics})")


# ----------------------------------------------------------------------------- CLI


def train_cli(args: Any) -> int:
    """``deepfit train <folder>`` (or a table with an image-path column): train, print the test
    metrics and the run directory; returns the exit code."""
    import sys

    if args.task == "regress":
        print("deepfit train: regression on images is not supported yet; folders train a classifier", file=sys.stderr)
        return 2
    given = {"time_limit": args.time_limit, "seed": args.seed, "epochs": args.epochs, "batch_size": args.batch_size,
             "lr": args.lr, "checkpoint_every": args.checkpoint_every, "split_by": getattr(args, "split_by", None),
             "group": getattr(args, "group", None)}
    given = {k: v for k, v in given.items() if v is not None}
    if args.task in ("classify",):
        given["task"] = args.task
    if args.target:
        given["target"] = args.target
    types = {}
    for pair in getattr(args, "type", None) or []:  # --type COL=KIND (tables with an image column)
        name, sep, kind = pair.partition("=")
        if not sep or not name or not kind:
            print(f"deepfit train: --type takes COLUMN=KIND (e.g. zip=category), got {pair!r}", file=sys.stderr)
            return 2
        types[name] = kind
    if types:
        given["types"] = types
    data_path = Path(os.path.abspath(args.data))
    out = args.out or f"runs/{data_path.name if data_path.is_dir() else data_path.stem}"
    settings = ImageSettings(**given)
    predictor = fit_images(args.data, settings, test=args.test, out=out, resume=args.resume,
                           progress=not args.quiet)
    shown = {k: v for k, v in predictor.metrics.items() if k.startswith("test_")} or predictor.metrics
    print(" ".join(f"{k}={v:.4f}" for k, v in shown.items()))
    print(f"run directory: {out}  (report: {Path(out) / 'report.html'})")
    return 0


def demo(root: str | os.PathLike, *, progress: bool = True) -> tuple[ImagePredictor, Path]:
    """``deepfit demo``'s image task: scikit-learn's real digits written as PNG class folders
    (``root/digits_png``, 8x8 upscaled to 32x32), trained with deepfit's image defaults into
    ``root/digits_images`` (both replaced if present). Returns the predictor and the run folder.

    Example:
        >>> predictor, run = demo("runs/demo")          # doctest: +SKIP
        >>> predictor.metrics["test_accuracy"] >= 0.99  # doctest: +SKIP
        True
    """
    import shutil

    from deepfit.datasets import digits_images

    root = Path(root)
    folder, run = root / "digits_png", root / "digits_images"
    for old in (folder, run, run.with_name(run.name + ".incomplete")):
        shutil.rmtree(old, ignore_errors=True)
    digits_images(folder)
    predictor = fit_images(folder, ImageSettings(), out=run, progress=progress)
    return predictor, run
