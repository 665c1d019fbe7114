"""The recommendation predictor: ratings for (user, item) pairs, top-k lists, similar items.

A user or item not seen in training gets the bias model's rating (``mu + b_user + b_item``,
the unknown one's bias 0), and the ``fallback`` column of ``predict_frame`` / ``recommend``
says so ("" when the trained model answered).

Example:
    >>> model = deepfit.fit(ratings, task="recommend", user="userId", item="movieId",
    ...                     target="rating")                                   # doctest: +SKIP
    >>> model.predict(pd.DataFrame({"userId": [1], "movieId": [31]}))         # doctest: +SKIP
    array([2.61])
    >>> model.recommend(1, k=10)                                               # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import torch

from deepfit.errors import DataError
from deepfit.tasks.base import BasePredictor
from deepfit.tasks.recommend.data import as_ids
from deepfit.tasks.recommend.ranking import top_k, topk_metrics

__all__ = ["RecommendPredictor"]

BATCH = 65536
RANK_USERS = 256  # users scored at once when measuring top-k metrics


class RecommendPredictor(BasePredictor):
    """A trained recommender; see :func:`deepfit.fit` (``task="recommend"``) and :func:`deepfit.load`."""

    kind = "recommend"
    tasks = ("regress",)
    model_names = ("collab",)
    required = {"columns": dict, "users": list, "items": list, "item_labels": (list, type(None))}
    model_name = "collab"

    def __init__(self, model: torch.nn.Module, *, columns: dict[str, Any], users: list[str], items: list[str],
                 item_labels: list[str] | None = None, metrics: dict[str, float] | None = None,
                 info: dict[str, Any] | None = None) -> None:
        self.task = "regress"
        self.model = model.eval()
        self.columns = dict(columns)  # {"user": ..., "item": ..., "target": ..., "time": ...}
        self.users, self.items = list(users), list(items)
        self.item_labels = list(item_labels) if item_labels is not None else None
        self._user_index = {u: i + 1 for i, u in enumerate(self.users)}
        self._item_index = {u: i + 1 for i, u in enumerate(self.items)}
        self.metrics: dict[str, float] = dict(metrics or {})
        self.info: dict[str, Any] = dict(info or {})

    # ------------------------------------------------------------------ the artifact

    def _meta(self) -> dict[str, Any]:
        return {"columns": self.columns, "users": self.users, "items": self.items, "item_labels": self.item_labels}

    @classmethod
    def _from_meta(cls, meta: dict[str, Any], directory: Path) -> Self:
        from deepfit.models.collab import build_collab

        model = build_collab(**meta["model"]["config"])
        if model.n_users != len(meta["users"]) or model.n_items != len(meta["items"]):
            raise ValueError(f"the model has {model.n_users} users and {model.n_items} items, the id lists "
                             f"{len(meta['users'])} and {len(meta['items'])}")
        return cls(model, columns=meta["columns"], users=meta["users"], items=meta["items"],
                   item_labels=meta["item_labels"], metrics=cls._stored_metrics(meta), info=meta.get("info", {}))

    # ------------------------------------------------------------------ indices

    @property
    def rating_range(self) -> tuple[float, float]:
        return self.model.y_range

    def user_index(self, ids: Any) -> np.ndarray:
        """Model indices of user ids (0: unknown)."""
        return np.array([self._user_index.get(u, 0) for u in as_ids(pd.Series(list(ids), dtype=object))],
                        dtype=np.int64)

    def item_index(self, ids: Any) -> np.ndarray:
        """Model indices of item ids (0: unknown)."""
        return np.array([self._item_index.get(u, 0) for u in as_ids(pd.Series(list(ids), dtype=object))],
                        dtype=np.int64)

    def _pairs(self, data: Any, source: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        from deepfit.data.table import find_column
        from deepfit.tasks.table.predictor import as_frame

        df, source = as_frame(data, source=source)
        if len(df) == 0:
            raise DataError(f"{source} has no rows to predict")
        user = find_column(df, self.columns["user"], role="user id", source=source)
        item = find_column(df, self.columns["item"], role="item id", source=source)
        return df, self.user_index(df[user]), self.item_index(df[item])

    # ------------------------------------------------------------------ ratings

    @torch.no_grad()
    def rate(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ratings, fallback) for model indices: the model where both are known, else the bias
        model; ratings clipped to the rating range. ``fallback``: "", "unknown user", ...."""
        m = self.model
        u, i = torch.from_numpy(np.array(users, dtype=np.int64)), torch.from_numpy(np.array(items, dtype=np.int64))
        bias = (m.prior_mu + m.prior_user[u] + m.prior_item[i]).numpy()
        known = (users > 0) & (items > 0)
        out = bias.copy()
        idx = np.flatnonzero(known)
        for start in range(0, len(idx), BATCH):
            rows = idx[start:start + BATCH]
            out[rows] = m(u[rows], i[rows]).double().numpy()
        lo, hi = m.y_range
        fallback = np.where(known, "", np.where(users == 0, np.where(items == 0, "unknown user and item",
                                                                     "unknown user"), "unknown item"))
        return np.clip(out, lo, hi), fallback

    def predict(self, data: Any, *, source: str = "rows") -> np.ndarray:
        """Predicted ratings for the (user, item) pairs of a table (its user and item columns)."""
        _, users, items = self._pairs(data, source)
        return self.rate(users, items)[0]

    def predict_frame(self, data: Any, *, source: str = "rows") -> pd.DataFrame:
        """What ``deepfit predict`` writes: the user and item columns, ``prediction`` and ``fallback``."""
        df, users, items = self._pairs(data, source)
        ratings, fallback = self.rate(users, items)
        user, item = self.columns["user"], self.columns["item"]
        out = pd.DataFrame({user: df[user].to_numpy() if user in df else users,
                            item: df[item].to_numpy() if item in df else items})
        out["prediction"] = ratings
        out["fallback"] = fallback
        return out

    # ------------------------------------------------------------------ lists

    @torch.no_grad()
    def item_scores(self, users: np.ndarray) -> np.ndarray:
        """``[U, n_items + 1]`` ranking scores for known users (column 0 = unknown item, -inf):
        the ranking head where there is one, else the predicted rating."""
        m = self.model
        u = torch.from_numpy(np.array(users, dtype=np.int64))
        if m.rank_user is not None:
            return m.rank_scores(u).double().numpy()
        items = torch.arange(m.n_items + 1)
        scores = np.stack([m(u_one.expand(len(items)), items).double().numpy() for u_one in u])
        scores[:, 0] = -np.inf
        return scores

    def seen(self, user_index: int) -> np.ndarray:
        """Model indices of the items a user rated in training."""
        ptr = self.model.seen_ptr
        return self.model.seen_items[int(ptr[user_index]):int(ptr[user_index + 1])].numpy()

    def _label(self, idx: np.ndarray) -> list[str] | None:
        return [self.item_labels[i - 1] for i in idx] if self.item_labels is not None else None

    def recommend(self, user: Any, k: int = 10, *, exclude_seen: bool = True) -> pd.DataFrame:
        """The ``k`` items ranked highest for ``user`` (an id as in training): ``rank``, the item
        id, its label (with an item label column), ``score`` (what ranks them) and the predicted
        ``rating``; without ``exclude_seen`` the items the user rated may appear. An unknown
        user gets the bias model's best-rated items, ``fallback`` "unknown user"."""
        if not isinstance(k, int) or k < 1:
            raise DataError(f"k must be a positive integer, got {k!r}")
        u = int(self.user_index([user])[0])
        n = self.model.n_items
        if u == 0:
            m = self.model
            scores = (m.prior_mu + m.prior_item).numpy().copy()
            scores[0] = -np.inf
            seen: np.ndarray = np.zeros(0, dtype=np.int64)
        else:
            scores = self.item_scores(np.array([u]))[0]
            seen = self.seen(u) if exclude_seen else np.zeros(0, dtype=np.int64)
        top = top_k(scores[None, :], [seen], min(k, n))[0]
        top = top[np.isfinite(scores[top])]
        ratings, _ = self.rate(np.full(len(top), u, dtype=np.int64), top)
        out = pd.DataFrame({"rank": np.arange(1, len(top) + 1), self.columns["item"]: [self.items[i - 1] for i in top]})
        labels = self._label(top)
        if labels is not None:
            out["label"] = labels
        out["score"] = scores[top]
        out["rating"] = ratings
        out["fallback"] = "" if u else "unknown user"
        return out

    @torch.no_grad()
    def similar_items(self, item: Any, k: int = 10) -> pd.DataFrame:
        """The ``k`` items whose rating vectors (``q_i``) are closest to ``item``'s by cosine."""
        i = int(self.item_index([item])[0])
        if i == 0:
            raise DataError(f"item {item!r} was not in the training ratings; similar_items needs a known item "
                            f"(e.g. {self.items[0]!r})")
        vectors = torch.nn.functional.normalize(self.model.item.weight.double(), dim=1)
        cos = (vectors @ vectors[i]).numpy()
        cos[[0, i]] = -np.inf
        top = top_k(cos[None, :], [[]], min(k, self.model.n_items - 1))[0]
        out = pd.DataFrame({self.columns["item"]: [self.items[j - 1] for j in top]})
        labels = self._label(top)
        if labels is not None:
            out["label"] = labels
        out["similarity"] = cos[top]
        return out

    # ------------------------------------------------------------------ metrics

    def ranking_metrics(self, users: np.ndarray, items: np.ndarray, k: int = 10) -> dict[str, float]:
        """recall@k and NDCG@k (ranking.py) with each known user's rows as their relevant items."""
        frame = pd.DataFrame({"u": users, "i": items})
        frame = frame.loc[frame["u"] > 0]
        groups = frame.groupby("u")["i"].apply(list)
        if groups.empty:
            return {f"recall{k}": float("nan"), f"ndcg{k}": float("nan")}
        sums: dict[str, float] = {}
        ids = groups.index.to_numpy()
        for start in range(0, len(ids), RANK_USERS):
            chunk = ids[start:start + RANK_USERS]
            scores = self.item_scores(chunk)
            part = topk_metrics(scores, seen=[self.seen(int(u)) for u in chunk],
                                relevant=[groups[u] for u in chunk], k=k)
            for key, value in part.items():
                sums[key] = sums.get(key, 0.0) + value * len(chunk)
        return {key: value / len(ids) for key, value in sums.items()}

    def evaluate(self, data: Any, *, source: str = "rows") -> dict[str, float]:
        """RMSE and MAE of the ratings in the target column (every row; unknown users or items
        through the bias model), the share of rows that fell back, and recall@10 / NDCG@10 with
        each user's rows as the items to find (users known from training)."""
        from deepfit.data.table import find_column
        from deepfit.tasks.table.predictor import as_frame

        df, source = as_frame(data, source=source)
        target = find_column(df, self.columns["target"], role="rating", source=source)
        y = pd.to_numeric(df[target], errors="coerce").to_numpy(dtype=np.float64)
        if np.isnan(y).all():
            raise DataError(f"{source}: '{target}' holds no numeric ratings to evaluate against")
        df, users, items = self._pairs(df, source)
        pred, fallback = self.rate(users, items)
        ok = ~np.isnan(y)
        err = pred[ok] - y[ok]
        return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err))),
                "fallback_share": float(np.mean(fallback[ok] != "")),
                **self.ranking_metrics(users[ok], items[ok])}
