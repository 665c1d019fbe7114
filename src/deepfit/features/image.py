"""The image feature: a column of image file paths, decoded to uint8 tensors of one size.

``fit`` records the target size and the per-channel mean and standard deviation of the
training images (in ``[0, 1]`` units, i.e. of the uint8 pixels divided by 255), which the model
uses to normalise its input. ``encode`` decodes (centre crop, see
:func:`deepfit.data.images.decode_image`) in worker processes and returns
``{"image": uint8 array (N, 3, S, S)}``. At prediction time a file that cannot be used is an error
listing every such file and why; skipping bad files while training is the task's job
(:func:`deepfit.data.images.decode_images` returns the skipped ones).

Example:
    >>> import tempfile, os
    >>> from PIL import Image
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "a.png")
    >>> Image.new("RGB", (32, 24), (255, 0, 0)).save(p)
    >>> f = ImageFeature("image", size=16).fit(pd.Series([p]))
    >>> f.mean, f.encode(pd.Series([p]))["image"].shape
    ([1.0, 0.0, 0.0], (1, 3, 16, 16))
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import pandas as pd

from deepfit.errors import ConfigError, DataError
from deepfit.features.base import Feature, finite_or_none, require_keys

__all__ = ["ImageFeature", "DEFAULT_SIZE", "channel_stats"]

DEFAULT_SIZE = 128
_STATS_SAMPLE = 512  # images decoded by fit() for the channel statistics when none are given
_MAX_LISTED = 20


def channel_stats(images: Any) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 ``(N, 3, H, W)`` images, in ``[0, 1]`` units.

    Example:
        >>> import torch
        >>> channel_stats(torch.full((2, 3, 4, 4), 255, dtype=torch.uint8))
        ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    """
    import torch

    x = torch.as_tensor(images)
    if x.ndim != 4 or x.shape[1] != 3 or len(x) == 0:
        raise DataError(f"channel_stats needs uint8 images of shape (N, 3, H, W) with N > 0, got {tuple(x.shape)}")
    mean = torch.zeros(3, dtype=torch.float64)
    sq = torch.zeros(3, dtype=torch.float64)
    for lo in range(0, len(x), 256):  # chunks: no float copy of the whole set
        chunk = x[lo:lo + 256].to(torch.float64) / 255.0
        mean += chunk.sum(dim=(0, 2, 3))
        sq += (chunk * chunk).sum(dim=(0, 2, 3))
    count = len(x) * x.shape[2] * x.shape[3]
    mean /= count
    var = (sq / count - mean * mean).clamp_min(0.0)
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in var.sqrt()]


class ImageFeature(Feature):
    """A column of image paths -> ``{"image": uint8 (N, 3, size, size)}``.

    Args:
        name: the column name.
        size: the side of the square images the model sees.
        crop: ``"center"`` or ``"squash"`` (see :func:`deepfit.data.images.decode_image`).
        workers: decoding processes for ``fit``/``encode`` (None: all usable cores for large jobs).
    """

    kind = "image"

    def __init__(self, name: str, *, size: int = DEFAULT_SIZE, crop: str = "center",
                 workers: int | None = None) -> None:
        super().__init__(name)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigError(f"image size for column '{name}' must be a positive int, got {size!r}")
        if crop not in ("center", "squash"):
            raise ConfigError(f"crop for column '{name}' must be 'center' or 'squash', got {crop!r}")
        self.size = size
        self.crop = crop
        self.workers = workers
        self.mean: list[float] = [0.5, 0.5, 0.5]
        self.std: list[float] = [0.25, 0.25, 0.25]

    def fit(self, values: pd.Series, *, images: Any = None) -> Self:
        """Record the channel statistics of the training images.

        Args:
            values: training image paths.
            images: the same images already decoded (uint8 ``(N, 3, H, W)``), e.g. by the task's
                :func:`~deepfit.data.images.decode_images`; when None, up to 512 evenly spaced
                paths are decoded (bad ones ignored).
        """
        from deepfit.data.images import decode_images

        if images is None:
            paths = [str(p) for p in values]
            if not paths:
                raise DataError(f"image column '{self.name}' has no training rows")
            if len(paths) > _STATS_SAMPLE:
                paths = [paths[i] for i in np.linspace(0, len(paths) - 1, _STATS_SAMPLE).round().astype(int)]
            images, skipped, _ = decode_images(paths, self.size, workers=self.workers, crop=self.crop)
            if len(images) == 0:
                shown = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3])
                raise DataError(f"image column '{self.name}': none of the {len(paths)} sampled images can be read "
                                f"({shown})")
        self.mean, self.std = channel_stats(images)
        self.std = [max(s, 1e-3) for s in self.std]  # a constant channel must not divide by zero
        self.fitted = True
        return self

    def encode(self, values: pd.Series) -> dict[str, np.ndarray]:
        """``{"image": uint8 array (N, 3, size, size)}``; DataError listing every unusable file."""
        from deepfit.data.images import decode_images

        self._check_fitted()
        paths = [str(p) for p in values]
        images, skipped, _ = decode_images(paths, self.size, workers=self.workers, crop=self.crop)
        if skipped:
            listed = "\n".join(f"  {s.path}: {s.reason}" for s in skipped[:_MAX_LISTED])
            more = f"\n  ... and {len(skipped) - _MAX_LISTED} more" if len(skipped) > _MAX_LISTED else ""
            raise DataError(f"image column '{self.name}': {len(skipped)} of {len(paths)} file(s) cannot be used:\n"
                            f"{listed}{more}\nfix or remove them and predict again")
        return {"image": images.numpy()}  # zero-copy view of the decoded tensor

    def state_dict(self) -> dict:
        self._check_fitted()
        return {
            "size": self.size,
            "crop": self.crop,
            "mean": [finite_or_none(v) for v in self.mean],
            "std": [finite_or_none(v) for v in self.std],
        }

    @classmethod
    def from_state(cls, name: str, state: dict) -> Self:
        what = f"image feature '{name}'"
        state = require_keys(state, ("size", "crop", "mean", "std"), what=what)
        try:
            f = cls(name, size=int(state["size"]), crop=str(state["crop"]))
            mean = [float(v) for v in state["mean"]]
            std = [float(v) for v in state["std"]]
        except (TypeError, ValueError, ConfigError) as e:
            raise DataError(f"{what}: bad saved state ({e}); the file is damaged: retrain the model") from e
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise DataError(f"{what}: saved mean/std must be 3 numbers each (std > 0), got {mean}, {std}; "
                            "the file is damaged: retrain the model")
        f.mean, f.std = mean, std
        f.fitted = True
        return f
