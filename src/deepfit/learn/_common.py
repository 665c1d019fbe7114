"""What every chapter shares: plotting, a results table, accuracy of a Learner's model."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepfit.errors import ConfigError

__all__ = ["pyplot", "save", "table", "accuracy", "seed_all", "mnist1d"]


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (``deepfit[report]``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ConfigError("the learning path draws its figures with matplotlib: pip install 'deepfit[report]'") from e
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 110, "axes.grid": True, "grid.alpha": 0.3,
                         "axes.spines.top": False, "axes.spines.right": False, "font.size": 10})
    return plt


def save(fig: Any, out_dir: str | os.PathLike, name: str) -> Path:
    """Save ``fig`` as ``out_dir/name`` (PNG), close it, print where it went, return the path."""
    path = Path(out_dir) / name
    fig.tight_layout()
    fig.savefig(path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    print(f"figure: {path.name}")
    return path


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, *, digits: int = 3) -> str:
    """A Markdown table of ``rows`` (floats rounded to ``digits``), printed and returned."""
    columns = list(columns or rows[0].keys())

    def cell(v: Any) -> str:
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    text = "\n".join(lines)
    print(text)
    return text


def accuracy(model: Any, x: Any, y: Any) -> float:
    """Share of rows of ``x`` whose arg-max output equals ``y`` (the model in eval mode, no grad)."""
    import torch

    model.eval()
    with torch.inference_mode():
        pred = model(torch.as_tensor(x)).argmax(1)
    return float((pred == torch.as_tensor(y)).float().mean())


@functools.cache
def mnist1d() -> Any:
    """``deepfit.datasets.load("mnist1d")``, generated once per process (it takes seconds and is
    the same every time); three chapters use it."""
    from deepfit import datasets

    return datasets.load("mnist1d")


def seed_all(seed: int = 0) -> None:
    """Seed torch, NumPy and Python (models are built before the Learner seeds its fit)."""
    from deepfit.engine.rng import seed_everything

    seed_everything(seed)
