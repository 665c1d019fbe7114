"""Image data: folder and table readers, a robust decoder, and worker-process loaders.

One module per idea; every public name below is re-exported here, so
``from deepfit.data.images import decode_images`` works as it always did:

* :mod:`~deepfit.data.images.readers` — which files are images, and the tables that list them:
  :func:`read_image_folder`, :func:`read_image_table`, :class:`Skipped`, :data:`IMAGE_SUFFIXES`;
* :mod:`~deepfit.data.images.decode` — one file to pixels (simplejpeg or Pillow, EXIF, mode to
  RGB, crop and resize): :func:`decode_image`, :func:`decode_image_augmented`,
  :class:`ImageError`, :data:`MIN_SIDE`, :data:`JPEG_DECODER`;
* :mod:`~deepfit.data.images.cache` — many files decoded once by worker processes into one
  tensor, optionally kept on disk: :func:`decode_images`, :func:`default_workers`;
* :mod:`~deepfit.data.images.stream` — images decoded and augmented as they are used:
  :class:`ImageDataset`, :class:`ImageFolderDataset`, :class:`ImageBatches` (a resumable loader
  whose workers fill a ring of shared-memory batches).

The other names in the modules' ``__all__`` are the pieces they share with each other.

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

from deepfit.data.images.cache import decode_images, default_workers
from deepfit.data.images.decode import JPEG_DECODER, MIN_SIDE, ImageError, decode_image, decode_image_augmented
from deepfit.data.images.readers import IMAGE_SUFFIXES, Skipped, read_image_folder, read_image_table
from deepfit.data.images.stream import ImageBatches, ImageDataset, ImageFolderDataset

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
