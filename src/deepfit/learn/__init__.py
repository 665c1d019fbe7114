"""The learning path (docs/learn/): the three standard deep-learning books' arcs as runnable chapters.

Each chapter is a module ``deepfit.learn.chNN_<slug>`` with ``run(out_dir, quick=False) -> dict``:
it prints what it measures, saves its figures (PNG) into ``out_dir`` and returns the numbers it
printed, so a test can assert on them. ``quick=True`` is the seconds-long version ``make test``
runs; the full version (``make learn``, ``deepfit learn N``) makes the figures the pages show.

Example:
    >>> from deepfit.learn import CHAPTERS, chapter
    >>> len(CHAPTERS), chapter(3).title
    (10, 'Regularisation')
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfit.errors import ConfigError

__all__ = ["Chapter", "CHAPTERS", "chapter", "run_chapter"]


@dataclass(frozen=True)
class Chapter:
    """One chapter of the path: its number, page slug, title, the book chapters it follows."""

    number: int
    slug: str
    title: str
    follows: str
    waits_for: str = ""  # an issue that brings what the chapter needs ("" = runs in full today)

    @property
    def module_name(self) -> str:
        return f"deepfit.learn.ch{self.number:02d}_{self.slug.replace('-', '_')}"

    @property
    def page(self) -> str:
        return f"{self.number:02d}-{self.slug}.md"

    def runner(self) -> Callable[..., dict[str, Any]]:
        return importlib.import_module(self.module_name).run


CHAPTERS: tuple[Chapter, ...] = (
    Chapter(1, "learning-from-data", "Learning from data",
            "Chollet, Deep Learning with Python (2nd ed.), ch. 5-6: generalisation and the universal workflow"),
    Chapter(2, "feedforward-networks", "Deep feedforward networks",
            "Goodfellow, Bengio & Courville, Deep Learning, ch. 6: deep feedforward networks"),
    Chapter(3, "regularisation", "Regularisation",
            "Goodfellow, Bengio & Courville, Deep Learning, ch. 7: regularisation for deep learning"),
    Chapter(4, "optimisation", "Optimisation",
            "Goodfellow, Bengio & Courville, ch. 8 (optimisation); Howard & Gugger, Deep Learning for Coders, "
            "ch. 5 (the learning-rate finder) and ch. 16 (the training process)"),
    Chapter(5, "convolutional-networks", "Convolutional networks",
            "Goodfellow, Bengio & Courville, ch. 9 (convolutional networks); Chollet, ch. 8 (augmentation)"),
    Chapter(6, "sequence-models", "Sequence models",
            "Goodfellow, Bengio & Courville, ch. 10 (sequence modelling); Chollet, ch. 12 (text generation); "
            "Howard & Gugger, ch. 12 (a language model from scratch)"),
    Chapter(7, "tables", "Tables", "Howard & Gugger, Deep Learning for Coders, ch. 9: tabular modelling"),
    Chapter(8, "transfer-learning", "Transfer learning",
            "Howard & Gugger, ch. 1 and 5 (fine-tuning a pretrained network); Chollet, ch. 8 (pretrained convnets)",
            waits_for="issue 15 (pretrained image networks): until it lands this chapter trains from scratch"),
    Chapter(9, "recommendation-and-forecasting", "Recommendation and forecasting",
            "Howard & Gugger, ch. 8 (collaborative filtering); Chollet, ch. 10 (timeseries)",
            waits_for="issue 16 (recommendation and forecasting tasks): until it lands this chapter is a placeholder"),
    Chapter(10, "shipping-a-model", "Shipping a model",
            "Howard & Gugger, ch. 2 (from model to production)"),
)


def chapter(number: int | str) -> Chapter:
    """The chapter with this number (``3`` or ``"3"``); a clear error for any other value."""
    try:
        n = int(number)
    except (TypeError, ValueError):
        n = -1
    for ch in CHAPTERS:
        if ch.number == n:
            return ch
    raise ConfigError(f"there is no chapter {number!r}: the chapters are 1..{len(CHAPTERS)} (deepfit learn lists them)")


def run_chapter(number: int | str, out_dir: str | os.PathLike, *, quick: bool = False) -> dict[str, Any]:
    """Run one chapter: its figures go into ``out_dir``; returns its numbers plus ``printed``
    (everything it printed, as it printed it) and ``seconds`` (wall time)."""
    import contextlib
    import io
    import sys
    import time

    ch = chapter(number)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    class _Tee(io.TextIOBase):  # prints as usual and keeps a copy
        def __init__(self, stream: Any) -> None:
            self.stream, self.parts = stream, []

        def write(self, text: str) -> int:
            self.parts.append(text)
            self.stream.write(text)
            return len(text)

        def flush(self) -> None:
            self.stream.flush()

    tee = _Tee(sys.stdout)
    start = time.perf_counter()
    with contextlib.redirect_stdout(tee):
        numbers = ch.runner()(out, quick=quick)
    return {**numbers, "printed": "".join(tee.parts).rstrip("\n"), "seconds": round(time.perf_counter() - start, 1)}
