"""Collaborative filtering from ratings: biased matrix factorisation with an implicit part, an
MLP branch, and a ranking head (one module; ``deepfit.tasks.recommend`` trains it).

The rating of user ``u`` for item ``i`` (index 0 of each table is "unknown": never trained)::

    dot  = lo + (hi - lo) * sigmoid(g + b_u + b_i + q_i . (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j))
    mlp  = lo + (hi - lo) * sigmoid(g + b_u + b_i + MLP([p'_u, q'_i]))
    rating = (1 - mlp_share) * dot + mlp_share * mlp

- ``lo, hi`` is the rating range widened by a margin (fastai's ``y_range``): the sigmoid never
  has to saturate to reach the end ratings;
- ``N(u)`` are the items ``u`` rated in training (SVD++'s implicit feedback: which items a user
  chose to rate says something beyond the ratings), held as a CSR buffer (``seen_ptr``,
  ``seen_items``) that is also what ``exclude_seen`` removes from recommendations;
- the biases start from a bias model fitted first by regularised alternating least squares
  (:func:`fit_biases`), kept as buffers (``prior_*``): predictions for unknown users or items;
- ``mlp_share`` is a buffer chosen after training on the validation rows (0: the dot product alone);
- the ranking head scores every item for a user, ``r_u . s_i + c_i``, trained with a (sampled)
  softmax over the items a user rated (what they choose to rate, not how they rate it): it orders
  ``recommend``'s lists.

In training mode ``forward`` returns ``[B, 4]``: the two branches' ratings, the row's
frequency-weighted L2 penalty (:meth:`CollabModel.penalty`) and the ranking loss; in eval mode
the blended rating ``[B]``. :func:`collab_loss` turns the first into one loss.

Example:
    >>> import torch
    >>> m = CollabModel(n_users=3, n_items=4, dim=2, y_range=(1.0, 5.0), mlp_width=0).eval()
    >>> out = m(torch.tensor([1, 2]), torch.tensor([1, 3]))
    >>> out.shape, bool(((out > 0.5) & (out < 5.5)).all())
    (torch.Size([2]), True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CollabModel", "collab_loss", "fit_biases", "build_collab", "NEGATIVES"]

NEGATIVES = 1024  # items sampled per batch for the ranking head's softmax


def fit_biases(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int, *,
               reg_user: float = 5.0, reg_item: float = 5.0, iters: int = 10) -> tuple[float, np.ndarray, np.ndarray]:
    """The bias model ``mu + b_u + b_i`` by regularised alternating least squares (Koren 2010, §2.1):
    ``b_i = sum(r - mu - b_u) / (reg_item + n_i)``, then ``b_u`` likewise, ``iters`` times.
    Indices start at 1 (0 = unknown, bias 0). Returns ``(mu, b_user, b_item)``."""
    mu = float(ratings.mean())
    bu = np.zeros(n_users + 1)
    bi = np.zeros(n_items + 1)
    nu = np.bincount(users, minlength=n_users + 1)
    ni = np.bincount(items, minlength=n_items + 1)
    for _ in range(iters):
        bi = np.bincount(items, weights=ratings - mu - bu[users], minlength=n_items + 1) / (reg_item + ni)
        bu = np.bincount(users, weights=ratings - mu - bi[items], minlength=n_users + 1) / (reg_user + nu)
    bu[0] = bi[0] = 0.0
    return mu, bu, bi


class CollabModel(nn.Module):
    """See the module docstring. ``n_users`` / ``n_items`` exclude the unknown index 0."""

    def __init__(self, n_users: int, n_items: int, *, dim: int = 64, y_range: tuple[float, float] = (0.5, 5.0),
                 margin: float = 0.05, mlp_width: int = 128, implicit: bool = True, rank_dim: int = 32,
                 n_seen: int = 0) -> None:
        super().__init__()
        self.n_users, self.n_items, self.dim = int(n_users), int(n_items), int(dim)
        self.y_range = (float(y_range[0]), float(y_range[1]))
        self.margin = float(margin)
        span = self.y_range[1] - self.y_range[0]
        self.lo = self.y_range[0] - margin * span
        self.hi = self.y_range[1] + margin * span
        self.mlp_width, self.implicit, self.rank_dim = int(mlp_width), bool(implicit), int(rank_dim)
        nu, ni = self.n_users + 1, self.n_items + 1
        self.global_bias = nn.Parameter(torch.zeros(1))
        self.user_bias = nn.Embedding(nu, 1)
        self.item_bias = nn.Embedding(ni, 1)
        self.user = nn.Embedding(nu, dim)
        self.item = nn.Embedding(ni, dim)
        self.implicit_item = nn.Embedding(ni, dim) if implicit else None
        if mlp_width > 0:
            self.mlp_user = nn.Embedding(nu, dim)
            self.mlp_item = nn.Embedding(ni, dim)
            self.mlp = nn.Sequential(nn.Linear(2 * dim, mlp_width), nn.ReLU(), nn.Linear(mlp_width, mlp_width // 2),
                                     nn.ReLU(), nn.Linear(mlp_width // 2, 1))
        else:
            self.mlp_user = self.mlp_item = self.mlp = None
        self.rank_user = nn.Embedding(nu, rank_dim) if rank_dim > 0 else None
        self.rank_item = nn.Embedding(ni, rank_dim) if rank_dim > 0 else None
        self.rank_bias = nn.Embedding(ni, 1) if rank_dim > 0 else None
        for emb in (self.user, self.item, self.implicit_item, self.mlp_user, self.mlp_item, self.rank_user,
                    self.rank_item):
            if emb is not None:
                nn.init.normal_(emb.weight, std=0.01)
        for emb in (self.user_bias, self.item_bias, self.rank_bias):
            if emb is not None:
                nn.init.zeros_(emb.weight)
        # Filled by the task (set_training_data / set_prior); saved with the weights.
        self.register_buffer("seen_ptr", torch.zeros(nu + 1, dtype=torch.int64))
        self.register_buffer("seen_items", torch.zeros(n_seen, dtype=torch.int64))
        self.register_buffer("user_weight", torch.ones(nu))  # per-row L2 weight of a user's vectors
        self.register_buffer("item_weight", torch.ones(ni))
        self.register_buffer("prior_mu", torch.zeros(1, dtype=torch.float64))
        self.register_buffer("prior_user", torch.zeros(nu, dtype=torch.float64))
        self.register_buffer("prior_item", torch.zeros(ni, dtype=torch.float64))
        self.register_buffer("mlp_share", torch.zeros(()))

    def config(self) -> dict[str, Any]:
        """What rebuilds this model (``deepfit.json``'s ``model.config``)."""
        return {"n_users": self.n_users, "n_items": self.n_items, "dim": self.dim, "y_range": list(self.y_range),
                "margin": self.margin, "mlp_width": self.mlp_width, "implicit": self.implicit,
                "rank_dim": self.rank_dim, "n_seen": int(self.seen_items.numel())}

    # ------------------------------------------------------------------ set-up by the task

    @torch.no_grad()
    def set_training_data(self, users: np.ndarray, items: np.ndarray, *, reg_power: float) -> None:
        """The items each user rated (CSR; known items only) and the per-row L2 weights ``1 / count ** reg_power``."""
        known = (users > 0) & (items > 0)
        users, items = users[known], items[known]
        order = np.lexsort((items, users))
        counts = np.bincount(users, minlength=self.n_users + 1)
        self.seen_ptr.copy_(torch.from_numpy(np.concatenate([[0], np.cumsum(counts)])))
        self.seen_items = torch.from_numpy(items[order].astype(np.int64))  # a buffer: its size may change
        item_counts = np.bincount(items, minlength=self.n_items + 1)
        self.user_weight.copy_(torch.from_numpy(np.maximum(counts, 1).astype(np.float64) ** -reg_power))
        self.item_weight.copy_(torch.from_numpy(np.maximum(item_counts, 1).astype(np.float64) ** -reg_power))

    @torch.no_grad()
    def init_rank_bias(self, items: np.ndarray) -> None:
        """Start the ranking head's item biases at log(1 + training ratings): popularity first."""
        if self.rank_bias is not None:
            counts = np.bincount(items, minlength=self.n_items + 1).astype(np.float64)
            log = np.log1p(counts)
            self.rank_bias.weight[:, 0] = torch.from_numpy(log - log[1:].mean()).float()

    @torch.no_grad()
    def set_prior(self, mu: float, b_user: np.ndarray, b_item: np.ndarray) -> None:
        """Keep the bias model (the fallback) and start the biases from it, in the sigmoid's units
        (linearised at ``mu``: a rating step ``d`` is ``d / ((hi - lo) s (1 - s))`` logits)."""
        self.prior_mu.fill_(mu)
        self.prior_user.copy_(torch.from_numpy(b_user))
        self.prior_item.copy_(torch.from_numpy(b_item))
        s = min(max((mu - self.lo) / (self.hi - self.lo), 1e-3), 1 - 1e-3)
        self.global_bias.fill_(float(np.log(s / (1 - s))))
        slope = (self.hi - self.lo) * s * (1 - s)
        self.user_bias.weight[:, 0] = torch.from_numpy(b_user / slope).float()
        self.item_bias.weight[:, 0] = torch.from_numpy(b_item / slope).float()

    # ------------------------------------------------------------------ the parts

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        """``p_u`` plus the implicit part, for each of ``users``."""
        p = self.user(users)
        if self.implicit_item is None:
            return p
        uniq, inverse = torch.unique(users, return_inverse=True)
        start, stop = self.seen_ptr[uniq], self.seen_ptr[uniq + 1]
        lengths = stop - start
        total = int(lengths.sum())
        if total == 0:
            return p
        offsets = torch.cumsum(lengths, 0) - lengths
        flat = torch.arange(total, device=users.device) - torch.repeat_interleave(offsets, lengths) \
            + torch.repeat_interleave(start, lengths)
        bags = F.embedding_bag(self.seen_items[flat], self.implicit_item.weight, offsets, mode="sum")
        bags = bags * lengths.clamp(min=1).to(bags.dtype).rsqrt()[:, None]
        return p + bags[inverse]

    def _squash(self, raw: torch.Tensor) -> torch.Tensor:
        return self.lo + (self.hi - self.lo) * torch.sigmoid(raw)

    def branches(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The dot-product and MLP ratings (the latter None without an MLP)."""
        bias = self.global_bias + self.user_bias(users)[:, 0] + self.item_bias(items)[:, 0]
        dot = self._squash(bias + (self.user_vectors(users) * self.item(items)).sum(-1))
        if self.mlp is None:
            return dot, None
        mlp = self._squash(bias + self.mlp(torch.cat([self.mlp_user(users), self.mlp_item(items)], -1))[:, 0])
        return dot, mlp

    def penalty(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Each row's L2 of the vectors it uses, weighted ``1 / count ** reg_power`` per user and
        item (set_training_data): with power 0 every rating adds the same penalty (a user's total
        grows with their ratings, as SGD matrix factorisation regularises); with power 1 each user
        and item pays it once, whatever their count (a Gaussian prior, MAP)."""
        wu, wi = self.user_weight[users].float(), self.item_weight[items].float()
        pen = wu * self.user(users).pow(2).sum(-1) + wi * self.item(items).pow(2).sum(-1)
        pen = pen + wu * self.user_bias(users)[:, 0].pow(2) * 0.1 + wi * self.item_bias(items)[:, 0].pow(2) * 0.1
        if self.implicit_item is not None:  # y_i as often as q_i (SGD would touch every y_j of N(u) per rating)
            pen = pen + wi * self.implicit_item(items).pow(2).sum(-1)
        if self.mlp is not None:
            pen = pen + wu * self.mlp_user(users).pow(2).sum(-1) + wi * self.mlp_item(items).pow(2).sum(-1)
        if self.rank_user is not None:
            pen = pen + wu * self.rank_user(users).pow(2).sum(-1) + wi * self.rank_item(items).pow(2).sum(-1)
        return pen

    def rank_scores(self, users: torch.Tensor) -> torch.Tensor:
        """``[B, n_items + 1]`` ranking scores (column 0, the unknown item, is -inf)."""
        scores = self.rank_user(users) @ self.rank_item.weight.T + self.rank_bias.weight[:, 0]
        scores[:, 0] = float("-inf")
        return scores

    def rank_loss(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Each row's sampled-softmax loss of its item against :data:`NEGATIVES` items drawn
        uniformly for the batch (the torch RNG the Learner checkpoints: resume stays exact).
        Uniform draws make it an unbiased stand-in for the softmax over every item (a full one
        over 9,000 items measured ~10x slower per step on a CPU)."""
        r = self.rank_user(users)
        negatives = torch.randint(1, self.n_items + 1, (min(NEGATIVES, self.n_items),), device=users.device)
        pos = (r * self.rank_item(items)).sum(-1) + self.rank_bias(items)[:, 0]
        neg = r @ self.rank_item(negatives).T + self.rank_bias(negatives)[:, 0]
        logits = torch.cat([pos[:, None], neg], 1)
        return torch.logsumexp(logits, 1) - pos

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dot, mlp = self.branches(users, items)
        if not self.training:
            if mlp is None:
                return dot
            share = self.mlp_share.to(dot.dtype)
            return (1 - share) * dot + share * mlp
        rank = self.rank_loss(users, items) if self.rank_user is not None else torch.zeros_like(dot)
        return torch.stack([dot, mlp if mlp is not None else dot, self.penalty(users, items), rank], -1)


def collab_loss(output: torch.Tensor, target: torch.Tensor, *, reg: float, rank_weight: float,
                mlp: bool) -> torch.Tensor:
    """Training: MSE of the dot branch (+ the MLP branch's) + ``reg`` x the rows' L2 penalty +
    ``rank_weight`` x the ranking loss. Evaluation (a ``[B]`` output): the MSE."""
    target = target.to(output.dtype)
    if output.ndim == 1:
        return F.mse_loss(output, target)
    loss = F.mse_loss(output[:, 0], target) + reg * output[:, 2].mean() + rank_weight * output[:, 3].mean()
    if mlp:
        loss = loss + F.mse_loss(output[:, 1], target)
    return loss


def build_collab(**config: Any) -> CollabModel:
    """A model from its ``config()`` (``deepfit.json``)."""
    config = dict(config)
    config["y_range"] = tuple(config["y_range"])
    return CollabModel(**config)
