"""``deepfit demo``'s image task: real digits as PNG class folders, trained with the defaults."""

from __future__ import annotations

import os
from pathlib import Path

from deepfit.tasks.images.predictor import ImagePredictor
from deepfit.tasks.images.settings import ImageSettings
from deepfit.tasks.images.task import fit_images

__all__ = ["demo"]


def demo(root: str | os.PathLike, *, progress: bool = True) -> tuple[ImagePredictor, Path]:
    """``deepfit demo``'s image task: scikit-learn's real digits written as PNG class folders
    (``root/digits_png``, 8x8 upscaled to 32x32), trained with deepfit's image defaults into
    ``root/digits_images`` (both replaced if present). Returns the predictor and the run folder.

    Example:
        >>> predictor, run = demo("runs/demo")          # doctest: +SKIP
        >>> predictor.metrics["test_accuracy"] >= 0.99  # doctest: +SKIP
        True
    """
    import shutil

    from deepfit.datasets import digits_images

    root = Path(root)
    folder, run = root / "digits_png", root / "digits_images"
    for old in (folder, run, run.with_name(run.name + ".incomplete")):
        shutil.rmtree(old, ignore_errors=True)
    digits_images(folder)
    predictor = fit_images(folder, ImageSettings(), out=run, progress=progress)
    return predictor, run
