"""``report.html`` for a table run: data summary, curves, metrics, confusion matrix or residuals,
and the worst-predicted rows — titled "worst-classified texts" when the model reads a text column,
with the text columns first, and sequence values shortened to their first numbers."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from deepfit.data.table import parse_sequence
from deepfit.report import confusion_matrix_html, scatter_svg, table_html, write_report
from deepfit.tasks.table.labels import class_labels

if TYPE_CHECKING:  # pragma: no cover
    from deepfit.tasks.table.predictor import TablePredictor

__all__ = ["table_report"]

WORST_ROWS = 10
SEQ_SHOWN = 8  # numbers of a sequence value shown in the worst-rows table


def table_report(path: Path, *, predictor: TablePredictor, infos: dict[str, Any], history: list[dict[str, Any]],
                 eval_frame: pd.DataFrame) -> Path:
    """Write ``report.html`` for a trained table model; ``infos`` are the column types of the
    training table, ``eval_frame`` the rows the confusion matrix / residuals and the worst rows
    come from (the test rows, else the validation rows)."""
    info = predictor.info
    target = predictor.target_name
    summary = {
        "data": info["source"], "task": predictor.task, "target": target, "rows": info["rows"],
        "train / valid / test rows": f"{info['train_rows']} / {info['valid_rows']} / {info['test_rows']}",
        "epochs (best)": f"{info['epochs']} ({info['best_epoch']})",
        "stopped by time limit": info["stopped_by_time_limit"], "seconds": info["fit_seconds"],
    }
    columns = [
        {"column": c.name, "type": c.kind + (" (set)" if c.overridden else ""), "used": "target" if c.name == target else c.used,
         "missing": c.n_missing, "distinct": c.n_unique, "note": c.note}
        for c in infos.values()
    ]
    sections = [("Columns", table_html(columns))]
    if info["notes"]:
        sections.append(("Notes", "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in info["notes"]) + "</ul>"))
    which = "test" if info["test_rows"] else "validation"
    y_true = eval_frame[target]
    x = eval_frame.drop(columns=[target])
    keep = y_true.notna().to_numpy()
    x, y_true = x.loc[keep], y_true[keep]
    if predictor.task == "classify":
        probs = predictor.predict_proba(x)
        classes = list(probs.columns)
        codes = predictor.target.encode(_labels_like(predictor, y_true))
        pred = probs.to_numpy().argmax(axis=1)
        k = len(classes)
        matrix = np.bincount(codes * k + pred, minlength=k * k).reshape(k, k).tolist()
        sections.append((f"Confusion matrix ({which} rows)", confusion_matrix_html(classes, matrix)))
        p_true = probs.to_numpy()[np.arange(len(codes)), codes]
        order = np.argsort(p_true)[:WORST_ROWS]
        worst = x.iloc[order].copy()
        worst.insert(0, "p(true)", p_true[order].round(4))
        worst.insert(0, "predicted", [classes[i] for i in pred[order]])
        worst.insert(0, f"true {target}", y_true.iloc[order].to_numpy())
    else:
        pred = predictor.predict(x).astype(float)
        truth = pd.to_numeric(y_true, errors="coerce").to_numpy(dtype=float)
        sections.append((f"Predicted against true ({which} rows)",
                         scatter_svg(truth.tolist(), pred.tolist(), title=f"{target}: predicted vs true",
                                     xlabel="true", ylabel="predicted")))
        err = np.abs(pred - truth)
        order = np.argsort(-err)[:WORST_ROWS]
        worst = x.iloc[order].copy()
        worst.insert(0, "abs error", err[order].round(4))
        worst.insert(0, "predicted", pred[order].round(4))
        worst.insert(0, f"true {target}", truth[order])
    kinds = {c["name"]: c["kind"] for c in predictor.columns}
    texts = [c for c in worst.columns if kinds.get(c) == "text"]
    for c in worst.columns:
        if kinds.get(c) == "sequence":
            worst[c] = [_short_sequence(v) for v in worst[c]]
    if texts:  # the texts right after the truth and the prediction
        front = list(worst.columns[:3])
        worst = worst[front + texts + [c for c in worst.columns[3:] if c not in texts]]
    title = f"Worst-classified texts ({which} rows)" if texts and predictor.task == "classify" else \
        f"Worst-predicted {which} rows"
    sections.append((title, table_html(worst.astype(object).where(worst.notna(), "").to_dict("records"))))
    return write_report(path, title=f"deepfit: {target} from {info['source']}", summary=summary,
                        metrics=predictor.metrics, history=history, sections=sections)


def _short_sequence(value: Any) -> str:
    arr = parse_sequence(value)
    if arr is None:
        return ""
    head = " ".join(f"{v:.3g}" for v in arr[0, :SEQ_SHOWN])
    more = " ..." if arr.shape[1] > SEQ_SHOWN else ""
    return f"[{head}{more}] ({arr.shape[0]}x{arr.shape[1]})"


def _labels_like(predictor: TablePredictor, values: pd.Series) -> pd.Series:
    kinds = {c["name"]: c["kind"] for c in predictor.columns}
    return class_labels(values, kinds.get(predictor.target_name, "category"))
