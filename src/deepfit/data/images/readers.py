"""Which files are images, and the tables that list them (nothing is decoded here).

Readers turn image files into a table ``(path, label[, split])``:

* :func:`read_image_folder` — one sub-folder per class (``root/cat/*.jpg``); a root holding
  ``train`` plus ``valid``/``val``/``test`` folders of class folders adds a ``split`` column;
  with ``label_regex`` the label is the first group of a regex on each file name instead.
* :func:`read_image_table` — a CSV/Parquet file or DataFrame with an image-path column; relative
  paths are taken relative to the file's folder (or ``base_dir``).

Files without an image suffix, zero-byte files, images outside class folders and unreadable
folders become :class:`Skipped` records instead of stopping the read. :data:`IMAGE_SUFFIXES`
is the one list of image suffixes: folders are listed with it, and
``deepfit.data.table.IMAGE_EXTENSIONS`` (which infers an image-path column) is kept equal to it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deepfit.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "IMAGE_SUFFIXES",
    "SPLIT_NAMES",
    "Skipped",
    "read_image_folder",
    "read_image_table",
    "os_error_reason",
]

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                                   ".pgm", ".pbm", ".jfif")
SPLIT_NAMES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "test": "test"}


@dataclass(frozen=True)
class Skipped:
    """An unusable file and why (``"zero-byte file"``, ``"truncated JPEG"``, ``"not an image"``, ...)."""

    path: str
    reason: str


def os_error_reason(e: OSError) -> str:
    """The short reason (as in :class:`Skipped`) an ``OSError`` gives for a file or folder that cannot be read.

    Example:
        >>> os_error_reason(FileNotFoundError(2, "No such file or directory"))
        'file not found'
    """
    if isinstance(e, FileNotFoundError):
        return "file not found"
    if isinstance(e, IsADirectoryError):
        return "is a folder, not a file"
    return f"unreadable: {type(e).__name__}: {e.strerror or e}"


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
        skipped.append(Skipped(str(folder), os_error_reason(e)))
        return None, []
    files: list[Path] = []
    dirs: list[Path] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError as e:
            skipped.append(Skipped(entry.path, os_error_reason(e)))
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
        return os_error_reason(e)
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
