"""One image file to pixels: format sniffing, simplejpeg/Pillow decoding, EXIF, mode to RGB, crop and resize.

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
  Readers and loaders turn these into :class:`~deepfit.data.images.readers.Skipped` records
  instead of stopping. A JPEG with a recoverable glitch (junk bytes before a marker) is decoded,
  as Pillow would.

Images whose short side is below :data:`MIN_SIDE` (8 px) are rejected: nothing can be learnt
from them and a crop would only magnify noise.

:func:`decode_tensor` (a region chosen by a box function, written into a given buffer),
:func:`augmented_tensor`, :func:`center_box` and :func:`check_size` are the pieces the batch
decoders of :mod:`~deepfit.data.images.cache` and :mod:`~deepfit.data.images.stream` share.
"""

from __future__ import annotations

import io
import math
import os
import random
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deepfit.data.images.readers import os_error_reason
from deepfit.errors import ConfigError, DataError

__all__ = [
    "MIN_SIDE",
    "CROPS",
    "JPEG_DECODER",
    "Box",
    "ImageError",
    "decode_image",
    "decode_image_augmented",
    "decode_tensor",
    "decode_bytes_tensor",
    "augmented_tensor",
    "center_box",
    "check_size",
]

MIN_SIDE = 8  # images whose short side is smaller are skipped ("too small")
CROPS = ("center", "squash")


class ImageError(DataError):
    """One image file cannot be used; ``reason`` is the short explanation, ``path`` the file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


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
        raise ImageError(path, os_error_reason(e)) from e
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
"""A crop chooser: ``(w, h)`` of the upright image -> the region ``(x0, y0, x1, y1)`` to keep."""


def decode_tensor(path: str, size: int, box_fn: Box, *, min_side: int = MIN_SIDE, flip: bool = False,
                  fast: bool = False, dest: torch.Tensor | np.ndarray | None = None) -> Any:
    """Decode ``path``, cut the region ``box_fn(w, h)`` of the upright image, resize: uint8 ``(3, size, size)``.

    The resize is torch's antialiased bilinear on uint8 (an AVX2 kernel: about 3x faster than
    Pillow's ``resize`` here, same pixels within rounding). ``fast``: libjpeg-turbo's faster,
    slightly less exact JPEG decoding (:data:`_FAST_DECODE`), for augmented training crops.
    ``dest``: a ``(3, size, size)`` tensor or numpy array to write the result into (and return);
    without it the result is a new tensor in channels-last layout (strides ``(1, 3 * size, 3)``).
    """
    return decode_bytes_tensor(_read_bytes(path), size, box_fn, name=path, min_side=min_side, flip=flip, fast=fast,
                               dest=dest)


def decode_bytes_tensor(data: bytes, size: int, box_fn: Box, *, name: str = "image", min_side: int = MIN_SIDE,
                        flip: bool = False, fast: bool = False, dest: torch.Tensor | np.ndarray | None = None) -> Any:
    """:func:`decode_tensor` on a file's bytes already in memory (an upload); ``name`` is how
    :class:`ImageError` messages call it. The same pixels as ``decode_tensor`` on that file."""
    path = name
    if not data:
        raise ImageError(path, "zero-byte file")
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


def center_box(crop: str) -> Box:
    """The evaluation crop: the largest centred square (``"center"``) or the whole image (``"squash"``)."""
    if crop == "squash":
        return lambda w, h: (0, 0, w, h)

    def center(w: int, h: int) -> tuple[float, float, float, float]:
        s = min(w, h)
        x0, y0 = (w - s) // 2, (h - s) // 2
        return x0, y0, x0 + s, y0 + s

    return center


def check_size(size: int) -> None:
    """Raise :class:`~deepfit.errors.ConfigError` unless ``size`` (an output side) is a positive int."""
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
    check_size(size)
    if crop not in CROPS:
        raise ConfigError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
    out = decode_tensor(os.fspath(path), int(size), center_box(crop), min_side=min_side)
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
    check_size(size)
    if isinstance(rng, np.random.Generator):
        rng = random.Random(int(rng.integers(0, 2**63)))
    out = augmented_tensor(os.fspath(path), int(size), rng, scale=scale, ratio=ratio, flip=flip, min_side=min_side)
    return np.ascontiguousarray(out.permute(1, 2, 0).numpy())


def augmented_tensor(path: str, size: int, rng: random.Random, *, scale: tuple[float, float],
                     ratio: tuple[float, float], flip: bool, min_side: int,
                     dest: torch.Tensor | np.ndarray | None = None) -> Any:
    """A random resized crop of ``path`` drawn from ``rng``, flipped with probability 1/2 if ``flip``.

    As :func:`decode_image_augmented` without the argument checks, with libjpeg-turbo's fast
    decoding: uint8 ``(3, size, size)``, written into ``dest`` when given (see :func:`decode_tensor`).
    """
    do_flip = bool(flip and rng.random() < 0.5)
    return decode_tensor(path, size, _rrc_box(rng, scale, ratio), min_side=min_side, flip=do_flip, fast=True,
                         dest=dest)
