"""What the image task reads: which data is for it, the training rows, the rows to predict, and
the data's identity for ``--resume``.

Training data is a folder of class folders (``root/<class>/*.jpg``, optionally under
``train``/``valid``/``test``) or a table (CSV/Parquet path or DataFrame) with an image-path
column found by type inference; the rows to predict may also be a flat folder of images or a
list of paths.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from deepfit.errors import ConfigError, DataError
from deepfit.tasks.runner import source_name

if TYPE_CHECKING:  # pragma: no cover
    from deepfit.data.images import Skipped
    from deepfit.data.table import ColumnInfo
    from deepfit.tasks.images.settings import ImageSettings

__all__ = ["has_image_column", "is_image_data", "read_training", "predict_rows", "data_fingerprint", "native_side",
           "colour_images"]


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


def _list_flat(folder: Path) -> list[str]:
    from deepfit.data.images import IMAGE_SUFFIXES

    return sorted(str(p.resolve()) for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def read_training(data: Any, settings: ImageSettings
                  ) -> tuple[pd.DataFrame, str, str, dict[str, ColumnInfo], list[Skipped]]:
    """``(frame, image_column, target, infos, skipped)`` for training data (folder, file or DataFrame)."""
    from deepfit.data.images import read_image_folder, read_image_table
    from deepfit.data.sources import read_table
    from deepfit.data.table import find_column, infer_types

    source = source_name(data)
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


def predict_rows(data: Any, image_column: str, target: str) -> tuple[pd.DataFrame, str]:
    """Rows to predict and how to name them: a folder (class folders or flat), a table, or a list of paths."""
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
    return read_image_table(data, image_column), source_name(data)


def data_fingerprint(data: Any) -> str | None:
    """Identity of the training data for ``--resume``: the file's SHA-256, or for a folder the
    SHA-256 of its listing (relative names and sizes); None for in-memory data."""
    from deepfit.tasks.runner import file_sha256

    if not isinstance(data, (str, os.PathLike)):
        return None
    p = Path(data)
    if p.is_file():
        return file_sha256(p)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(p.rglob("*")):
            if f.is_file():
                h.update(f"{f.relative_to(p)}\0{f.stat().st_size}\n".encode())
        return h.hexdigest()
    return None


def native_side(paths: list[str], k: int = 64) -> float:
    """Median short side of up to ``k`` evenly spaced images (headers only; 128 when none opens)."""
    from PIL import Image

    sides = []
    for i in np.linspace(0, len(paths) - 1, min(k, len(paths))).round().astype(int):
        try:
            with Image.open(paths[i]) as im:
                sides.append(min(im.size))
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    return float(np.median(sides)) if sides else 128.0


def colour_images(paths: list[str], k: int = 16) -> bool:
    """True when most of up to ``k`` evenly spaced images are in colour (their channels differ,
    not a grey picture stored as RGB); False when none opens."""
    from PIL import Image

    votes = []
    for i in np.linspace(0, len(paths) - 1, min(k, len(paths))).round().astype(int):
        try:
            with Image.open(paths[i]) as im:
                im.draft("RGB", (64, 64))  # JPEG: decode at a reduced size, it is only a vote
                a = np.asarray(im.convert("RGB").resize((32, 32)), dtype=np.int16)
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        votes.append(float(np.abs(a - a.mean(axis=2, keepdims=True)).mean()) > 2.0)
    return bool(votes) and sum(votes) * 2 > len(votes)
