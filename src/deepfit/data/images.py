"""Image data: folder and table readers, a robust Pillow decoder, and worker-process loaders.

Readers turn image files into a table ``(path, label[, split])``:

* :func:`read_image_folder` — one sub-folder per class (``root/cat/*.jpg``); a root holding
  ``train`` plus ``valid``/``val``/``test`` folders of class folders adds a ``split`` column;
  with ``label_regex`` the label is the first group of a regex on each file name instead.
* :func:`read_image_table` — a CSV/Parquet file or DataFrame with an image-path column; relative
  paths are taken relative to the file's folder (or ``base_dir``).

Decoding (:func:`decode_image`) is built for speed and for bad input:

* JPEGs (YCbCr or grayscale) are decoded by simplejpeg (libjpeg-turbo straight into a numpy
  array) when it is installed — about 1.2-1.3x faster than Pillow here; at a reduced DCT scale
  (1/2, 1/4, 1/8) whenever the kept region is at least twice the target, never below it.
  Augmented training crops use libjpeg-turbo's fast IDCT and chroma upsampling (~7 % less decode
  time, pixels within a few levels). Every other file goes through Pillow, JPEGs drafted at the
  same scales (``Image.draft``);
* the crop is cut from the decoded array and resized by torch's antialiased bilinear kernel on
  uint8 (about 3x faster than Pillow's ``resize``, same pixels within rounding);
* the EXIF orientation tag is honoured; modes are converted to RGB: grayscale and palette
  directly, alpha (RGBA, LA, PA, palette transparency) composited on white, 16-bit and 32-bit
  integer and float grayscale scaled to 8 bits, CMYK/YCbCr/LAB/HSV converted;
* every failure becomes an :class:`ImageError` with a short reason (``"zero-byte file"``,
  ``"truncated JPEG"``, ``"not an image"``, ``"too small: 3x2 < 8x8"``, ``"unreadable: ..."``).
  Readers and loaders turn these into :class:`Skipped` records instead of stopping. A JPEG with a
  recoverable glitch (junk bytes before a marker) is decoded, as Pillow would.

Images whose short side is below :data:`MIN_SIDE` (8 px) are rejected: nothing can be learnt
from them and a crop would only magnify noise.

Loaders: :func:`decode_images` decodes a whole list once (worker processes, order kept) into
one uint8 tensor — the in-memory cache for sets that fit, optionally kept on disk
(``cache_dir``) for the next run; :class:`ImageDataset` (a map-style
``Dataset``) and :class:`ImageBatches` (a resumable ``BatchLoader``) decode, random-resized-crop
and flip in worker processes for sets that do not. Augmentation of sample ``i`` in epoch ``e``
is a pure function of ``(seed, e, i)``, so resumed runs and any number of workers see the same
pixels. A file that fails at epoch time is replaced by the next readable sample (the batch keeps
its size) and recorded in ``ImageBatches.skipped``. ``ImageBatches`` workers write into a ring of
shared-memory batch buffers that are reused once no tensor of the consumer holds them any more.

Example:
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for label in ("cat", "dog"):
    ...     (d / label).mkdir()
    ...     Image.new("RGB", (40, 30), "red").save(d / label / "a.jpg")
    >>> df, skipped = read_image_folder(d)
    >>> sorted(df["label"]), skipped
    (['cat', 'dog'], [])
    >>> decode_image(df["path"][0], 16).shape
    (16, 16, 3)
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import random
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from deepfit.data.loader import IndexBatches, epoch_order
from deepfit.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "IMAGE_SUFFIXES",
    "MIN_SIDE",
    "JPEG_DECODER",
    "ImageError",
    "Skipped",
    "read_image_folder",
    "read_image_table",
    "decode_image",
    "decode_image_augmented",
    "decode_images",
    "default_workers",
    "ImageDataset",
    "ImageFolderDataset",
    "ImageBatches",
]

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                                   ".pgm", ".pbm", ".jfif")
MIN_SIDE = 8  # images whose short side is smaller are skipped ("too small")

SPLIT_NAMES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "test": "test"}
CROPS = ("center", "squash")


class ImageError(DataError):
    """One image file cannot be used; ``reason`` is the short explanation, ``path`` the file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Skipped:
    """An unusable file and why (``"zero-byte file"``, ``"truncated JPEG"``, ``"not an image"``, ...)."""

    path: str
    reason: str


# ----------------------------------------------------------------------------- readers


def read_image_folder(root: str | os.PathLike, *, label_regex: str | None = None) -> tuple[pd.DataFrame, list[Skipped]]:
    """Read a folder of images into a table of absolute paths and labels.

    Layouts:

    * ``root/<label>/**/*.jpg`` — one sub-folder per class (nested folders inside a class are read);
    * ``root/train/<label>/...`` plus ``root/valid|val|validation|test/<label>/...`` — adds a
      ``split`` column (``"train"``, ``"valid"``, ``"test"``);
    * with ``label_regex`` — every image below ``root`` (or below each split folder), the label
      being the regex's first group searched in the file name, e.g. ``r"^(.+)_\\d+\\."`` for
      ``great_pyrenees_173.jpg``.

    Hidden files and folders (``.name``) are ignored. Files without an image suffix, zero-byte
    files, images outside class folders, names the regex does not match and unreadable folders
    are returned as :class:`Skipped` records, not errors. Contents are not decoded here.

    Args:
        root: the folder.
        label_regex: take labels from file names instead of folder names.

    Returns:
        ``(table, skipped)``: a DataFrame with ``path`` (absolute) and ``label`` (str) columns, plus
        ``split`` for split layouts, sorted by split, label and path; and the skipped files.

    Raises:
        DataError: ``root`` is missing or not a folder; no images; a class folder without images;
            fewer than two classes; a valid/test class that is not among the training classes.
        ConfigError: ``label_regex`` does not compile or has no group.

    Example:
        >>> df, skipped = read_image_folder("photos")  # doctest: +SKIP
    """
    import pandas as pd

    regex = _compile_regex(label_regex)
    base = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
    if not base.exists():
        raise DataError(f"image folder '{base}' does not exist; check the path")
    if not base.is_dir():
        raise DataError(f"'{base}' is a file, not a folder; pass a folder with one sub-folder per class "
                        "(or a CSV with an image-path column to read_image_table)")
    skipped: list[Skipped] = []
    files, dirs = _list_dir(base, skipped)
    if files is None:
        raise DataError(f"image folder '{base}' is unreadable ({skipped[-1].reason}); fix its permissions")
    splits: dict[str, Path] = {}
    for d in dirs:
        split = SPLIT_NAMES.get(d.name.lower())
        if split in splits:
            raise DataError(f"'{base}' has two {split} folders ('{splits[split].name}' and '{d.name}'); "
                            "merge them into one")
        if split is not None:
            splits[split] = d
    if "train" in splits and len(splits) > 1:
        frames = []
        for split in ("train", "valid", "test"):
            if split in splits:
                rows = _read_tree(splits[split], regex, label_regex, skipped)
                frames.append(pd.DataFrame({"path": [p for p, _ in rows], "label": [lab for _, lab in rows],
                                            "split": split}))
        for d in dirs:
            if d not in splits.values():
                skipped.append(Skipped(str(d), "not a split folder (expected train, valid/val, test)"))
        for f in files:
            skipped.append(Skipped(str(f), "not in a split folder"))
        df = pd.concat(frames, ignore_index=True)
        train_labels = set(df.loc[df["split"] == "train", "label"])
        _check_classes(sorted(train_labels), splits["train"])
        for split in ("valid", "test"):
            extra = sorted(set(df.loc[df["split"] == split, "label"]) - train_labels)
            if extra:
                raise DataError(f"'{splits[split]}' has classes with no training images: {', '.join(extra[:10])}; "
                                f"add them to '{splits['train']}' or remove them")
    else:
        rows = _read_tree(base, regex, label_regex, skipped, files=files, dirs=dirs)
        df = pd.DataFrame({"path": [p for p, _ in rows], "label": [lab for _, lab in rows]})
        _check_classes(sorted(set(df["label"])), base)
    return df.reset_index(drop=True), skipped


def _compile_regex(label_regex: str | None) -> re.Pattern | None:
    if label_regex is None:
        return None
    try:
        regex = re.compile(label_regex)
    except re.error as e:
        raise ConfigError(f"label_regex {label_regex!r} is not a valid regular expression: {e}") from e
    if regex.groups < 1:
        raise ConfigError(f"label_regex {label_regex!r} has no group; put the label in parentheses, "
                          r"e.g. '^(.+)_\d+\.jpg$'")
    return regex


def _check_classes(labels: list[str], where: Path) -> None:
    if len(labels) == 1:
        raise DataError(f"only one class ({labels[0]!r}) in '{where}'; a classifier needs at least two: "
                        "add a folder of images for each other class")


def _list_dir(folder: Path, skipped: list[Skipped]) -> tuple[list[Path] | None, list[Path]]:
    """Non-hidden files and folders directly in ``folder`` (sorted); None if unreadable."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        skipped.append(Skipped(str(folder), _os_reason(e)))
        return None, []
    files: list[Path] = []
    dirs: list[Path] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError as e:
            skipped.append(Skipped(entry.path, _os_reason(e)))
            continue
        (dirs if is_dir else files).append(Path(entry.path))
    return files, dirs


def _image_files(folder: Path, skipped: list[Skipped], *, files: list[Path] | None = None,
                 dirs: list[Path] | None = None) -> list[Path]:
    """Image files below ``folder`` (recursively, sorted); other files go to ``skipped``."""
    out: list[Path] = []
    seen: set[str] = set()
    stack: list[tuple[Path, list[Path] | None, list[Path] | None]] = [(folder, files, dirs)]
    while stack:
        d, fs, ds = stack.pop()
        real = os.path.realpath(d)
        if real in seen:  # a symlink loop
            continue
        seen.add(real)
        if fs is None:
            fs, ds = _list_dir(d, skipped)
            if fs is None:
                continue
        for f in fs:
            reason = _file_reason(f)
            if reason is None:
                out.append(f)
            else:
                skipped.append(Skipped(str(f), reason))
        stack.extend((sub, None, None) for sub in reversed(ds or []))
    return sorted(out)


def _file_reason(f: Path) -> str | None:
    """Why a listed file cannot be an image (by name and size only), or None."""
    suffix = f.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        return f"not an image file (suffix {suffix or 'none'!r})" if suffix else "not an image file (no suffix)"
    try:
        size = f.stat().st_size
    except OSError as e:
        return _os_reason(e)
    return "zero-byte file" if size == 0 else None


def _read_tree(root: Path, regex: re.Pattern | None, label_regex: str | None, skipped: list[Skipped], *,
               files: list[Path] | None = None, dirs: list[Path] | None = None) -> list[tuple[str, str]]:
    """``(path, label)`` rows of one tree: class folders, or file names through ``regex``."""
    if files is None:
        files, dirs = _list_dir(root, skipped)
        if files is None:
            raise DataError(f"folder '{root}' is unreadable ({skipped[-1].reason}); fix its permissions")
    if regex is not None:
        rows = []
        for f in _image_files(root, skipped, files=files, dirs=dirs):
            m = regex.search(f.name)
            if m is None or not m.group(1):
                what = "does not match" if m is None else "gives an empty label with"
                skipped.append(Skipped(str(f), f"file name {what} label_regex {label_regex!r}"))
            else:
                rows.append((str(f), m.group(1)))
        if not rows:
            raise DataError(f"no image file name in '{root}' matches label_regex {label_regex!r}; "
                            f"check the pattern against a name such as {_example_name(root, skipped)!r}")
        return rows
    rows = []
    n_classes = 0
    loose = sum(f.suffix.lower() in IMAGE_SUFFIXES for f in files)
    for d in dirs or []:
        before = len(skipped)
        listed, subdirs = _list_dir(d, skipped)
        if listed is None:
            continue  # unreadable class folder: recorded in skipped, not a class
        images = _image_files(d, skipped, files=listed, dirs=subdirs)
        if not images:
            others = len(skipped) - before
            detail = f"{others} other file(s) skipped" if others else "it is empty"
            raise DataError(f"class folder '{d}' has no images ({detail}); add images with one of the suffixes "
                            f"{', '.join(IMAGE_SUFFIXES[:5])}, ... or remove the folder")
        n_classes += 1
        rows.extend((str(f), d.name) for f in images)
    for f in files:
        if f.suffix.lower() in IMAGE_SUFFIXES:
            skipped.append(Skipped(str(f), f"not in a class folder (move it to '{root}/<class>/')"))
        else:
            reason = _file_reason(f) or "not in a class folder"
            skipped.append(Skipped(str(f), reason))
    if n_classes == 0:
        if loose:
            raise DataError(f"'{root}' holds {loose} image(s) but no class folders; put each class in its own "
                            f"sub-folder ('{root}/cat/*.jpg'), or pass label_regex to take labels from file names")
        raise DataError(f"no images in '{root}'; expected one sub-folder of images per class ('{root}/cat/*.jpg')")
    return rows


def _example_name(root: Path, skipped: list[Skipped]) -> str:
    for s in reversed(skipped):
        if s.path.startswith(str(root)):
            return os.path.basename(s.path)
    return "?"


def read_image_table(data: str | os.PathLike | pd.DataFrame, path_column: str, *,
                     base_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """A table with an image-path column, the paths made absolute.

    Relative paths are resolved against ``base_dir`` if given, else the folder of the CSV/Parquet
    file, else (for a DataFrame) the current directory. Files are not opened; missing ones are
    reported by the decoder (``"file not found"``) unless none exists, which is an error.

    Args:
        data: a CSV/TSV/Parquet path (read with :func:`deepfit.data.sources.read_table`) or a DataFrame.
        path_column: the column holding image paths.
        base_dir: folder that relative paths start from.

    Returns:
        A copy of the table with ``path_column`` holding absolute path strings.

    Raises:
        ColumnNotFound: no such column. DataError: blank paths, or no path exists.

    Example:
        >>> import os, tempfile, pandas as pd
        >>> d = tempfile.mkdtemp(); open(os.path.join(d, "a.jpg"), "wb").close()
        >>> table = read_image_table(pd.DataFrame({"file": ["a.jpg"]}), "file", base_dir=d)
        >>> table["file"][0] == os.path.join(d, "a.jpg")
        True
    """
    import pandas as pd

    from deepfit.data.sources import read_table
    from deepfit.data.table import find_column

    if isinstance(data, pd.DataFrame):
        df = read_table(data)
        source, start = "DataFrame", Path(base_dir) if base_dir is not None else Path.cwd()
    else:
        df = read_table(data)
        source = os.fspath(data)
        start = Path(base_dir) if base_dir is not None else Path(os.path.abspath(source)).parent
    col = find_column(df, path_column, role="image-path column", source=source)
    values = df[col]
    blank = values.isna() | (values.astype(str).str.strip() == "")
    if blank.any():
        rows = np.flatnonzero(blank.to_numpy())[:5].tolist()
        raise DataError(f"image-path column {col!r} in {source} has {int(blank.sum())} blank value(s) "
                        f"(rows {rows}); fill or drop those rows")
    start = Path(os.path.abspath(os.path.expanduser(os.fspath(start))))
    df[col] = [os.path.normpath(os.path.join(start, os.path.expanduser(str(p).strip()))) for p in values]
    if len(df) and not any(os.path.exists(p) for p in df[col]):
        raise DataError(f"none of the {len(df)} paths in column {col!r} of {source} exists (e.g. '{df[col].iloc[0]}'); "
                        f"relative paths are resolved from '{start}': pass base_dir= to change that")
    return df


# ----------------------------------------------------------------------------- decoding


def _os_reason(e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return "file not found"
    if isinstance(e, IsADirectoryError):
        return "is a folder, not a file"
    return f"unreadable: {type(e).__name__}: {e.strerror or e}"


def _damage_reason(e: Exception, fmt: str) -> str:
    msg = str(e)
    if "truncated" in msg.lower() or "broken data stream" in msg:
        return f"truncated {fmt}"
    return f"corrupt {fmt}: {msg}"


_MAGIC = ((b"\xff\xd8", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"), (b"RIFF", "WEBP"),
          (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def _sniff_format(data: bytes) -> str:
    """The format named by the file's first bytes (for messages about files Pillow rejected)."""
    head = data[:8]
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return "image"


def _load_simplejpeg() -> Any:
    try:
        import simplejpeg
    except ImportError:
        return None
    return simplejpeg


_simplejpeg = _load_simplejpeg()
# JPEGs whose kept region is at least this many times the target are decoded at a reduced DCT scale.
_DRAFT_FROM = 2.0
# libjpeg-turbo's fast integer IDCT and its merged (non-"fancy") chroma upsampling, for augmented
# training crops only: about 7 % less decode time (1.62 -> 1.50 ms per 375x500 q90 JPEG, one
# core), at a mean change of ~2 levels (max ~60, on sharp colour edges) in a 224 px crop.
# Whole pipeline (bench/images_pipeline.py files, 1 worker, same-run medians pinned to one
# core): decode_ratio_vs_pillow 0.72 -> 0.79; in one process 0.84 -> 0.89.
# Evaluation crops and the decode cache keep the exact decoding (equal to Pillow's within 1).
_FAST_DECODE = {"fastdct": True, "fastupsample": True}
JPEG_DECODER = "simplejpeg" if _simplejpeg is not None else "pillow"  # for reports and benchmarks


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageError(path, _os_reason(e)) from e
    if not data:
        raise ImageError(path, "zero-byte file")
    return data


def _check_min_side(path: str, w: int, h: int, min_side: int) -> None:
    if min(w, h) < min_side:
        raise ImageError(path, f"too small: {w}x{h} < {min_side}x{min_side}")


def _open(path: str, data: bytes, min_side: int) -> tuple[Any, int, int, int]:
    """The opened (header only) image, its upright size and EXIF orientation."""
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as e:
        raise ImageError(path, "not an image (Pillow cannot identify the format)") from e
    except Image.DecompressionBombError as e:
        raise ImageError(path, f"too large: {e}") from e
    except Exception as e:  # noqa: BLE001 - Pillow plugins raise many types on malformed headers
        raise ImageError(path, _damage_reason(e, _sniff_format(data))) from e
    w, h = im.size
    _check_min_side(path, w, h, min_side)
    try:
        orientation = int(im.getexif().get(0x0112, 1)) if "exif" in im.info or im.format != "JPEG" else 1
    except Exception:  # noqa: BLE001 - a damaged EXIF block must not lose the image
        orientation = 1
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return im, w, h, orientation


def _fast_jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(w, h)`` of a plain YCbCr/grayscale JPEG without EXIF that simplejpeg can decode, else None.

    Such files (most photos in datasets) skip Pillow entirely; files with an EXIF block go
    through Pillow, which reads the orientation tag.
    """
    if _simplejpeg is None or not data.startswith(b"\xff\xd8") or _has_exif(data):
        return None
    try:
        h, w, colorspace, _ = _simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None  # Pillow will say what is wrong
    return (w, h) if colorspace in ("YCbCr", "Gray") else None


def _over_pixel_limit(w: int, h: int) -> bool:
    limit = _pil_image().MAX_IMAGE_PIXELS  # read each time: callers may change it
    return limit is not None and w * h > 2 * limit


def _pil_image() -> Any:
    """``PIL.Image``, imported once (an import statement per image cost ~2 % of the decode loop)."""
    global _PIL_IMAGE
    if _PIL_IMAGE is None:
        from PIL import Image

        _PIL_IMAGE = Image
    return _PIL_IMAGE


_PIL_IMAGE: Any = None


def _has_exif(data: bytes) -> bool:
    """Whether a JPEG has an EXIF (APP1) segment before its image data (walks the segment headers)."""
    pos, n = 2, len(data)
    while pos + 4 <= n and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xE1 and data[pos + 4:pos + 10] == b"Exif\x00\x00":
            return True
        if marker == 0xDA or 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return False  # start of scan or of frame: EXIF would have come before
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return pos + 4 <= n and data.find(b"Exif\x00\x00", 0, 1 << 16) >= 0  # odd layout: search


def _dct_scale(reduce: float) -> int:
    """The DCT downscale (1, 2, 4 or 8) for a kept region ``reduce`` times the target: never below it."""
    if reduce < _DRAFT_FROM:
        return 1
    return min(8, 1 << int(math.log2(reduce)))


def _simplejpeg_decode(path: str, data: bytes, size: tuple[int, int], reduce: float = 1.0, *,
                       fast: bool = False) -> np.ndarray:
    """A JPEG of stored size ``size`` (w, h) as uint8 ``(H, W, 3)``, at 1/:func:`_dct_scale` of it.

    Only the power-of-two scales: libjpeg-turbo's other N/8 scales have no SIMD IDCT and are
    slower than the full decode (375x500: 7/8 2.4 ms, 3/4 1.9 ms, full 1.6 ms).
    """
    scale = _dct_scale(reduce)
    # simplejpeg picks the smallest DCT scale whose output is at least min_width x min_height
    kw: dict[str, Any] = dict(_FAST_DECODE) if fast else {}
    if scale > 1:
        kw.update(min_width=math.ceil(size[0] / scale), min_height=math.ceil(size[1] / scale))
    try:
        return _simplejpeg.decode_jpeg(data, colorspace="RGB", **kw)
    except ValueError as e:
        msg = str(e)
        if "Premature end" in msg:
            raise ImageError(path, "truncated JPEG") from e
        if not msg.startswith("Corrupt JPEG data"):
            raise ImageError(path, f"corrupt JPEG: {msg}") from e
    try:  # a recoverable glitch (e.g. junk before a marker): decode it as Pillow would
        return _simplejpeg.decode_jpeg(data, colorspace="RGB", strict=False, **kw)
    except ValueError as e:
        raise ImageError(path, f"corrupt JPEG: {e}") from e


def _to_rgb(im: Any) -> Any:
    """Any Pillow mode as 8-bit RGB; alpha composited on white, high bit depths scaled."""
    from PIL import Image

    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        out = Image.new("RGB", im.size, (255, 255, 255))
        out.paste(im, mask=im.getchannel("A"))
        return out
    if mode.startswith("I") or mode == "F":
        a = np.asarray(im)
        if mode == "F":
            a = a.astype(np.float64)
            finite = a[np.isfinite(a)]
            a = np.nan_to_num(a) * (255.0 if finite.size and finite.max() <= 1.0 else 1.0)
        elif a.dtype.itemsize > 1 and (mode.startswith("I;16") or (a.size and a.max() > 255)):
            a = a.astype(np.float64) / 257.0  # 16-bit range -> 8-bit
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    return im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, RGBX, ...


def _decode_pixels(path: str, data: bytes, im: Any, reduce: float, fast: bool = False) -> np.ndarray:
    """The stored (not yet upright) pixels as uint8 ``(H, W, 3)``, possibly at reduced scale.

    Measured here (one core): simplejpeg (libjpeg-turbo straight into a numpy array) decodes a
    375x500 q90 JPEG in ~0.85x the CPU time of Pillow, whose RGB images are stored 4 bytes per
    pixel and need another copy to become an array; at a reduced DCT scale it is as fast as
    Pillow's ``draft`` or faster (900x1200: 1/2 7.1 vs 7.7 ms, 1/8 4.9 vs 6.0 ms). So simplejpeg
    for every JPEG it can decode; Pillow (with ``draft`` when the kept region is at least twice
    the target) for the rest.
    """
    from PIL import Image

    fmt = im.format or "image"
    if fmt == "JPEG" and im.mode in ("RGB", "L") and _simplejpeg is not None:
        return _simplejpeg_decode(path, data, im.size, reduce, fast=fast)
    try:
        if fmt == "JPEG" and reduce >= _DRAFT_FROM:  # DCT-domain downscaling; the kept region stays >= size px
            im.draft(im.mode, (max(1, math.ceil(im.size[0] / reduce)), max(1, math.ceil(im.size[1] / reduce))))
        im.load()
    except Image.DecompressionBombError as e:
        raise ImageError(path, f"too large: {e}") from e
    except Exception as e:  # noqa: BLE001 - decoders raise many types on damaged data
        raise ImageError(path, _damage_reason(e, fmt)) from e
    return np.asarray(_to_rgb(im))


def _upright(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply the EXIF orientation (a view where possible)."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return a.transpose(1, 0, 2)
    if orientation == 6:  # rotate 90 degrees clockwise
        return a.transpose(1, 0, 2)[:, ::-1]
    if orientation == 7:
        return a[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:  # rotate 90 degrees counter-clockwise
        return a.transpose(1, 0, 2)[::-1]
    return a


Box = Callable[[int, int], tuple[float, float, float, float]]


def _decode_tensor(path: str, size: int, box_fn: Box, *, min_side: int = MIN_SIDE, flip: bool = False,
                   fast: bool = False, dest: torch.Tensor | np.ndarray | None = None) -> Any:
    """Decode ``path``, cut the region ``box_fn(w, h)`` of the upright image, resize: uint8 ``(3, size, size)``.

    The resize is torch's antialiased bilinear on uint8 (an AVX2 kernel: about 3x faster than
    Pillow's ``resize`` here, same pixels within rounding). ``fast``: libjpeg-turbo's faster,
    slightly less exact JPEG decoding (:data:`_FAST_DECODE`), for augmented training crops.
    ``dest``: a ``(3, size, size)`` tensor or numpy array to write the result into (and return);
    without it the result is a new tensor in channels-last layout (strides ``(1, 3 * size, 3)``).
    """
    data = _read_bytes(path)
    plain = _fast_jpeg_size(data)
    if plain is not None and _over_pixel_limit(*plain):
        plain = None  # Pillow raises its decompression-bomb error with the numbers
    if plain is not None:  # no Pillow at all
        w, h = plain
        _check_min_side(path, w, h, min_side)
        x0, y0, x1, y1 = box_fn(w, h)
        a = _simplejpeg_decode(path, data, plain, min(x1 - x0, y1 - y0) / size, fast=fast)
    else:
        im, w, h, orientation = _open(path, data, min_side)
        try:
            x0, y0, x1, y1 = box_fn(w, h)
            a = _upright(_decode_pixels(path, data, im, min(x1 - x0, y1 - y0) / size, fast), orientation)
        finally:
            im.close()
    sy, sx = a.shape[0] / h, a.shape[1] / w  # < 1 when decoded at reduced scale
    xa, ya = min(int(round(x0 * sx)), a.shape[1] - 1), min(int(round(y0 * sy)), a.shape[0] - 1)
    xb, yb = max(int(round(x1 * sx)), xa + 1), max(int(round(y1 * sy)), ya + 1)
    region = a[ya:yb, xa:xb]
    if any(st < 0 for st in region.strides):
        region = np.ascontiguousarray(region)
    if region.flags.writeable:
        t = torch.from_numpy(region)
    else:
        with warnings.catch_warnings():  # Pillow's arrays are read-only; this one is only read
            warnings.simplefilter("ignore", UserWarning)
            t = torch.from_numpy(region)
    # (1, 3, h, w) with channels-last strides, the batch stride included: torch then allocates its
    # output channels-last too, and its uint8 kernel skips a scalar repacking of the result into
    # planes (~0.1 ms of ~0.45 at 224 px; same pixels). Copying into ``dest`` does that transpose.
    (h, w), (sh, sw, sc) = region.shape[:2], t.stride()
    t = t.as_strided((1, 3, h, w), (h * sh, sc, sh, sw))
    out = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    if dest is None:
        return out.flip(-1) if flip else out
    # numpy copies through a reversed view: no flipped intermediate (torch has no negative strides)
    np.copyto(dest if isinstance(dest, np.ndarray) else dest.numpy(), out.numpy()[:, :, ::-1] if flip else out.numpy())
    return dest  # (3, size, size)


def _center_box(crop: str) -> Box:
    if crop == "squash":
        return lambda w, h: (0, 0, w, h)

    def center(w: int, h: int) -> tuple[float, float, float, float]:
        s = min(w, h)
        x0, y0 = (w - s) // 2, (h - s) // 2
        return x0, y0, x0 + s, y0 + s

    return center


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise ConfigError(f"image size must be a positive int, got {size!r}")


def decode_image(path: str | os.PathLike, size: int, *, crop: str = "center", min_side: int = MIN_SIDE) -> np.ndarray:
    """Decode one image file to a ``(size, size, 3)`` uint8 RGB array.

    Args:
        path: the file.
        size: output side in pixels.
        crop: ``"center"`` (the largest centred square, resized) or ``"squash"`` (the whole image
            resized, aspect ratio not kept).
        min_side: images with a shorter side are rejected.

    Raises:
        ImageError: the file cannot be used; ``.reason`` says why.
        ConfigError: bad ``size`` or ``crop``.

    Example:
        >>> decode_image("photos/cat/1.jpg", 224).dtype  # doctest: +SKIP
        dtype('uint8')
    """
    _check_size(size)
    if crop not in CROPS:
        raise ConfigError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
    out = _decode_tensor(os.fspath(path), int(size), _center_box(crop), min_side=min_side)
    return np.ascontiguousarray(out.permute(1, 2, 0).numpy())  # channels-last: no copy


def _rrc_box(rng: random.Random, scale: tuple[float, float],
             ratio: tuple[float, float]) -> Box:
    """Random-resized-crop box sampler (the torchvision algorithm: 10 tries, then a centre crop)."""
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])

    def box(w: int, h: int) -> tuple[float, float, float, float]:
        area = w * h
        for _ in range(10):
            target = area * rng.uniform(scale[0], scale[1])
            r = math.exp(rng.uniform(log_lo, log_hi))
            cw, ch = int(round(math.sqrt(target * r))), int(round(math.sqrt(target / r)))
            if 0 < cw <= w and 0 < ch <= h:
                x0 = rng.randint(0, w - cw)
                y0 = rng.randint(0, h - ch)
                return x0, y0, x0 + cw, y0 + ch
        r_img = w / h
        if r_img < ratio[0]:
            cw, ch = w, int(round(w / ratio[0]))
        elif r_img > ratio[1]:
            cw, ch = int(round(h * ratio[1])), h
        else:
            cw, ch = w, h
        x0, y0 = (w - cw) // 2, (h - ch) // 2
        return x0, y0, x0 + cw, y0 + ch

    return box


def decode_image_augmented(path: str | os.PathLike, size: int, *, rng: np.random.Generator | random.Random,
                           scale: tuple[float, float] = (0.35, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                           flip: bool = True, min_side: int = MIN_SIDE) -> np.ndarray:
    """Decode with a random resized crop (area fraction ``scale``, aspect ``ratio``) and a random flip.

    The crop (torchvision's algorithm: 10 tries, then a centre crop) is chosen before decoding,
    so a JPEG whose crop is at least twice ``size`` is decoded at a reduced DCT scale. ``rng`` is
    a ``random.Random`` or a numpy Generator. Returns a ``(size, size, 3)`` uint8 array.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> decode_image_augmented("photos/cat/1.jpg", 128, rng=rng).shape  # doctest: +SKIP
        (128, 128, 3)
    """
    _check_size(size)
    if isinstance(rng, np.random.Generator):
        rng = random.Random(int(rng.integers(0, 2**63)))
    out = _augmented_tensor(os.fspath(path), int(size), rng, scale, ratio, flip, min_side)
    return np.ascontiguousarray(out.permute(1, 2, 0).numpy())


def _augmented_tensor(path: str, size: int, rng: random.Random, scale: tuple[float, float],
                      ratio: tuple[float, float], flip: bool, min_side: int,
                      dest: torch.Tensor | np.ndarray | None = None) -> Any:
    do_flip = bool(flip and rng.random() < 0.5)
    return _decode_tensor(path, size, _rrc_box(rng, scale, ratio), min_side=min_side, flip=do_flip, fast=True,
                          dest=dest)


# ----------------------------------------------------------------------------- many images, worker processes


def default_workers(n: int | None = None) -> int:
    """Worker processes for decoding ``n`` files: the usable cores, none for small jobs."""
    if n is not None and n < 64:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(cores, 8))


class _Chunks:
    """A map-style dataset whose item ``k`` is chunk ``k`` of the files, decoded."""

    def __init__(self, paths: Sequence[str], size: int, crop: str, chunk: int, min_side: int) -> None:
        self.paths, self.size, self.crop, self.chunk, self.min_side = paths, size, crop, chunk, min_side

    def __len__(self) -> int:
        return math.ceil(len(self.paths) / self.chunk)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, np.ndarray, list[str | None]]:
        paths = self.paths[k * self.chunk:(k + 1) * self.chunk]
        out = _batch_buffer((len(paths), 3, self.size, self.size))
        ok = np.zeros(len(paths), dtype=bool)
        reasons: list[str | None] = [None] * len(paths)
        box = _center_box(self.crop)
        for i, p in enumerate(paths):
            try:
                _decode_tensor(p, self.size, box, min_side=self.min_side, dest=out[i])
            except ImageError as e:
                reasons[i] = e.reason
                continue
            ok[i] = True
        return out[torch.from_numpy(ok)] if not ok.all() else out, ok, reasons


def _identity(x: Any) -> Any:
    return x


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
    _check_size(size)
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
                        num_workers=workers if n > chunk else 0, collate_fn=_identity)
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


# ----------------------------------------------------------------------------- streaming datasets


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
        _check_size(size)
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
            out = _decode_tensor(path, self.size, _center_box("center"), min_side=self.min_side, dest=dest)
        else:
            if self.epoch is None:
                rng = random.Random(int(torch.randint(0, 2**62, ()).item()))
            else:
                rng = _sample_rng(self.seed, self.epoch, index, attempt)
            out = _augmented_tensor(path, self.size, rng, self.scale, self.ratio, self.flip, self.min_side, dest)
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
        x = _batch_buffer((len(indices), 3, self.size, self.size)) if out is None else out
        ys = np.empty(len(indices), dtype=np.int64)
        rows = x.numpy()  # numpy views of the rows: cheaper per image than tensor ones
        for k, i in enumerate(indices):
            _, j = self._load_good(int(i), skipped, rows[k])
            if self.labels is not None:
                ys[k] = self.labels[j]
        if self.labels is None:
            return (x,), skipped
        return (x, torch.from_numpy(ys)), skipped


def _batch_buffer(shape: tuple[int, ...]) -> torch.Tensor:
    """A uint8 tensor to fill; in a DataLoader worker, allocated in shared memory at once (as
    torch's ``default_collate`` does), so sending it to the main process copies nothing."""
    if torch.utils.data.get_worker_info() is not None:
        shared = _shared_uint8(shape)
        if shared is not None:
            return shared
    return torch.empty(shape, dtype=torch.uint8)


def _shared_uint8(shape: tuple[int, ...]) -> torch.Tensor | None:
    """A new uint8 tensor in shared memory (pages not yet touched), or None if torch cannot make one."""
    try:
        storage = torch.empty(0, dtype=torch.uint8)._typed_storage()._new_shared(math.prod(shape))
        return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)
    except (AttributeError, RuntimeError):  # private API moved: callers fall back to ordinary tensors
        return None


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
            t = _shared_uint8(shape)
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
                                num_workers=self.num_workers, collate_fn=_identity,
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
                            num_workers=self.num_workers, collate_fn=_identity,
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

