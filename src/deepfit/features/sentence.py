"""Frozen sentence embeddings of texts, computed once per distinct text (the slow step: cached).

:func:`embed_texts` returns the all-MiniLM-L6-v2 embeddings (``deepfit.models.bert``) of a list
of texts. Embedding is ~40 texts/s per thread, so every embedding is kept:

* in memory, for the process (a table run encodes its training rows several times: carve-outs,
  bags, evaluation);
* on disk, in ``$DEEPFIT_CACHE`` (default ``~/.cache/deepfit``) ``/text-embeddings/<model
  sha256[:16]>/``, one ``.npy`` file per 1,000 new texts with the SHA-256 of each text as the
  key (an index beside it, ``<file>.keys``). Files are written atomically; a file whose
  size or content does not parse is ignored (and the texts are embedded again). Set
  ``DEEPFIT_CACHE=off`` to keep only the in-memory cache.

The encoder itself is loaded once per process (:func:`encoder`).

Example:
    >>> embed_texts(["great coffee", "stale, bitter"]).shape  # doctest: +SKIP
    (2, 384)
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["embed_texts", "encoder", "encoder_identity", "cache_dir"]

_ENCODER: Any = None
_MEMORY: dict[str, dict[bytes, np.ndarray]] = {}  # model sha256 -> text sha256 -> (D,) float32
_LOADED: set[str] = set()  # model sha256 whose disk cache was read
_CHUNK = 1000


def encoder() -> Any:
    """The process's :class:`~deepfit.models.bert.MiniLM` (loaded on first use)."""
    global _ENCODER
    if _ENCODER is None:
        from deepfit.models.bert import MiniLM

        _ENCODER = MiniLM.load()
    return _ENCODER


def encoder_identity() -> dict[str, str]:
    """``{"name", "sha256"}`` of the installed encoder's weights (what an artifact records)."""
    from deepfit.models.bert import MINILM_NAME, file_sha256, minilm_files

    return {"name": MINILM_NAME, "sha256": file_sha256(minilm_files() / "model.safetensors")}


def cache_dir(sha256: str) -> Path | None:
    """The disk cache of one model's embeddings (None when ``DEEPFIT_CACHE=off``)."""
    root = os.environ.get("DEEPFIT_CACHE", "")
    if root.lower() == "off":
        return None
    base = Path(root) if root else Path.home() / ".cache" / "deepfit"
    return base / "text-embeddings" / sha256[:16]


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _read_disk(folder: Path, dim: int, memory: dict[bytes, np.ndarray]) -> None:
    for keys_file in sorted(folder.glob("*.keys")):
        try:
            keys = keys_file.read_bytes()
            values = np.load(keys_file.with_suffix(".npy"), allow_pickle=False)
        except (OSError, ValueError):
            continue  # damaged or half-deleted: those texts are embedded again
        n = len(keys) // 32
        if len(keys) % 32 or values.shape != (n, dim) or values.dtype != np.float32 or not np.isfinite(values).all():
            continue
        for i in range(n):
            memory.setdefault(keys[32 * i: 32 * (i + 1)], values[i])


def _write_disk(folder: Path, keys: list[bytes], values: np.ndarray) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        for suffix, write in ((".npy", lambda f: np.save(f, values, allow_pickle=False)),
                              (".keys", lambda f: f.write(b"".join(keys)))):
            tmp = folder / f".{name}{suffix}.tmp"
            with open(tmp, "wb") as f:
                write(f)
            os.replace(tmp, folder / f"{name}{suffix}")  # .npy first: a .keys file always has its values
    except OSError:
        pass  # a read-only home: the in-memory cache still holds them


def embed_texts(texts: list[str], *, progress: bool = False) -> np.ndarray:
    """``(N, 384)`` float32 unit-length embeddings of ``texts`` (cached; see the module docstring)."""
    model = encoder()
    sha = model.sha256
    memory = _MEMORY.setdefault(sha, {})
    folder = cache_dir(sha)
    if folder is not None and sha not in _LOADED and folder.is_dir():
        _read_disk(folder, model.config.dim, memory)
    _LOADED.add(sha)
    keys = [_key(t) for t in texts]
    todo = list(dict.fromkeys(k for k in keys if k not in memory))  # distinct, in order
    if todo:
        first = dict(zip(keys, texts))
        if progress:
            print(f"text: embedding {len(todo)} distinct texts with {model.name} (frozen; cached for later runs)",
                  flush=True)
        for start in range(0, len(todo), _CHUNK):
            chunk = todo[start: start + _CHUNK]
            values = model.embed([first[k] for k in chunk]).numpy().astype(np.float32)
            memory.update(zip(chunk, values))
            if folder is not None:
                _write_disk(folder, chunk, values)
    out = np.zeros((len(texts), model.config.dim), np.float32)
    for i, k in enumerate(keys):
        out[i] = memory[k]
    return out
