"""Top-k metrics of recommendation lists: recall@k and NDCG@k (binary relevance).

For each user with held-out items: the ``k`` best-scored items among those the user did not
rate in training; the relevant items are the user's held-out ones (whatever their rating).
``recall@k = hits / min(k, relevant)``; ``NDCG@k = DCG / ideal DCG`` with gains ``1 / log2(rank + 1)``.
Both are averaged over users. Items never seen in training count as relevant but can never be
recommended (the same for every method).

Example:
    >>> import numpy as np
    >>> scores = np.array([[0.0, 3.0, 2.0, 1.0]])         # one user, items 0-3
    >>> topk_metrics(scores, seen=[[1]], relevant=[[2, 3]], k=2)
    {'recall10': 1.0, 'ndcg10': 1.0}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["topk_metrics", "top_k"]


def top_k(scores: np.ndarray, seen: Sequence[Sequence[int]], k: int) -> np.ndarray:
    """``[U, k]`` indices of each row's ``k`` best scores, the ``seen`` columns of each row left out."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    for row, cols in enumerate(seen):
        scores[row, np.asarray(cols, dtype=np.int64)] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1)


def topk_metrics(scores: np.ndarray, *, seen: Sequence[Sequence[int]], relevant: Sequence[Sequence[int]],
                 k: int = 10) -> dict[str, float]:
    """Mean recall@k and NDCG@k over the rows of ``scores`` (one per user; see the module
    docstring), keyed ``recall{k}`` and ``ndcg{k}``."""
    top = top_k(scores, seen, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    recalls, ndcgs = [], []
    for row, rel in enumerate(relevant):
        rel_set = set(int(r) for r in rel)
        if not rel_set:
            continue
        hits = np.array([int(i) in rel_set for i in top[row]], dtype=np.float64)
        ideal = min(k, len(rel_set))
        recalls.append(hits.sum() / ideal)
        ndcgs.append(float((hits * discounts[:len(hits)]).sum() / discounts[:ideal].sum()))
    return {f"recall{k}": float(np.mean(recalls)) if recalls else float("nan"),
            f"ndcg{k}": float(np.mean(ndcgs)) if ndcgs else float("nan")}
