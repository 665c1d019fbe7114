"""Chapter 9 — Recommendation and forecasting: a placeholder until issue 16 brings those tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["run"]


def run(out_dir: str | Path, quick: bool = False) -> dict[str, Any]:
    print("deepfit has no recommendation or forecasting task yet: issue 16 brings them.")
    print("Until then this chapter runs nothing; docs/learn/09-recommendation-and-forecasting.md says what it will cover.")
    return {"placeholder": True}
