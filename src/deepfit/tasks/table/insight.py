"""The report's plots of what a table model learnt: permutation feature importance on the
validation rows, and on the evaluation rows the ROC, precision-recall and reliability curves
of a classifier or the predicted-against-true and residual plots of a regression.

Which curves a classifier gets: for two classes, those of the second class (the positive
one, as for F1 and AUROC in ``metrics.json``); for 3 to 10 classes one curve per class, that
class against the rest; beyond 10, the micro-average (every row-class pair pooled) alone. The
reliability plot has 10 equal-width bins: of the positive class's probability for two classes,
of the top class's probability (against accuracy) for more.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from deepfit.errors import DataError
from deepfit.report import bar_chart_svg, scatter_svg, table_html, xy_chart_svg
from deepfit.tasks.table.curves import expected_calibration_error, pr_curve, reliability, roc_curve

if TYPE_CHECKING:  # pragma: no cover
    from deepfit.tasks.table.predictor import TablePredictor

__all__ = ["importance_section", "classification_curves", "regression_plots", "IMPORTANCE_REPEATS",
           "IMPORTANCE_PREDICTIONS", "IMPORTANCE_MIN_ROWS", "BARS", "MAX_CLASS_CURVES"]

IMPORTANCE_REPEATS = 5
# Rows x columns x repeats x models predicted for the report's importance at most: ~5 s at one
# thread for 16 members of 3x256 (about 12k row-models a second); a larger validation set is
# sampled down, to no fewer rows than IMPORTANCE_MIN_ROWS (credit_data, 13 columns, a bag of 4:
# 230 of its 713 validation rows).
IMPORTANCE_PREDICTIONS = 60_000
IMPORTANCE_MIN_ROWS = 100
BARS = 30  # columns drawn in the importance chart (all are in the table under it)
MAX_CLASS_CURVES = 10  # one-vs-rest curves drawn per class up to this many classes, else the micro-average


def importance_section(predictor: TablePredictor, rows: pd.DataFrame, *, models: int = 1,
                       note: str = "") -> tuple[str, str]:
    """("Feature importance (permutation, validation rows)", a bar chart of each column's
    importance with its spread over the shuffles, and the table of every column) on ``rows``,
    sampled down so that the predictions stay within ``IMPORTANCE_PREDICTIONS``; ``models``:
    how many models the predictor averages (each prediction costs that many); ``note``: said
    under the chart."""
    title = "Feature importance (permutation, validation rows)"
    rows = rows[rows[predictor.target_name].notna()]
    n_columns = max(len(predictor.preprocessor.columns), 1)
    cap = max(IMPORTANCE_MIN_ROWS, IMPORTANCE_PREDICTIONS // (IMPORTANCE_REPEATS * n_columns * max(models, 1)))
    sample = rows if len(rows) <= cap else rows.sample(n=cap, random_state=0)
    try:
        table = predictor.feature_importance(sample, repeats=IMPORTANCE_REPEATS, seed=0, source="the validation rows")
    except DataError as e:
        return title, f"<p>{html.escape(str(e))}</p>"
    metric = "log-loss" if table.attrs["metric"] == "log_loss" else f"RMSE of {predictor.target_name}"
    shown = table.head(BARS)
    chart = bar_chart_svg(shown["column"].tolist(), shown["importance_mean"].tolist(),
                          errors=shown["importance_std"].tolist(),
                          title=f"rise in {metric} when the column is shuffled"
                                + (f" (top {BARS} of {len(table)})" if len(table) > BARS else ""),
                          xlabel=f"{metric} increase (mean ± std over {IMPORTANCE_REPEATS} shuffles)")
    of = f"{len(sample)} of the {len(rows)}" if len(sample) < len(rows) else f"the {len(rows)}"
    text = (f"<p>On {of} validation rows ({metric} as given: {table.attrs['baseline']:.4g}), each input column's "
            f"values were shuffled {IMPORTANCE_REPEATS} times and the model predicted again: the bar is how much "
            f"worse the {metric} got. Near 0: the model does not use the column (or another column carries the "
            f"same information). {html.escape(note)}</p>")
    rows_html = table_html(table.round(5).to_dict("records"))
    return title, f'{chart}{text}<details><summary>every column</summary>{rows_html}</details>'


def classification_curves(probs: np.ndarray, codes: np.ndarray, classes: list[str], *, which: str) -> tuple[str, str]:
    """("ROC, precision-recall and calibration (<which> rows)", the three charts side by side)
    for class probabilities ``probs`` (N, C) and the true class codes."""
    k = len(classes)
    onehot = np.eye(k, dtype=bool)[codes]
    if k == 2:
        scores = {f"'{classes[1]}' vs '{classes[0]}'": (probs[:, 1], onehot[:, 1])}
        how = f"the curves of the positive class '{classes[1]}' (against '{classes[0]}')"
    elif k <= MAX_CLASS_CURVES:
        scores = {str(c): (probs[:, i], onehot[:, i]) for i, c in enumerate(classes)}
        how = "one curve per class, that class against the rest"
    else:
        scores = {"micro-average": (probs.ravel(), onehot.ravel())}
        how = f"the micro-average over the {k} classes (every row-class pair pooled)"
    roc, pr = {}, {}
    for name, (s, hit) in scores.items():
        fpr, tpr, auc = roc_curve(s, hit)
        roc[f"{name} (AUC {auc:.3f})"] = (fpr.tolist(), tpr.tolist())
        recall, precision, ap = pr_curve(s, hit)
        pr[f"{name} (AP {ap:.3f})"] = (recall.tolist(), precision.tolist())
    if k == 2:
        confidence, correct, what = probs[:, 1], onehot[:, 1], f"p('{classes[1]}')"
    else:
        confidence, correct, what = probs.max(axis=1), probs.argmax(axis=1) == codes, "top-class probability"
    mean_conf, freq, _ = reliability(confidence, correct)
    ece = expected_calibration_error(confidence, correct)
    charts = [
        xy_chart_svg(roc, title="ROC curve", xlabel="false-positive rate", ylabel="TPR", diagonal=True),
        xy_chart_svg(pr, title="Precision-recall curve", xlabel="recall", ylabel="precision",
                     legend="lower left"),
        xy_chart_svg({f"{what}, 10 bins (ECE {ece:.3f})": (mean_conf.tolist(), freq.tolist())},
                     title="Calibration (reliability)", xlabel="mean predicted probability",
                     ylabel="observed" if k == 2 else "accuracy", diagonal=True, markers=True,
                     legend="upper left"),
    ]
    calibration = (f"the predicted p('{classes[1]}') against the observed share" if k == 2 else
                   "the top class's probability against accuracy")
    text = f"<p>ROC and precision-recall: {html.escape(how)}. Calibration: {html.escape(calibration)}, 10 bins.</p>"
    return f"ROC, precision-recall and calibration ({which} rows)", f'{text}<div class="charts">{"".join(charts)}</div>'


def regression_plots(pred: np.ndarray, truth: np.ndarray, *, target: str, which: str) -> list[tuple[str, str]]:
    """The predicted-against-true and the residuals-against-predicted sections."""
    keep = np.isfinite(pred) & np.isfinite(truth)
    pred, truth = pred[keep], truth[keep]
    return [
        (f"Predicted against true ({which} rows)",
         scatter_svg(truth.tolist(), pred.tolist(), title=f"{target}: predicted vs true", xlabel="true",
                     ylabel="predicted")),
        (f"Residuals against predicted ({which} rows)",
         scatter_svg(pred.tolist(), (truth - pred).tolist(), title=f"{target}: true − predicted", xlabel="predicted",
                     ylabel="residual", diagonal=False, zero_line=True)),
    ]
