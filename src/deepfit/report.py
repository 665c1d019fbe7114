"""A static HTML report of a run: summary, metrics, learning curves (inline SVG, opens offline)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepfit.engine.checkpoint import atomic_write_bytes

__all__ = ["write_report", "line_chart_svg", "table_html", "confusion_matrix_html", "scatter_svg"]

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def line_chart_svg(series: dict[str, Sequence[float]], *, title: str, width: int = 520, height: int = 260) -> str:
    """An SVG line chart of one or more series over the same x = 1..n."""
    pad_l, pad_r, pad_t, pad_b = 56, 12, 28, 32
    values = [v for s in series.values() for v in s if isinstance(v, (int, float)) and math.isfinite(v)]
    if not values:
        return f"<p>{html.escape(title)}: no finite values</p>"
    lo, hi = min(values), max(values)
    if hi == lo:
        hi = lo + 1
    n = max(len(s) for s in series.values())
    sx = (width - pad_l - pad_r) / max(n - 1, 1)
    sy = (height - pad_t - pad_b) / (hi - lo)

    def point(i: int, v: float) -> str:
        return f"{pad_l + i * sx:.1f},{height - pad_b - (v - lo) * sy:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        f'<text x="{pad_l}" y="18" font-size="13" font-weight="bold">{html.escape(title)}</text>',
        f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{width - pad_r}" y2="{height - pad_b}" stroke="#888"/>',
        f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{height - pad_b}" stroke="#888"/>',
        f'<text x="4" y="{pad_t + 10}" font-size="11">{hi:.4g}</text>',
        f'<text x="4" y="{height - pad_b}" font-size="11">{lo:.4g}</text>',
        f'<text x="{width // 2}" y="{height - 6}" font-size="11">epoch (1–{n})</text>',
    ]
    for k, (name, s) in enumerate(series.items()):
        color = _COLORS[k % len(_COLORS)]
        pts = " ".join(point(i, v) for i, v in enumerate(s) if math.isfinite(v))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
        parts.append(
            f'<text x="{width - pad_r - 130}" y="{pad_t + 14 * (k + 1)}" font-size="11" fill="{color}">'
            f"{html.escape(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>(none)</p>"
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(row.get(k, ''))}</td>" for k in keys) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def table_html(rows: list[dict[str, Any]]) -> str:
    """An HTML table of dict rows (columns: the union of keys, in first-seen order)."""
    return _table(rows)


def confusion_matrix_html(labels: Sequence[Any], matrix: Sequence[Sequence[int]]) -> str:
    """A confusion matrix (rows: true class, columns: predicted), shaded by row share."""
    head = "".join(f"<th>{html.escape(str(lab))}</th>" for lab in labels)
    body = []
    for lab, row in zip(labels, matrix):
        total = max(sum(row), 1)
        cells = "".join(
            f'<td style="background:rgba(31,119,180,{0.85 * v / total:.2f})">{v}</td>' for v in row
        )
        body.append(f"<tr><th>{html.escape(str(lab))}</th>{cells}</tr>")
    return f"<table><thead><tr><th>true \\ predicted</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def scatter_svg(x: Sequence[float], y: Sequence[float], *, title: str, xlabel: str, ylabel: str,
                width: int = 420, height: int = 320, diagonal: bool = True) -> str:
    """An SVG scatter plot (e.g. predicted against true values), with the y = x line."""
    pad = 44
    pts = [(a, b) for a, b in zip(x, y) if math.isfinite(a) and math.isfinite(b)]
    if not pts:
        return f"<p>{html.escape(title)}: no finite values</p>"
    lo = min(min(a, b) for a, b in pts)
    hi = max(max(a, b) for a, b in pts)
    hi = hi if hi > lo else lo + 1
    s = (min(width, height) - 2 * pad) / (hi - lo)

    def px(v: float) -> float:
        return pad + (v - lo) * s

    def py(v: float) -> float:
        return height - pad - (v - lo) * s

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<text x="{pad}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
             f'<text x="{pad}" y="{height - 8}" font-size="11">{html.escape(xlabel)} ({lo:.4g} – {hi:.4g})</text>',
             f'<text x="4" y="{pad - 8}" font-size="11">{html.escape(ylabel)}</text>']
    if diagonal:
        parts.append(f'<line x1="{px(lo):.1f}" y1="{py(lo):.1f}" x2="{px(hi):.1f}" y2="{py(hi):.1f}" stroke="#d62728"/>')
    step = max(1, len(pts) // 2000)  # at most ~2000 points keep the page light
    parts += [f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="2" fill="#1f77b4" fill-opacity="0.5"/>' for a, b in pts[::step]]
    parts.append("</svg>")
    return "".join(parts)


def write_report(path: str | Path, *, title: str, summary: dict[str, Any], metrics: dict[str, float],
                 history: list[dict[str, Any]], sections: Sequence[tuple[str, str]] = ()) -> Path:
    """Write ``report.html`` atomically and return its path. ``sections`` are extra (title, HTML) parts."""
    charts = []
    keys = {k for row in history for k in row}
    if "train_loss" in keys:
        series = {"train_loss": [r.get("train_loss", math.nan) for r in history]}
        if "valid_loss" in keys:
            series["valid_loss"] = [r.get("valid_loss", math.nan) for r in history]
        charts.append(line_chart_svg(series, title="loss"))
    for key in sorted(k for k in keys if k.startswith("valid_") and k != "valid_loss"):
        charts.append(line_chart_svg({key: [r.get(key, math.nan) for r in history]}, title=key))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
th{{background:#f4f4f4}} .charts svg{{margin:0 1em 1em 0;border:1px solid #eee}}</style></head>
<body><h1>{html.escape(title)}</h1>
<h2>Summary</h2>{_table([summary])}
<h2>Metrics</h2>{_table([metrics])}
<h2>Learning curves</h2><div class="charts">{''.join(charts)}</div>
{''.join(f"<h2>{html.escape(t)}</h2>{body}" for t, body in sections)}
<h2>History</h2>{_table(history)}
</body></html>
"""
    path = Path(path)
    atomic_write_bytes(path, page.encode("utf-8"))
    return path
