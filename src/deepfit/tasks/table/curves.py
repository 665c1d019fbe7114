"""The curves a classifier's report draws, from scores and truths (NumPy only): ROC,
precision-recall and reliability (calibration).

Example:
    >>> import numpy as np
    >>> scores, hits = np.array([0.9, 0.8, 0.3, 0.1]), np.array([True, False, True, False])
    >>> fpr, tpr, auc = roc_curve(scores, hits)
    >>> fpr.tolist(), tpr.tolist(), auc
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0], 0.75)
    >>> recall, precision, ap = pr_curve(scores, hits)
    >>> recall.tolist(), precision.tolist(), round(ap, 4)
    ([0.0, 0.5, 0.5, 1.0, 1.0], [1.0, 1.0, 0.5, 0.6667, 0.5], 0.8333)
    >>> conf, freq, count = reliability(np.array([0.05, 0.15, 0.12, 0.95]), np.array([0, 0, 1, 1]))
    >>> conf.round(3).tolist(), freq.tolist(), count.tolist()
    ([0.05, 0.135, 0.95], [0.0, 0.5, 1.0], [1, 2, 1])
"""

from __future__ import annotations

import numpy as np

__all__ = ["roc_curve", "pr_curve", "reliability", "expected_calibration_error", "MAX_POINTS"]

MAX_POINTS = 400  # points kept of a curve (evenly spaced over its thresholds): enough to draw it


def _cumulative(scores: np.ndarray, hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true positives, false positives) above each distinct threshold, highest score first."""
    order = np.argsort(-scores, kind="stable")
    s, h = scores[order], hits[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each run of tied scores
    tp = np.cumsum(h)[last]
    return tp, (last + 1) - tp


def _thin(*curves: np.ndarray) -> tuple[np.ndarray, ...]:
    if len(curves[0]) <= MAX_POINTS:
        return curves
    keep = np.unique(np.linspace(0, len(curves[0]) - 1, MAX_POINTS).round().astype(int))
    return tuple(c[keep] for c in curves)


def roc_curve(scores: np.ndarray, hits: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(false-positive rates, true-positive rates, area under the curve) of ``scores`` ranking
    the rows where ``hits`` is true first; the area is NaN when one side has no rows."""
    tp, fp = _cumulative(np.asarray(scores, dtype=np.float64), np.asarray(hits, dtype=bool))
    n_pos, n_neg = tp[-1], fp[-1]
    if n_pos == 0 or n_neg == 0:
        return np.array([0.0, 1.0]), np.array([0.0, 1.0]), float("nan")
    fpr, tpr = np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # the trapezoids: ties count half
    return (*_thin(fpr, tpr), auc)


def pr_curve(scores: np.ndarray, hits: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(recalls, precisions, average precision) of ``scores`` for the rows where ``hits`` is
    true, from recall 0 (precision 1) up; average precision is the sum of precision x recall
    step, as scikit-learn's ``average_precision_score`` (NaN without a true row)."""
    tp, fp = _cumulative(np.asarray(scores, dtype=np.float64), np.asarray(hits, dtype=bool))
    if tp[-1] == 0:
        return np.array([0.0, 1.0]), np.array([1.0, 0.0]), float("nan")
    recall, precision = np.r_[0.0, tp / tp[-1]], np.r_[1.0, tp / (tp + fp)]
    ap = float(np.sum(np.diff(recall) * precision[1:]))
    return (*_thin(recall, precision.round(4)), ap)


def reliability(confidence: np.ndarray, correct: np.ndarray, *, bins: int = 10
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty bin of ``bins`` equal-width bins over [0, 1] of the predicted probability
    ``confidence``: (its mean, the share of rows where ``correct`` holds, the rows in the bin).
    A calibrated model's points lie on the diagonal."""
    conf = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    hit = np.asarray(correct, dtype=np.float64)
    which = np.minimum((conf * bins).astype(int), bins - 1)  # 1.0 goes in the last bin
    count = np.bincount(which, minlength=bins)
    used = count > 0
    mean_conf = np.bincount(which, weights=conf, minlength=bins)[used] / count[used]
    freq = np.bincount(which, weights=hit, minlength=bins)[used] / count[used]
    return mean_conf, freq, count[used]


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, *, bins: int = 10) -> float:
    """The rows' average gap between the predicted probability and the observed share, by bin
    (:func:`reliability`)."""
    mean_conf, freq, count = reliability(confidence, correct, bins=bins)
    return float(np.sum(count * np.abs(freq - mean_conf)) / max(count.sum(), 1))
