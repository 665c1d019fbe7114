"""The saved model: a directory with ``model.safetensors`` and ``deepfit.json``; no code-running formats.

``deepfit.json`` holds the format name and version, the deepfit and torch versions, the task,
the column types, the fitted preprocessing state, the target encoding, the model's name and
config, and the metrics. Loading reads and validates the JSON first (format, version, required
fields and their types, a known model name) and only then reads the weights with
``safetensors`` — a format that holds tensors and nothing else — and checks every tensor's name
and shape against the model the JSON describes. Nothing in an artifact can run code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from deepfit._version import __version__
from deepfit.errors import DeepfitError

__all__ = ["ArtifactError", "FORMAT", "FORMAT_VERSION", "KINDS", "TASKS", "artifact_files", "write_artifact",
           "read_meta", "require_fields", "read_weights", "MAX_JSON_BYTES", "MIGRATIONS"]

FORMAT = "deepfit-artifact"
FORMAT_VERSION = 3
MAX_JSON_BYTES = 64 * 1024 * 1024

# Fields every artifact has; each kind's loader checks its own with :func:`require_fields`.
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "format_version": int,
    "deepfit_version": str,
    "task": str,
    "model": dict,
    "metrics": dict,
}
# What the artifact holds (decides its loader: deepfit.tasks.TASK_MODULES) and what it predicts.
KINDS = ("table", "image", "lm", "arrays", "recommend", "forecast")
TASKS = ("classify", "regress", "multilabel", "lm", "forecast")


def _v1_to_v2(meta: dict[str, Any]) -> dict[str, Any]:
    """Format 2 (the one-shape refactor, 2026-12): ``kind`` is always written, and a table
    model's config always names its number embedding. Format-1 files without ``kind`` are
    tables (the first kind); table configs without ``ple_version`` used version "a" (the only
    one before it was an option)."""
    meta.setdefault("kind", "table")
    model = meta.get("model")
    if meta["kind"] == "table" and isinstance(model, dict) and isinstance(model.get("config"), dict):
        model["config"] = {"ple_version": "a", **model["config"]}
    return meta


def _v2_to_v3_regression_bounds(meta: dict[str, Any]) -> dict[str, Any]:
    """Format 3 (robust predictions, 2027-01): a regression target's state names its
    ``transform`` and the ``low``/``high`` bounds its outputs are clipped to. Before, targets
    were standardised as they are (``"standard"``) and outputs unbounded: null bounds, so an
    older model predicts exactly what it did."""
    target = meta.get("target")
    if isinstance(target, dict) and target.get("task") == "regress":
        for key, value in (("transform", "standard"), ("low", None), ("high", None)):
            target.setdefault(key, value)
    return meta


# format_version -> the function that turns such a deepfit.json into the next version.
MIGRATIONS = {1: _v1_to_v2, 2: _v2_to_v3_regression_bounds}


class ArtifactError(DeepfitError):
    """An artifact directory is missing, incomplete, from an unknown format, or inconsistent."""


def artifact_files(meta: dict[str, Any], weights: dict[str, torch.Tensor]) -> dict[str, bytes]:
    """The two files of an artifact, as bytes: ``deepfit.json`` and ``model.safetensors``."""
    from safetensors.torch import save

    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "deepfit_version": __version__,
            "torch_version": str(torch.__version__), **meta}
    text = json.dumps(meta, indent=2, allow_nan=False)
    return {
        "deepfit.json": (text + "\n").encode("utf-8"),
        "model.safetensors": save({k: v.detach().cpu().contiguous() for k, v in weights.items()}),
    }


def write_artifact(directory: str | os.PathLike, files: dict[str, bytes]) -> Path:
    """Write ``files`` into a fresh temp folder beside ``directory``, then rename it into place."""
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ArtifactError(f"{directory} already exists and is not empty; choose another directory")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        for name, data in files.items():
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        if directory.exists():
            directory.rmdir()
        os.replace(tmp, directory)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ArtifactError(f"could not write the artifact to {directory}: {e.strerror or e}; nothing was left behind") from e
    return directory


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and validate ``deepfit.json`` (no weights are touched)."""
    directory = Path(directory)
    path = directory / "deepfit.json"
    if not directory.is_dir():
        raise ArtifactError(f"{directory} is not a deepfit model directory (it does not exist or is a file)")
    if not path.exists():
        raise ArtifactError(f"{directory} has no deepfit.json: not a deepfit model, or an incomplete copy")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise ArtifactError(f"{path} is larger than {MAX_JSON_BYTES} bytes: refusing to read it")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not a deepfit artifact (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ArtifactError(
            f"{path} has format_version {version!r}; this deepfit ({__version__}) reads versions 1..{FORMAT_VERSION}. "
            "Upgrade deepfit to load it"
        )
    for key, kind in _REQUIRED.items():
        if not isinstance(meta.get(key), kind):
            raise ArtifactError(f"{path}: field {key!r} is missing or not a {getattr(kind, '__name__', kind)}")
    while version < FORMAT_VERSION:
        meta = MIGRATIONS[version](meta)
        version += 1
    meta["format_version"] = version
    if meta["kind"] not in KINDS:
        raise ArtifactError(f"{path}: unknown kind {meta['kind']!r} (this deepfit reads {', '.join(KINDS)}); "
                            "upgrade deepfit to load it")
    if meta["task"] not in TASKS:
        raise ArtifactError(f"{path}: unknown task {meta['task']!r}")
    model = meta["model"]
    if not isinstance(model.get("name"), str) or not isinstance(model.get("config"), dict):
        raise ArtifactError(f"{path}: field 'model' needs a string 'name' and an object 'config'")
    return meta


def require_fields(meta: dict[str, Any], fields: dict[str, type | tuple[type, ...]], directory: Any) -> None:
    """ArtifactError unless each of ``fields`` is present in ``meta`` with the given type."""
    for key, kind in fields.items():
        if not isinstance(meta.get(key), kind):
            raise ArtifactError(f"{Path(directory) / 'deepfit.json'}: field {key!r} is missing or not a "
                                f"{getattr(kind, '__name__', kind)}")


def read_weights(directory: str | os.PathLike, expected: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Load ``model.safetensors`` and check its tensors against ``expected`` names and shapes."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(directory) / "model.safetensors"
    if not path.exists():
        raise ArtifactError(f"{path} is missing: the artifact is incomplete")
    try:
        weights = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise ArtifactError(f"{path} is not a readable safetensors file: {e}") from e
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise ArtifactError(f"{path} does not match deepfit.json: missing {missing[:5]}, unexpected {extra[:5]}")
    for name, shape in expected.items():
        if weights[name].shape != shape:
            raise ArtifactError(
                f"{path}: tensor {name!r} has shape {tuple(weights[name].shape)}, deepfit.json implies {tuple(shape)}"
            )
    return weights
