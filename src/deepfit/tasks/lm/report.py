"""The language model's report: summary, learning curves and three generated samples."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from deepfit.tasks.lm.predictor import LMPredictor
    from deepfit.tasks.lm.settings import LMSettings

__all__ = ["write_lm_report"]


def write_lm_report(path: Path, predictor: LMPredictor, settings: LMSettings, history: list[dict[str, Any]]) -> None:
    """Write ``report.html`` for a trained language model."""
    import html

    from deepfit.report import write_report

    samples = [predictor.generate("", max_tokens=120, temperature=0.8, seed=s) for s in range(3)]
    body = "".join(f"<pre style='white-space:pre-wrap;border:1px solid #ddd;padding:6px'>{html.escape(s)}</pre>"
                   for s in samples)
    info = predictor.info
    summary = {"corpus": info["source"], "characters": info["chars"], "tokenizer": f"{info['tokenizer']} "
               f"({info['vocab_size']} ids, {info['chars_per_token']:.2f} chars/token)",
               "model": f"GPT {settings.layers}x{settings.dim}, {settings.heads} heads, context {settings.context}, "
                        f"{info['parameters']:,} parameters", "steps": info["steps"],
               "train seconds": info["train_seconds"], "unigram entropy (nats/char)": info["unigram_nats_per_char"]}
    write_report(path, title="deepfit: language model", summary=summary, metrics=predictor.metrics,
                 history=history, sections=[("Samples (temperature 0.8, seeds 0-2)", body)])
