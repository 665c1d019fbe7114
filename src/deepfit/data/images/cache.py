"""Many images decoded at once: the worker pool, its shared-memory buffers and the on-disk decode cache.

:func:`decode_images` decodes a whole list once (worker processes, order kept) into one uint8
tensor — the in-memory cache for sets that fit — optionally kept on disk (``cache_dir``) for
the next run. The worker-side pieces are shared with :mod:`~deepfit.data.images.stream`:
:func:`default_workers` (how many processes), :func:`batch_buffer` (a batch allocated in shared
memory inside a DataLoader worker, so sending it back copies nothing), :func:`shared_uint8` and
:func:`identity_collate`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from deepfit.data.images.decode import CROPS, JPEG_DECODER, MIN_SIDE, ImageError, center_box, check_size, decode_tensor
from deepfit.data.images.readers import Skipped
from deepfit.errors import ConfigError

__all__ = ["default_workers", "decode_images", "batch_buffer", "shared_uint8", "identity_collate"]


def default_workers(n: int | None = None) -> int:
    """Worker processes for decoding ``n`` files: the usable cores, none for small jobs."""
    if n is not None and n < 64:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(cores, 8))


def batch_buffer(shape: tuple[int, ...]) -> torch.Tensor:
    """A uint8 tensor to fill; in a DataLoader worker, allocated in shared memory at once (as
    torch's ``default_collate`` does), so sending it to the main process copies nothing."""
    if torch.utils.data.get_worker_info() is not None:
        shared = shared_uint8(shape)
        if shared is not None:
            return shared
    return torch.empty(shape, dtype=torch.uint8)


def shared_uint8(shape: tuple[int, ...]) -> torch.Tensor | None:
    """A new uint8 tensor in shared memory (pages not yet touched), or None if torch cannot make one."""
    try:
        storage = torch.empty(0, dtype=torch.uint8)._typed_storage()._new_shared(math.prod(shape))
        return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)
    except (AttributeError, RuntimeError):  # private API moved: callers fall back to ordinary tensors
        return None


def identity_collate(x: Any) -> Any:
    """A DataLoader ``collate_fn`` that returns what the worker made (its dataset builds whole batches)."""
    return x


class _Chunks:
    """A map-style dataset whose item ``k`` is chunk ``k`` of the files, decoded."""

    def __init__(self, paths: Sequence[str], size: int, crop: str, chunk: int, min_side: int) -> None:
        self.paths, self.size, self.crop, self.chunk, self.min_side = paths, size, crop, chunk, min_side

    def __len__(self) -> int:
        return math.ceil(len(self.paths) / self.chunk)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, np.ndarray, list[str | None]]:
        paths = self.paths[k * self.chunk:(k + 1) * self.chunk]
        out = batch_buffer((len(paths), 3, self.size, self.size))
        ok = np.zeros(len(paths), dtype=bool)
        reasons: list[str | None] = [None] * len(paths)
        box = center_box(self.crop)
        for i, p in enumerate(paths):
            try:
                decode_tensor(p, self.size, box, min_side=self.min_side, dest=out[i])
            except ImageError as e:
                reasons[i] = e.reason
                continue
            ok[i] = True
        return out[torch.from_numpy(ok)] if not ok.all() else out, ok, reasons


def decode_images(paths: Sequence[str | os.PathLike], size: int, *, workers: int | None = None, crop: str = "center",
                  min_side: int = MIN_SIDE,
                  cache_dir: str | os.PathLike | None = None) -> tuple[torch.Tensor, list[Skipped], np.ndarray]:
    """Decode many files (centre crop) into one uint8 tensor; bad files are skipped, not fatal.

    Args:
        paths: the files, in order.
        size: output side in pixels.
        workers: decoding processes (``None``: :func:`default_workers`; 0: this process).
        crop: ``"center"`` or ``"squash"`` (see :func:`decode_image`).
        min_side: images with a shorter side are skipped.
        cache_dir: keep the decoded set there (``images-<key>.npy`` + ``.json``) and reuse it
            while the paths, their sizes and modification times and the settings are unchanged
            (e.g. a resumed or repeated run on the same folder).

    Returns:
        ``(images, skipped, keep)``: ``images`` is ``(M, 3, size, size)`` uint8 holding the good
        files in input order, ``skipped`` lists the others with reasons, ``keep`` is the bool mask
        over ``paths`` (``keep.sum() == M``).

    Example:
        >>> images, skipped, keep = decode_images(df["path"], 64)  # doctest: +SKIP
    """
    check_size(size)
    if crop not in CROPS:
        raise ConfigError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
    paths = [os.fspath(p) for p in paths]
    n = len(paths)
    workers = default_workers(n) if workers is None else int(workers)
    if workers < 0:
        raise ConfigError(f"workers must be >= 0, got {workers}")
    cache = _DecodeCache(cache_dir, paths, int(size), crop, min_side) if cache_dir is not None else None
    if cache is not None and (hit := cache.load()) is not None:
        return hit
    chunk = max(8, min(128, math.ceil(n / max(1, 4 * workers))))
    loader = DataLoader(_Chunks(paths, int(size), crop, chunk, min_side), batch_size=None, shuffle=False,
                        num_workers=workers if n > chunk else 0, collate_fn=identity_collate)
    out = torch.empty((n, 3, size, size), dtype=torch.uint8)  # filled compactly: no second copy at the end
    keep, skipped, m = np.zeros(n, dtype=bool), [], 0
    for k, (images, ok, reasons) in enumerate(loader):
        out[m:m + len(images)] = images
        m += len(images)
        keep[k * chunk:k * chunk + len(ok)] = ok
        skipped.extend(Skipped(paths[k * chunk + i], r) for i, r in enumerate(reasons) if r is not None)
    result = out[:m], skipped, keep
    if cache is not None:
        cache.save(*result)
    return result


class _DecodeCache:
    """``decode_images`` results on disk: a raw ``.npy`` (no pickle) and a JSON of the skipped files."""

    def __init__(self, cache_dir: str | os.PathLike, paths: list[str], size: int, crop: str, min_side: int) -> None:
        digest = hashlib.sha256(f"deepfit-images v1 {size} {crop} {min_side} {JPEG_DECODER}\n".encode())
        for p in paths:
            try:
                st = os.stat(p)
                digest.update(f"{p}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{p}\t-\n".encode())
        self.dir = Path(cache_dir)
        self.stem = f"images-{digest.hexdigest()[:24]}"
        self.n = len(paths)

    def load(self) -> tuple[torch.Tensor, list[Skipped], np.ndarray] | None:
        array, meta = self.dir / f"{self.stem}.npy", self.dir / f"{self.stem}.json"
        try:
            info = json.loads(meta.read_text())
            images = np.load(array, allow_pickle=False)
            keep = np.zeros(self.n, dtype=bool)
            keep[np.asarray(info["keep"], dtype=np.int64)] = True
            skipped = [Skipped(p, r) for p, r in info["skipped"]]
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None  # missing or damaged: decode again
        if images.dtype != np.uint8 or len(images) != keep.sum():
            return None
        return torch.from_numpy(images), skipped, keep

    def save(self, images: torch.Tensor, skipped: list[Skipped], keep: np.ndarray) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.dir / f".{self.stem}.{os.getpid()}.tmp.npy"
            np.save(tmp, images.numpy(), allow_pickle=False)
            os.replace(tmp, self.dir / f"{self.stem}.npy")
            meta = {"keep": np.flatnonzero(keep).tolist(), "skipped": [[s.path, s.reason] for s in skipped]}
            tmp_meta = self.dir / f".{self.stem}.{os.getpid()}.tmp.json"
            tmp_meta.write_text(json.dumps(meta))
            os.replace(tmp_meta, self.dir / f"{self.stem}.json")  # written last: marks the pair complete
        except OSError as e:  # a cache that cannot be written only costs time
            warnings.warn(f"could not write the decoded-image cache in '{self.dir}': {e}", RuntimeWarning,
                          stacklevel=3)
