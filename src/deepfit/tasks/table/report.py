"""``report.html`` for a table run: data summary, every model's learning curves, metrics,
permutation feature importance on the validation rows, the confusion matrix with ROC,
precision-recall and calibration curves (or predicted-against-true and residuals), and the
worst-predicted rows — titled "worst-classified texts" when the model reads a text column, with
the text columns first, and sequence values shortened to their first numbers. The notes say how
many test (else validation) rows hold numbers outside the training range."""

from __future__ import annotations

import html
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from deepfit.data.table import parse_sequence
from deepfit.errors import DeepfitWarning
from deepfit.report import confusion_matrix_html, table_html, write_report
from deepfit.tasks.table.insight import classification_curves, importance_section, regression_plots
from deepfit.tasks.table.labels import class_labels

if TYPE_CHECKING:  # pragma: no cover
    from deepfit.tasks.table.predictor import TablePredictor

__all__ = ["table_report"]

WORST_ROWS = 10
SEQ_SHOWN = 8  # numbers of a sequence value shown in the worst-rows table


def table_report(path: Path, *, predictor: TablePredictor, infos: dict[str, Any], histories: list[list[dict[str, Any]]],
                 eval_frame: pd.DataFrame, valid_frame: pd.DataFrame,
                 valid_predictor: TablePredictor | None = None) -> Path:
    """Write ``report.html`` for a trained table model.

    Args:
        path: where.
        predictor: the trained model.
        infos: the column types of the training table.
        histories: each model's history (one per model of a bag; the first model's first).
        eval_frame: the rows the confusion matrix and curves (or residuals) and the worst rows
            come from: the test rows, else the validation rows.
        valid_frame: the validation rows, on which the feature importance is measured.
        valid_predictor: the model whose held-out rows ``valid_frame`` are, when it is not
            ``predictor`` (a cross-fitted bag: the first model alone).
    """
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
    which = "test" if info["test_rows"] else "validation"
    y_true = eval_frame[target]
    keep = y_true.notna().to_numpy()
    x, y_true = eval_frame.drop(columns=[target]).loc[keep], y_true[keep]
    notes = list(info["notes"])
    outside = predictor.out_of_range_note(predictor.preprocessor.check_input(x, source=f"the {which} rows"),
                                          source=f"the {which} set")
    if outside:
        notes.append(outside)
    if notes:
        sections.append(("Notes", "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"))
    judge = valid_predictor if valid_predictor is not None else predictor
    note = ("Measured with the first model alone, as the validation metrics are: the other models "
            "trained on some of these rows.") if judge is not predictor else ""
    sections.append(importance_section(judge, valid_frame, models=1 if judge is not predictor else len(histories),
                                       note=note))
    with warnings.catch_warnings():  # the out-of-range rows are a note above, not a warning each time
        warnings.simplefilter("ignore", DeepfitWarning)
        if predictor.task == "classify":
            evaluated, worst = _classification(predictor, x, y_true, which=which)
        else:
            evaluated, worst = _regression(predictor, x, y_true, which=which)
    sections += evaluated
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
    named = {f"model {i + 1}": h for i, h in enumerate(histories)}
    return write_report(path, title=f"deepfit: {target} from {info['source']}", summary=summary,
                        metrics=predictor.metrics, history=histories[0], sections=sections, histories=named)


def _classification(predictor: TablePredictor, x: pd.DataFrame, y_true: pd.Series, *,
                    which: str) -> tuple[list[tuple[str, str]], pd.DataFrame]:
    """(the confusion matrix and the curves, the worst-classified rows)."""
    probs = predictor.predict_proba(x)
    classes = list(probs.columns)
    codes = predictor.target.encode(_labels_like(predictor, y_true))
    p = probs.to_numpy()
    pred = p.argmax(axis=1)
    k = len(classes)
    matrix = np.bincount(codes * k + pred, minlength=k * k).reshape(k, k).tolist()
    sections = [(f"Confusion matrix ({which} rows)", confusion_matrix_html(classes, matrix)),
                classification_curves(p, codes, classes, which=which)]
    p_true = p[np.arange(len(codes)), codes]
    order = np.argsort(p_true)[:WORST_ROWS]
    worst = x.iloc[order].copy()
    worst.insert(0, "p(true)", p_true[order].round(4))
    worst.insert(0, "predicted", [classes[i] for i in pred[order]])
    worst.insert(0, f"true {predictor.target_name}", y_true.iloc[order].to_numpy())
    return sections, worst


def _regression(predictor: TablePredictor, x: pd.DataFrame, y_true: pd.Series, *,
                which: str) -> tuple[list[tuple[str, str]], pd.DataFrame]:
    """(predicted against true and the residuals, the worst-predicted rows)."""
    target = predictor.target_name
    pred = predictor.predict(x).astype(float)
    truth = pd.to_numeric(y_true, errors="coerce").to_numpy(dtype=float)
    sections = regression_plots(pred, truth, target=target, which=which)
    err = np.abs(pred - truth)
    order = np.argsort(-err)[:WORST_ROWS]
    worst = x.iloc[order].copy()
    worst.insert(0, "abs error", err[order].round(4))
    worst.insert(0, "predicted", pred[order].round(4))
    worst.insert(0, f"true {target}", truth[order])
    return sections, worst


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
