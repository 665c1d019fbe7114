"""``report.html`` for a recommendation run: summary, metrics, learning curves, RMSE by how many
ratings a user has, top-10 lists for a few users beside what they rated highest, and a 2-D
projection (PCA) of the item vectors with the most-rated items labelled."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from deepfit.report import bar_chart_svg, table_html, write_report

if TYPE_CHECKING:  # pragma: no cover
    from deepfit.tasks.recommend.predictor import RecommendPredictor

__all__ = ["recommend_report", "activity_rmse", "item_projection"]

BUCKETS = ((1, 5), (6, 20), (21, 50), (51, 200), (201, None))
USERS_SHOWN = 3
PROJECTED = 300  # most-rated items drawn in the projection
LABELLED = 12  # of which this many are labelled


def activity_rmse(predictor: RecommendPredictor, fit_frame: pd.DataFrame, eval_frame: pd.DataFrame) -> list[dict]:
    """RMSE of ``eval_frame``'s ratings by the user's number of training ratings (0 = unknown user)."""
    counts = fit_frame["user"].value_counts()
    n = eval_frame["user"].map(counts).fillna(0).to_numpy()
    pred, _ = predictor.rate(predictor.user_index(eval_frame["user"]), predictor.item_index(eval_frame["item"]))
    err = pred - eval_frame["rating"].to_numpy(np.float64)
    rows = []
    for lo, hi in ((0, 0), *BUCKETS):
        mask = (n >= lo) & ((n <= hi) if hi is not None else True)
        if mask.any():
            name = "unknown" if hi == 0 else (f"{lo}-{hi}" if hi is not None else f"> {lo - 1}")
            rows.append({"training ratings of the user": name, "rows": int(mask.sum()),
                         "rmse": float(np.sqrt(np.mean(err[mask] ** 2)))})
    return rows


def item_projection(predictor: RecommendPredictor, fit_frame: pd.DataFrame) -> str:
    """An SVG scatter of the most-rated items' vectors projected on their first two principal
    components (``torch.pca_lowrank``), the most-rated ones labelled."""
    counts = fit_frame["item"].value_counts()
    top = counts.index[:PROJECTED]
    idx = torch.from_numpy(predictor.item_index(top))
    vectors = predictor.model.item.weight.detach()[idx].double()
    if len(idx) < 3:
        return "<p>too few items to project</p>"
    _, _, v = torch.pca_lowrank(vectors, q=2, center=True)
    xy = ((vectors - vectors.mean(0)) @ v[:, :2]).numpy()
    labels = predictor._label(idx.numpy()) or [str(t) for t in top]
    w, h, pad = 640, 480, 30
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    px = pad + (xy[:, 0] - lo[0]) / span[0] * (w - 2 * pad)
    py = h - pad - (xy[:, 1] - lo[1]) / span[1] * (h - 2 * pad)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img">',
             f'<text x="{pad}" y="16" font-size="13">item vectors, first two principal components '
             f'({len(idx)} most-rated items)</text>']
    for k in range(len(idx)):
        parts.append(f'<circle cx="{px[k]:.1f}" cy="{py[k]:.1f}" r="2.5" fill="#1f77b4" fill-opacity="0.5">'
                     f'<title>{html.escape(labels[k])}</title></circle>')
    for k in range(min(LABELLED, len(idx))):
        parts.append(f'<text x="{px[k] + 4:.1f}" y="{py[k] - 3:.1f}" font-size="10">{html.escape(labels[k][:28])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _user_lists(predictor: RecommendPredictor, fit_frame: pd.DataFrame) -> str:
    """For the most active, a median and a light user: their top-10 next to their highest-rated items."""
    counts = fit_frame["user"].value_counts()
    chosen = list(dict.fromkeys([counts.index[0], counts.index[len(counts) // 2], counts.index[-1]]))[:USERS_SHOWN]
    labels = dict(zip(predictor.items, predictor.item_labels)) if predictor.item_labels else {}
    blocks = []
    for user in chosen:
        rated = fit_frame.loc[fit_frame["user"] == user].sort_values("rating", ascending=False, kind="mergesort")
        best = [{"item": labels.get(i, i), "rating": r} for i, r in zip(rated["item"][:10], rated["rating"][:10])]
        recs = predictor.recommend(user, k=10)
        shown = [{"item": row.get("label", row[predictor.columns["item"]]), "score": row["score"],
                  "predicted rating": row["rating"]} for row in recs.to_dict("records")]
        blocks.append(f"<h3>user {html.escape(str(user))} ({counts[user]} training ratings)</h3>"
                      "<div style='display:flex;gap:2em'><div><b>rated highest</b>"
                      f"{table_html(best)}</div><div><b>recommended (not rated yet)</b>{table_html(shown)}</div></div>")
    return "".join(blocks)


def recommend_report(path: Path, predictor: RecommendPredictor, *, history: list[dict[str, Any]],
                     fit_frame: pd.DataFrame, eval_frame: pd.DataFrame) -> Path:
    """Write ``report.html`` for a trained recommender; ``eval_frame``: the test rows, else the validation rows."""
    info = predictor.info
    summary = {"data": info["source"], "ratings": info["rows"], "users": info["users"], "items": info["items"],
               "train / valid / test rows": f"{info['train_rows']} / {info['valid_rows']} / {info['test_rows']}",
               "split": info["split"], "rating range": f"{info['rating_range'][0]:g} to {info['rating_range'][1]:g}",
               "epochs (best)": f"{info['epochs']} ({info['best_epoch']})", "seconds": info["fit_seconds"]}
    which = "test" if info["test_rows"] else "validation"
    buckets = activity_rmse(predictor, fit_frame, eval_frame)
    chart = bar_chart_svg([b["training ratings of the user"] for b in buckets], [b["rmse"] for b in buckets],
                          title=f"{which} RMSE by the user's number of training ratings", xlabel="RMSE")
    sections = []
    if info["notes"]:
        sections.append(("Notes", "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in info["notes"]) + "</ul>"))
    sections += [(f"RMSE by user activity ({which} rows)", table_html(buckets) + chart),
                 ("Recommendations for a few users", _user_lists(predictor, fit_frame)),
                 ("Item vectors", item_projection(predictor, fit_frame))]
    return write_report(path, title="deepfit: recommendations", summary=summary, metrics=predictor.metrics,
                        history=history, sections=sections)
