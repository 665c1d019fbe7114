"""A static HTML report of a run: summary, metrics, learning curves (inline SVG, opens offline)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepfit.engine.checkpoint import atomic_write_bytes

__all__ = ["write_report", "line_chart_svg", "table_html", "confusion_matrix_html", "scatter_svg", "bar_chart_svg",
           "xy_chart_svg"]

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def line_chart_svg(series: dict[str, Sequence[float]], *, title: str, width: int = 520, height: int = 260,
                   legend_outside: bool = False) -> str:
    """An SVG line chart of one or more series over the same x = 1..n; the names top right,
    over the plot or, with ``legend_outside``, beside it (for many series: a bag's models)."""
    pad_l, pad_r, pad_t, pad_b = 56, 76 if legend_outside else 12, 28, 32
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
    parts += _legend(list(series), right=width - (4 if legend_outside else pad_r), top=pad_t, bottom=height - pad_b,
                     width=68 if legend_outside else 130)
    parts.append("</svg>")
    return "".join(parts)


def _legend(names: list[str], *, right: float, top: float, bottom: float, width: int = 130) -> list[str]:
    """SVG texts naming the series in their colours, top right, in more columns when they do not
    fit one (a bag of 16 models)."""
    per_column = max(1, int((bottom - top) // 14) - 1)
    parts = []
    for k, name in enumerate(names):
        column, row = divmod(k, per_column)
        parts.append(f'<text x="{right - width * (column + 1):.0f}" y="{top + 14 * (row + 1):.0f}" font-size="11" '
                     f'fill="{_COLORS[k % len(_COLORS)]}">{html.escape(name)}</text>')
    return parts


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
                width: int = 420, height: int = 320, diagonal: bool = True, zero_line: bool = False) -> str:
    """An SVG scatter plot: with ``diagonal`` (e.g. predicted against true values) both axes share
    one scale and the y = x line is drawn; without, each axis has its own range (e.g. residuals
    against predictions), and ``zero_line`` draws y = 0."""
    pad = 44
    pts = [(a, b) for a, b in zip(x, y) if math.isfinite(a) and math.isfinite(b)]
    if not pts:
        return f"<p>{html.escape(title)}: no finite values</p>"
    x_lo, x_hi = _span([a for a, _ in pts])
    y_lo, y_hi = _span([b for _, b in pts] + ([0.0] if zero_line else []))
    if diagonal:
        x_lo = y_lo = min(x_lo, y_lo)
        x_hi = y_hi = max(x_hi, y_hi)
        sx = sy = (min(width, height) - 2 * pad) / (x_hi - x_lo)
    else:
        sx, sy = (width - 2 * pad) / (x_hi - x_lo), (height - 2 * pad) / (y_hi - y_lo)

    def px(v: float) -> float:
        return pad + (v - x_lo) * sx

    def py(v: float) -> float:
        return height - pad - (v - y_lo) * sy

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<text x="{pad}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
             f'<text x="{pad}" y="{height - 8}" font-size="11">{html.escape(xlabel)} ({x_lo:.4g} – {x_hi:.4g})</text>']
    if diagonal:
        parts.append(f'<text x="4" y="{pad - 8}" font-size="11">{html.escape(ylabel)}</text>')
        parts.append(f'<line x1="{px(x_lo):.1f}" y1="{py(x_lo):.1f}" x2="{px(x_hi):.1f}" y2="{py(x_hi):.1f}" '
                     'stroke="#d62728"/>')
    else:
        parts.append(f'<text x="4" y="{pad - 8}" font-size="11">{html.escape(ylabel)} ({y_lo:.4g} – {y_hi:.4g})</text>')
    if zero_line:
        parts.append(f'<line x1="{pad}" y1="{py(0.0):.1f}" x2="{width - pad}" y2="{py(0.0):.1f}" stroke="#d62728"/>')
    step = max(1, len(pts) // 2000)  # at most ~2000 points keep the page light
    parts += [f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="2" fill="#1f77b4" fill-opacity="0.5"/>' for a, b in pts[::step]]
    parts.append("</svg>")
    return "".join(parts)


def _span(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    return lo, hi if hi > lo else lo + 1


def xy_chart_svg(series: dict[str, tuple[Sequence[float], Sequence[float]]], *, title: str, xlabel: str,
                 ylabel: str, diagonal: bool = False, markers: bool = False, legend: str = "lower right",
                 width: int = 340, height: int = 300) -> str:
    """An SVG chart of curves in the unit square (ROC, precision-recall, reliability): one
    polyline per named ``(x, y)`` series, with the y = x line when ``diagonal``, dots at the
    points when ``markers``, the names in the corner ``legend`` says ("lower right", "lower
    left" or "upper left": where the curves seldom go)."""
    if legend not in ("lower right", "lower left", "upper left"):
        raise ValueError(f"legend must be 'lower right', 'lower left' or 'upper left', got {legend!r}")
    pad_l, pad_r, pad_t, pad_b = 44, 12, 28, 40
    sx, sy = width - pad_l - pad_r, height - pad_t - pad_b

    def point(a: float, b: float) -> tuple[float, float]:
        return pad_l + a * sx, height - pad_b - b * sy

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<text x="{pad_l}" y="18" font-size="13" font-weight="bold">{html.escape(title)}</text>',
             f'<rect x="{pad_l}" y="{pad_t}" width="{sx}" height="{sy}" fill="none" stroke="#888"/>',
             f'<text x="{pad_l}" y="{height - pad_b + 14}" font-size="11">0</text>',
             f'<text x="{width - pad_r - 8}" y="{height - pad_b + 14}" font-size="11">1</text>',
             f'<text x="{pad_l + sx // 2}" y="{height - 8}" font-size="11" text-anchor="middle">{html.escape(xlabel)}</text>',
             f'<text x="{pad_l - 12}" y="{height - pad_b}" font-size="11">0</text>',
             f'<text x="{pad_l - 12}" y="{pad_t + 10}" font-size="11">1</text>',
             f'<text x="4" y="{pad_t + sy // 2}" font-size="11">{html.escape(ylabel)}</text>']
    if diagonal:
        parts.append(f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{pad_l + sx}" y2="{pad_t}" stroke="#aaa" '
                     'stroke-dasharray="4 3"/>')
    for k, (xs, ys) in enumerate(series.values()):
        color = _COLORS[k % len(_COLORS)]
        pts = [point(a, b) for a, b in zip(xs, ys) if math.isfinite(a) and math.isfinite(b)]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                     f'points="{" ".join(f"{u:.1f},{v:.1f}" for u, v in pts)}"/>')
        if markers:
            parts += [f'<circle cx="{u:.1f}" cy="{v:.1f}" r="3" fill="{color}"/>' for u, v in pts]
    right = legend == "lower right"
    x = pad_l + sx - 6 if right else pad_l + 6
    y0 = pad_t + 16 if legend == "upper left" else height - pad_b - 8 - 14 * (len(series) - 1)
    anchor = ' text-anchor="end"' if right else ""
    parts += [f'<text x="{x}" y="{y0 + 14 * k}" font-size="11" fill="{_COLORS[k % len(_COLORS)]}"{anchor}>'
              f'{html.escape(name)}</text>' for k, name in enumerate(series)]
    parts.append("</svg>")
    return "".join(parts)


def bar_chart_svg(labels: Sequence[str], values: Sequence[float], *, errors: Sequence[float] | None = None,
                  title: str, xlabel: str, width: int = 620) -> str:
    """A horizontal SVG bar chart, one bar per label in the order given, with ±``errors``
    whiskers (e.g. a standard deviation) and a line at 0; negative values go left of it."""
    if not labels:
        return f"<p>{html.escape(title)}: nothing to show</p>"
    errs = [e if math.isfinite(e) else 0.0 for e in (errors if errors is not None else [0.0] * len(values))]
    vals = [v if math.isfinite(v) else 0.0 for v in values]
    names = [str(n) if len(str(n)) <= 28 else str(n)[:27] + "…" for n in labels]
    row, pad_t, pad_r, pad_b = 20, 28, 64, 30
    pad_l = 12 + 7 * max(len(n) for n in names)
    height = pad_t + row * len(vals) + pad_b
    lo = min(0.0, min(v - e for v, e in zip(vals, errs)))
    hi = max(0.0, max(v + e for v, e in zip(vals, errs)))
    hi = hi if hi > lo else lo + 1
    scale = (width - pad_l - pad_r) / (hi - lo)

    def px(v: float) -> float:
        return pad_l + (v - lo) * scale

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<text x="4" y="18" font-size="13" font-weight="bold">{html.escape(title)}</text>']
    for i, (name, v, e) in enumerate(zip(names, vals, errs)):
        y = pad_t + i * row
        left, right = sorted((px(0.0), px(v)))
        parts.append(f'<text x="{pad_l - 6}" y="{y + 14}" font-size="11" text-anchor="end">{html.escape(name)}</text>')
        parts.append(f'<rect x="{left:.1f}" y="{y + 3}" width="{max(right - left, 0.5):.1f}" height="{row - 6}" '
                     'fill="#1f77b4"/>')
        if e > 0:
            parts.append(f'<line x1="{px(v - e):.1f}" y1="{y + row / 2}" x2="{px(v + e):.1f}" y2="{y + row / 2}" '
                         'stroke="#222"/>')
            parts += [f'<line x1="{px(end):.1f}" y1="{y + 5}" x2="{px(end):.1f}" y2="{y + row - 5}" stroke="#222"/>'
                      for end in (v - e, v + e)]
        parts.append(f'<text x="{max(px(v), px(v + e)) + 4:.1f}" y="{y + 14}" font-size="10" fill="#444">{v:.3g}</text>')
    bottom = pad_t + row * len(vals)
    parts += [f'<line x1="{px(0.0):.1f}" y1="{pad_t}" x2="{px(0.0):.1f}" y2="{bottom}" stroke="#888"/>',
              f'<text x="{pad_l}" y="{bottom + 14}" font-size="11">{lo:.3g}</text>',
              f'<text x="{width - pad_r}" y="{bottom + 14}" font-size="11" text-anchor="end">{hi:.3g}</text>',
              f'<text x="{(pad_l + width - pad_r) / 2:.0f}" y="{bottom + 24}" font-size="11" text-anchor="middle">'
              f'{html.escape(xlabel)}</text>', "</svg>"]
    return "".join(parts)


def _learning_curves(history: list[dict[str, Any]], histories: dict[str, Sequence[dict[str, Any]]]) -> list[str]:
    """The loss chart (training and validation) and one chart per validation metric of
    ``history``; with more than one model in ``histories``, each validation series (loss and
    metrics) for every model instead, one line per model."""
    charts = []
    keys = {k for row in history for k in row}
    if "train_loss" in keys:
        series = {"train_loss": [r.get("train_loss", math.nan) for r in history]}
        if "valid_loss" in keys:
            series["valid_loss"] = [r.get("valid_loss", math.nan) for r in history]
        charts.append(line_chart_svg(series, title="loss" if len(histories) < 2 else "loss (model 1)"))
    if len(histories) > 1:
        keys = {k for h in histories.values() for row in h for k in row}
        for key in sorted(k for k in keys if k.startswith("valid_")):
            charts.append(line_chart_svg({name: [r.get(key, math.nan) for r in h] for name, h in histories.items()},
                                         title=f"{key}, every model", legend_outside=True))
        return charts
    for key in sorted(k for k in keys if k.startswith("valid_") and k != "valid_loss"):
        charts.append(line_chart_svg({key: [r.get(key, math.nan) for r in history]}, title=key))
    return charts


def write_report(path: str | Path, *, title: str, summary: dict[str, Any], metrics: dict[str, float],
                 history: list[dict[str, Any]], sections: Sequence[tuple[str, str]] = (),
                 histories: dict[str, Sequence[dict[str, Any]]] | None = None) -> Path:
    """Write ``report.html`` atomically and return its path. ``sections`` are extra (title, HTML)
    parts. ``histories``: when several models were trained (a bag), each one's history by name
    (``history`` is the first's); the learning curves then draw every validation series with one
    line per model."""
    charts = _learning_curves(history, histories or {})
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
<h2>History{' (model 1)' if histories and len(histories) > 1 else ''}</h2>{_table(history)}
</body></html>
"""
    path = Path(path)
    atomic_write_bytes(path, page.encode("utf-8"))
    return path
