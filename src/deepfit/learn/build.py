"""``make learn``: run every chapter in full, keep its figures and what it printed beside the pages.

For chapter N (page ``docs/learn/NN-slug.md``) the run writes ``docs/learn/figures/NN-slug/*.png``
and ``docs/learn/results/NN-slug.json`` (what it printed, the numbers it returned, seconds,
threads), then refreshes the page's quoted blocks between markers — so a page never shows
output or code other than its chapter's last full run and its current source::

    <!-- learn:output -->  ...what the run printed...  <!-- /learn:output -->
    <!-- learn:code -->    ...the chapter module...   <!-- /learn:code -->

``python -m deepfit.learn.build [DOCS_DIR] [--chapters 1 3] [--refresh-only]``
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepfit.learn import CHAPTERS, Chapter, run_chapter

__all__ = ["main", "build", "refresh_page", "page_blocks", "WORK"]

WORK = Path("runs") / "learn"  # where the full runs happen (their run directories stay there)
_BLOCK = re.compile(r"(<!-- learn:(output|code) -->\n)(?:.*?\n)?(<!-- /learn:\2 -->)", re.S)  # empty or not


def page_blocks(ch: Chapter, result: dict[str, Any] | None) -> dict[str, str]:
    """The text that belongs between each pair of markers of chapter ``ch``'s page."""
    import importlib

    source = inspect.getsource(importlib.import_module(ch.module_name)).rstrip("\n")
    blocks = {"code": f"```python\n{source}\n```"}
    if result is not None:
        blocks["output"] = f"```text\n{result['printed']}\n```"
    return blocks


def refresh_page(text: str, blocks: dict[str, str]) -> str:
    """``text`` with the content between each ``learn:output`` / ``learn:code`` marker pair replaced."""
    def fill(m: re.Match[str]) -> str:
        name = m.group(2)
        return m.group(1) + blocks[name] + "\n" + m.group(3) if name in blocks else m.group(0)

    return _BLOCK.sub(fill, text)


def result_path(docs: Path, ch: Chapter) -> Path:
    return docs / "results" / ch.page.replace(".md", ".json")


def refresh(docs: Path) -> None:
    for ch in CHAPTERS:
        page = docs / ch.page
        if not page.exists():
            continue
        saved = result_path(docs, ch)
        result = json.loads(saved.read_text(encoding="utf-8")) if saved.exists() else None
        text = page.read_text(encoding="utf-8")
        new = refresh_page(text, page_blocks(ch, result))
        if new != text:
            page.write_text(new, encoding="utf-8")
            print(f"refreshed {page}")


def build(docs: str | Path, chapters: Sequence[int] | None = None) -> dict[int, float]:
    """Run the chapters in full (default: all), store figures and results, refresh the pages;
    returns seconds per chapter."""
    import torch

    from deepfit._version import __version__

    docs = Path(docs)
    seconds: dict[int, float] = {}
    failed: list[str] = []
    for ch in CHAPTERS:
        if chapters and ch.number not in chapters:
            continue
        stem = ch.page.removesuffix(".md")
        out = WORK / stem
        shutil.rmtree(out, ignore_errors=True)
        print(f"\n=== chapter {ch.number}: {ch.title} ===", flush=True)
        try:
            result = run_chapter(ch.number, out, quick=False)
        except Exception as e:  # noqa: BLE001 - one broken chapter must not stop the others
            import traceback

            traceback.print_exc()
            failed.append(f"chapter {ch.number}: {type(e).__name__}: {e}")
            continue
        figures = docs / "figures" / stem
        shutil.rmtree(figures, ignore_errors=True)
        pngs = sorted(out.glob("*.png"))
        if pngs:
            figures.mkdir(parents=True)
            for png in pngs:
                shutil.copy2(png, figures / png.name)
        result.update({"chapter": ch.number, "quick": False, "threads": torch.get_num_threads(),
                       "deepfit": __version__, "figures": [p.name for p in pngs]})
        saved = result_path(docs, ch)
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
        seconds[ch.number] = result["seconds"]
    refresh(docs)
    print("\nseconds per chapter: " + ", ".join(f"{n}: {s:.0f}" for n, s in seconds.items())
          + f"; total {sum(seconds.values()):.0f}")
    if failed:
        raise SystemExit("make learn: failed: " + "; ".join(failed))
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepfit.learn.build", description=__doc__.split("\n")[0])
    parser.add_argument("docs", nargs="?", default="docs/learn", help="the pages' folder (default docs/learn)")
    parser.add_argument("--chapters", type=int, nargs="*", default=None, help="only these chapters")
    parser.add_argument("--refresh-only", action="store_true", help="only refresh the pages from the saved results")
    args = parser.parse_args(argv)
    if args.refresh_only:
        refresh(Path(args.docs))
    else:
        build(args.docs, args.chapters)
    return 0


if __name__ == "__main__":
    sys.exit(main())
