"""The cache of converted pretrained weights: where it is, checksums, atomic writes.

A converted model is two files in :func:`cache_dir`: ``<name>.safetensors`` (the weights in
deepfit's names) and ``<name>.json`` (where they came from and the sha256 of both the source
file and the safetensors file). Each is written to a temporary file in the same folder and
renamed into place (the JSON last), so a reader never sees a half-written file. A cache entry
is used only when its JSON reads, names the same source checksum, and the safetensors file has
the checksum the JSON records; anything else (a truncated or edited file, another source
version) is rebuilt from the source.

The folder is ``$DEEPFIT_PRETRAINED_DIR`` when set, else ``$XDG_CACHE_HOME/deepfit/pretrained``
(``~/.cache/deepfit/pretrained``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from deepfit.errors import PretrainedError

__all__ = ["cache_dir", "sha256_file", "atomic_write", "cached_weights", "CACHE_FORMAT", "package_installed"]

CACHE_FORMAT = 1  # version of the JSON written beside each converted model


def cache_dir() -> Path:
    """The folder of converted weights (see the module docstring); not created here."""
    given = os.environ.get("DEEPFIT_PRETRAINED_DIR")
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "deepfit" / "pretrained"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _valid_entry(weights: Path, meta_path: Path, source_sha256: str) -> dict[str, Any] | None:
    """The entry's JSON when it matches the source and the weights file, else None."""
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        return None
    if meta.get("source", {}).get("sha256") != source_sha256 or not weights.is_file():
        return None
    if sha256_file(weights) != meta.get("sha256"):
        return None
    return meta


def cached_weights(name: str, source: Path, convert: Callable[[Path], dict[str, torch.Tensor]],
                   info: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The converted weights of ``name`` from ``source``: from the cache when it is intact, else
    converted now (``convert(source)`` -> tensors in deepfit's names) and written atomically.

    Returns ``(safetensors path, JSON meta)``; the meta carries ``name``, ``source`` (``info``
    plus the source's ``sha256``), ``sha256`` of the safetensors file and ``rebuilt`` (True when
    this call converted).
    """
    from safetensors.torch import save_file

    source_sha = sha256_file(source)
    folder = cache_dir()
    weights, meta_path = folder / f"{name}.safetensors", folder / f"{name}.json"
    meta = _valid_entry(weights, meta_path, source_sha)
    if meta is not None:
        return weights, {**meta, "rebuilt": False}
    tensors = {k: v.contiguous() for k, v in convert(source).items()}
    try:
        atomic_write(weights, lambda tmp: save_file(tensors, str(tmp), metadata={"name": name}))
        meta = {"format": CACHE_FORMAT, "name": name, "source": {**info, "sha256": source_sha},
                "sha256": sha256_file(weights), "tensors": len(tensors)}
        atomic_write(meta_path, lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))
    except OSError as e:
        raise PretrainedError(f"cannot write the converted {name} weights into {folder}: {e}; set "
                              "DEEPFIT_PRETRAINED_DIR to a writable folder") from e
    return weights, {**meta, "rebuilt": True}


def package_installed(name: str) -> bool:
    """Whether the distribution ``name`` (a package that ships weights) is installed, found by its
    metadata without importing it."""
    import importlib.metadata

    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True
