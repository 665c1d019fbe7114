"""Atomic, verified checkpoint files.

A checkpoint is ``torch.save`` of plain containers and tensors (so it loads with
``weights_only=True``: no code runs), followed by a trailer: 8 magic bytes and the SHA-256 of
the payload. Writes go to a temporary file in the same directory, are flushed and fsynced,
then renamed over the target, and the directory is fsynced: a crash or SIGKILL at any moment
leaves either the old file or the new one, never a mix. Loading checks the trailer before
unpickling anything, so a truncated or corrupted file gives a :class:`CheckpointError` that
names the file.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from deepfit.errors import CheckpointError

__all__ = ["save_checkpoint", "load_checkpoint", "atomic_write_bytes", "MAGIC"]

MAGIC = b"DFCKPT01"
_TRAILER = len(MAGIC) + 32


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename, fsync directory).

    On any error (a full disk, say) the temp file is removed, ``path`` keeps its old content,
    and the error is re-raised as a :class:`CheckpointError` that names the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise CheckpointError(f"could not write {path}: {e.strerror or e}; the previous file is unchanged") from e
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not supported on this platform/filesystem
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Save ``state`` (tensors and plain containers only) atomically with a checksum trailer."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    atomic_write_bytes(path, payload + MAGIC + hashlib.sha256(payload).digest())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, verifying it first."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise CheckpointError(f"checkpoint {path} does not exist") from e
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from e
    if len(data) < _TRAILER or data[-_TRAILER:-32] != MAGIC:
        raise CheckpointError(
            f"{path} is not a complete deepfit checkpoint (truncated, or not written by deepfit); "
            "resume from another checkpoint or start afresh"
        )
    payload, digest = data[:-_TRAILER], data[-32:]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"{path} is corrupt (checksum mismatch); resume from another checkpoint or start afresh")
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise CheckpointError(f"{path} could not be loaded safely: {e}") from e
    if not isinstance(state, dict) or state.get("format") != "deepfit-checkpoint":
        raise CheckpointError(f"{path} is not a deepfit checkpoint")
    return state
