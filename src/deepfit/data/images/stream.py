"""Images decoded as they are used: ``ImageDataset``, ``ImageFolderDataset``, ``ImageBatches`` and its batch ring.

For sets that do not fit in memory, :class:`ImageDataset` (a map-style ``Dataset``) and
:class:`ImageBatches` (a resumable ``BatchLoader``) decode, random-resized-crop and flip in
worker processes. Augmentation of sample ``i`` in epoch ``e`` is a pure function of
``(seed, e, i)``, so resumed runs and any number of workers see the same pixels. A file that
fails at epoch time is replaced by the next readable sample (the batch keeps its size) and
recorded in ``ImageBatches.skipped``. ``ImageBatches`` workers write into a ring of
shared-memory batch buffers (:class:`_BatchRing`) that are reused once no tensor of the
consumer holds them any more.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from deepfit.data.images.cache import batch_buffer, default_workers, identity_collate, shared_uint8
from deepfit.data.images.decode import MIN_SIDE, ImageError, augmented_tensor, center_box, check_size, decode_tensor
from deepfit.data.images.readers import Skipped, read_image_folder
from deepfit.data.loader import IndexBatches, epoch_order
from deepfit.errors import ConfigError, DataError

__all__ = ["ImageDataset", "ImageFolderDataset", "ImageBatches"]


def _sample_rng(seed: int, epoch: int, index: int, attempt: int) -> random.Random:
    """The augmentation RNG of one sample: a function of its four arguments only.

    A splitmix64-style mix seeds Python's ``random.Random`` (about 30x cheaper to create than
    a numpy Generator from a seed sequence, which mattered at ~1.5 ms per image).
    """
    x = 0
    for v in (seed, epoch, index, attempt):
        x = (x ^ (int(v) & _MASK64)) * 0x9E3779B97F4A7C15 & _MASK64
        x ^= x >> 31
    return random.Random(x)


_MASK64 = (1 << 64) - 1


class ImageDataset(Dataset):
    """Images decoded on access: items ``(uint8 (3, S, S), int64 label)`` (or just the image).

    With ``augment=True`` each access decodes a random resized crop (area ``scale``, aspect
    ``ratio``) and a random horizontal flip; otherwise the centre crop. A file that fails is
    replaced by the next readable one (index ``i+1, i+2, ...``) so a batch never breaks; the
    failure is kept in ``self.skipped`` of the process that saw it (use :class:`ImageBatches`
    to collect failures from worker processes).

    Randomness: after ``set_epoch(e)``, sample ``i`` of epoch ``e`` is a function of
    ``(seed, e, i)``; before, it comes from torch's RNG (seeded per worker by the DataLoader).

    Args:
        paths: image files.
        labels: integer class ids (or None for unlabelled images).
        size: output side in pixels.
        augment: random resized crop + flip (training) or centre crop (evaluation).
        scale, ratio, flip: augmentation settings.
        seed: augmentation seed.

    Example:
        >>> ds = ImageDataset(["a.jpg", "b.jpg"], [0, 1], size=64)  # doctest: +SKIP
        >>> Learner(model, train=ds, num_workers=2)  # doctest: +SKIP
    """

    def __init__(self, paths: Sequence[str | os.PathLike], labels: Sequence[int] | np.ndarray | None = None, *,
                 size: int, augment: bool = True, scale: tuple[float, float] = (0.35, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True, seed: int = 0,
                 min_side: int = MIN_SIDE) -> None:
        check_size(size)
        if not (0 < scale[0] <= scale[1] <= 1):
            raise ConfigError(f"scale must satisfy 0 < lo <= hi <= 1, got {scale}")
        if not (0 < ratio[0] <= ratio[1]):
            raise ConfigError(f"ratio must satisfy 0 < lo <= hi, got {ratio}")
        self.paths = [os.fspath(p) for p in paths]
        if not self.paths:
            raise DataError("ImageDataset got no image paths")
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        if self.labels is not None and len(self.labels) != len(self.paths):
            raise DataError(f"ImageDataset: {len(self.paths)} paths but {len(self.labels)} labels")
        self.size, self.augment, self.scale, self.ratio, self.flip = int(size), augment, scale, ratio, flip
        self.seed, self.min_side = seed, min_side
        self.epoch: int | None = None
        self.skipped: dict[str, str] = {}  # path -> reason, in this process

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Make augmentation a function of ``(seed, epoch, index)``."""
        self.epoch = int(epoch)

    def load(self, index: int, attempt: int = 0, dest: torch.Tensor | np.ndarray | None = None) -> Any:
        """Decode sample ``index`` to a uint8 ``(3, S, S)`` tensor (or into ``dest``); raises :class:`ImageError`."""
        path = self.paths[index]
        if not self.augment:
            out = decode_tensor(path, self.size, center_box("center"), min_side=self.min_side, dest=dest)
        else:
            if self.epoch is None:
                rng = random.Random(int(torch.randint(0, 2**62, ()).item()))
            else:
                rng = _sample_rng(self.seed, self.epoch, index, attempt)
            out = augmented_tensor(path, self.size, rng, scale=self.scale, ratio=self.ratio, flip=self.flip,
                                   min_side=self.min_side, dest=dest)
        return out if dest is not None else out.contiguous()

    def _load_good(self, index: int, skipped: dict[str, str],
                   dest: torch.Tensor | np.ndarray | None = None) -> tuple[Any, int]:
        n = len(self.paths)
        for attempt in range(min(n, 64)):
            j = (index + attempt) % n
            if self.paths[j] in self.skipped:
                continue
            try:
                return self.load(j, attempt, dest), j
            except ImageError as e:
                self.skipped[e.path] = e.reason
                skipped[e.path] = e.reason
        path, reason = next(iter(self.skipped.items()), ("?", "?"))
        raise DataError(f"no readable image among the {min(n, 64)} files from '{self.paths[index]}' on "
                        f"(e.g. {path}: {reason}); check the data folder")

    def __getitem__(self, index: int) -> Any:
        x, j = self._load_good(int(index), {})  # (3, S, S)
        if self.labels is None:
            return x
        return x, torch.tensor(self.labels[j])

    def get_batch(self, indices: Sequence[int], out: torch.Tensor | None = None,
                  ) -> tuple[tuple[torch.Tensor, ...], dict[str, str]]:
        """Decode a batch: ``((images (B,3,S,S) uint8[, labels (B,)]), newly skipped {path: reason})``.

        ``out``: a uint8 ``(B, 3, S, S)`` tensor to fill and return (default: a new one).
        """
        skipped: dict[str, str] = {}
        x = batch_buffer((len(indices), 3, self.size, self.size)) if out is None else out
        ys = np.empty(len(indices), dtype=np.int64)
        rows = x.numpy()  # numpy views of the rows: cheaper per image than tensor ones
        for k, i in enumerate(indices):
            _, j = self._load_good(int(i), skipped, rows[k])
            if self.labels is not None:
                ys[k] = self.labels[j]
        if self.labels is None:
            return (x,), skipped
        return (x, torch.from_numpy(ys)), skipped


def _storage_uses(t: torch.Tensor) -> int:
    """How many tensors (views included) hold ``t``'s storage right now."""
    return torch._C._storage_Use_Count(t.untyped_storage()._cdata)


class _BatchRing:
    """Shared-memory batch buffers that DataLoader workers fill again and again (main-process side).

    A fresh shared-memory segment per batch costs the worker a page fault per 4 KiB (~10 ms for
    a 64x3x224x224 batch, ~0.15 ms per image: 7 % of the decode time). The ring's slots are
    allocated here before the workers start (they inherit or receive them) and bookkept here
    only: the request for a batch names the slot to fill, and the worker sends back its number.

    A slot is handed to a new request only when no tensor outside the ring holds its storage any
    more (torch's storage use count, which counts every view), so a batch the consumer keeps
    (``list(loader)``, a view, a numpy array of it) is never overwritten; with no free slot the
    request says ``None`` and the worker allocates a fresh buffer as before. A pass that ends
    normally (every request answered, its workers gone) leaves the ring to the next pass; one
    stopped early drops it (a worker may still be filling a slot).
    """

    def __init__(self, n_slots: int, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.slots: list[torch.Tensor] = []
        for _ in range(n_slots):
            t = shared_uint8(shape)
            if t is None:
                break
            self.slots.append(t)
        self._own = [_storage_uses(t) for t in self.slots]  # the ring's own references
        self._state = ["free"] * len(self.slots)  # free -> busy (a worker fills it) -> lent (yielded)

    def acquire(self) -> int | None:
        """A slot for the next request (None: the worker allocates its own buffer)."""
        for k, state in enumerate(self._state):
            if state == "lent" and _storage_uses(self.slots[k]) <= self._own[k]:
                self._state[k] = "free"
        for k, state in enumerate(self._state):
            if state == "free":
                self._state[k] = "busy"
                return k
        return None

    def lend(self, k: int, n: int) -> torch.Tensor:
        """The filled slot ``k`` (its first ``n`` rows), to yield; reused once that view is gone."""
        self._state[k] = "lent"
        return self.slots[k][:n]


class ImageFolderDataset(ImageDataset):
    """An :class:`ImageDataset` over a class-per-folder tree; ``classes`` maps ids to folder names.

    For a ``train``/``valid``/``test`` layout, ``split`` picks the rows (class ids come from all
    splits, so they agree between datasets). Other arguments as :class:`ImageDataset`.

    Example:
        >>> ds = ImageFolderDataset("photos/train", size=128)  # doctest: +SKIP
        >>> ds.classes  # doctest: +SKIP
        ['cat', 'dog']
    """

    def __init__(self, root: str | os.PathLike, *, size: int, label_regex: str | None = None, split: str = "train",
                 **kwargs: Any) -> None:
        df, skipped = read_image_folder(root, label_regex=label_regex)
        self.classes = sorted(df["label"].unique().tolist())  # from every split: the same ids everywhere
        if "split" in df:
            if split not in set(df["split"]):
                raise ConfigError(f"'{root}' has no {split!r} split; it has {', '.join(sorted(set(df['split'])))}")
            df = df[df["split"] == split]
        codes = {c: i for i, c in enumerate(self.classes)}
        super().__init__(df["path"].tolist(), df["label"].map(codes).to_numpy(), size=size, **kwargs)
        self.read_skipped = skipped


@dataclass(frozen=True)
class _Request:
    """What the main process sends a worker for one batch: the samples and the ring slot to fill."""

    indices: list[int]
    slot: int | None


class _BatchesDataset(Dataset):
    """What a DataLoader worker runs for :class:`ImageBatches`: one whole batch per fetch.

    Given a :class:`_Request` with a slot of ``slots`` (a :class:`_BatchRing`'s buffers), the
    images are written there and only ``(slot, labels as numpy, skipped)`` goes back.
    """

    def __init__(self, dataset: ImageDataset, slots: Sequence[torch.Tensor] = ()) -> None:
        self.dataset, self.slots = dataset, list(slots)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def __getitems__(self, request: _Request | list[int]) -> Any:
        if not isinstance(request, _Request):
            return self.dataset.get_batch(request)
        if request.slot is None:
            return self.dataset.get_batch(request.indices)
        n = len(request.indices)
        out, skipped = self.dataset.get_batch(request.indices, out=self.slots[request.slot][:n])
        return request.slot, n, (out[1].numpy() if len(out) > 1 else None), skipped


class ImageBatches(IndexBatches):
    """A resumable loader that decodes, crops and flips images in worker processes.

    Pass it as ``Learner(model, train=ImageBatches(...))``: it is a
    :class:`deepfit.data.loader.BatchLoader`, so its own batch size, order and sharding are
    used. The order of epoch ``e`` and the augmentation of every sample are functions of
    ``(seed, e)``, so a run resumed mid-epoch sees the same pixels as an uninterrupted one.
    Files that fail are replaced in their batch by the next readable sample and listed in
    :attr:`skipped` (collected from all workers).

    Args:
        paths, labels: files and integer labels (labels may be None).
        size: output side in pixels.
        batch_size: samples per batch (per rank).
        augment: random resized crop + flip (default) or centre crop.
        shuffle: new order each epoch (default: ``augment``).
        drop_last, seed, rank, world_size: as :class:`deepfit.data.loader.TensorBatches`.
        num_workers: decoding processes (None: :func:`default_workers`).
        scale, ratio, flip: augmentation settings.
        min_side: images with a shorter side count as unusable.
        prefetch_factor: batches each worker prepares ahead.
        pin_memory: page-lock batches for faster copies to a GPU (workers only).

    Example:
        >>> train = ImageBatches(df["path"], codes, size=128, batch_size=64)  # doctest: +SKIP
        >>> Learner(resnet18(10), train=train).fit(5)  # doctest: +SKIP
    """

    def __init__(self, paths: Sequence[str | os.PathLike], labels: Sequence[int] | np.ndarray | None = None, *,
                 size: int, batch_size: int, augment: bool = True, shuffle: bool | None = None,
                 drop_last: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1,
                 num_workers: int | None = None, scale: tuple[float, float] = (0.35, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True, min_side: int = MIN_SIDE,
                 prefetch_factor: int = 2, pin_memory: bool = False) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset = ImageDataset(paths, labels, size=size, augment=augment, scale=scale, ratio=ratio,
                                    flip=flip, seed=seed, min_side=min_side)
        super().__init__(len(self.dataset), batch_size=batch_size,
                         shuffle=augment if shuffle is None else shuffle, drop_last=drop_last, seed=seed,
                         rank=rank, world_size=world_size)
        self.num_workers = default_workers(len(self.dataset)) if num_workers is None else int(num_workers)
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")
        self.prefetch_factor, self.pin_memory = prefetch_factor, pin_memory
        self._skipped: dict[str, str] = {}
        self._ring: _BatchRing | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_ring": None}  # shared buffers stay with the process that made them

    @property
    def skipped(self) -> list[Skipped]:
        """Files that failed so far (each once), with reasons."""
        return [Skipped(p, r) for p, r in self._skipped.items()]

    def iterate(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        self.dataset.set_epoch(epoch)
        self.dataset.skipped = dict(self._skipped)  # workers start knowing the bad files
        order = epoch_order(self.n, self.seed, epoch) if self.shuffle else torch.arange(self.n)
        batches = [order[lo:hi].tolist() for lo, hi in self.ranges(start)]
        if self.num_workers == 0:
            for idx in batches:
                out, skipped = self.dataset.get_batch(idx)
                self._skipped.update(skipped)
                yield out
            return
        ring = None
        if not self.pin_memory and hasattr(torch._C, "_storage_Use_Count"):  # pinning copies anyway
            # in flight: prefetch_factor per worker; held: the batch being used and the previous
            # one (a for-loop's variable still names it when the next is asked for)
            slots = min(len(batches), self.num_workers * self.prefetch_factor + 2)
            shape = (max((len(b) for b in batches), default=0), 3, self.dataset.size, self.dataset.size)
            ring, self._ring = self._ring, None  # a pass that ends early does not give its ring back
            if ring is None or ring.shape != shape or len(ring.slots) < slots:
                ring = _BatchRing(slots, shape)
        if ring is None or not ring.slots:
            loader = DataLoader(_BatchesDataset(self.dataset), batch_sampler=batches,
                                num_workers=self.num_workers, collate_fn=identity_collate,
                                prefetch_factor=self.prefetch_factor, persistent_workers=False,
                                pin_memory=self.pin_memory)
            for out, skipped in loader:
                self._skipped.update(skipped)
                yield out
            return
        # the requests are made lazily, as the DataLoader sends them: by then the consumer has
        # let go of (or kept) the batches before, which decides the slots that are free
        requests = (_Request(idx, ring.acquire()) for idx in batches)
        loader = DataLoader(_BatchesDataset(self.dataset, ring.slots), batch_sampler=requests,
                            num_workers=self.num_workers, collate_fn=identity_collate,
                            prefetch_factor=self.prefetch_factor, persistent_workers=False)
        for result in loader:
            if len(result) == 2:  # no slot was free: the worker's own buffer
                out, skipped = result
            else:
                slot, n, ys, skipped = result
                x = ring.lend(slot, n)
                out = (x,) if ys is None else (x, torch.from_numpy(ys))
                del x
            self._skipped.update(skipped)
            yield out
            del out, result  # before the next request is made: this batch may be free by then
        # every request was answered and the workers are gone: the next pass may refill the slots
        # (no new shared memory to fault in), each still only once the consumer has let go of it
        self._ring = ring
