"""The forecast report: backtest metrics against seasonal-naive per frequency, the combination
weights, and a few series (best, median and worst by backtest MASE) with their history, the
backtest forecast and the forecast past the end, each with its p10-p90 band."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["forecast_chart_svg", "write_forecast_report"]


def forecast_chart_svg(history: np.ndarray, bands: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]], *,
                       title: str, width: int = 640, height: int = 240) -> str:
    """An SVG line chart of ``history`` (x = 0..n-1) and forecasts ``(start x, low, median, high)``
    drawn as a median line over a shaded low-high band."""
    pad_l, pad_r, pad_t, pad_b = 56, 12, 28, 24
    values = [float(v) for v in history] + [float(v) for _, lo, md, hi in bands for v in (*lo, *md, *hi)]
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return f"<p>{html.escape(title)}: no finite values</p>"
    lo_v, hi_v = min(values), max(values)
    hi_v = hi_v if hi_v > lo_v else lo_v + 1
    n = max([len(history)] + [s + len(md) for s, _, md, _ in bands])
    sx = (width - pad_l - pad_r) / max(n - 1, 1)
    sy = (height - pad_t - pad_b) / (hi_v - lo_v)

    def pt(i: float, v: float) -> str:
        return f"{pad_l + i * sx:.1f},{height - pad_b - (v - lo_v) * sy:.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<text x="{pad_l}" y="18" font-size="13" font-weight="bold">{html.escape(title)}</text>',
             f'<text x="4" y="{pad_t + 10}" font-size="11">{hi_v:.4g}</text>',
             f'<text x="4" y="{height - pad_b}" font-size="11">{lo_v:.4g}</text>']
    for start, lo, md, hi in bands:
        poly = [pt(start + j, v) for j, v in enumerate(hi)] + [pt(start + j, v) for j, v in reversed(list(enumerate(lo)))]
        parts.append(f'<polygon points="{" ".join(poly)}" fill="rgba(214,39,40,0.18)" stroke="none"/>')
        parts.append(f'<polyline fill="none" stroke="#d62728" stroke-width="2" '
                     f'points="{" ".join(pt(start + j, v) for j, v in enumerate(md))}"/>')
    parts.append(f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" '
                 f'points="{" ".join(pt(i, v) for i, v in enumerate(history))}"/>')
    parts.append(f'<text x="{width - 260}" y="18" font-size="11" fill="#1f77b4">history</text>'
                 f'<text x="{width - 200}" y="18" font-size="11" fill="#d62728">forecast (median, p10-p90)</text>')
    parts.append("</svg>")
    return "".join(parts)


def write_forecast_report(path: Path, *, title: str, summary: dict[str, Any], metrics: dict[str, float],
                          history: list[dict[str, Any]], table: list[dict[str, Any]], weights: dict[str, float],
                          charts: list[str]) -> Path:
    """Write ``report.html`` (``deepfit.report.write_report`` with the forecast sections)."""
    from deepfit.report import table_html, write_report

    sections = [("Backtest against seasonal-naive, per frequency", table_html(table)),
                ("Combination weights (chosen on the backtest)", table_html([weights])),
                ("Series: best, median and worst by backtest MASE", "".join(charts))]
    return write_report(path, title=title, summary=summary, metrics=metrics, history=history, sections=sections)
