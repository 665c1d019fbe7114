"""Settings of the recommendation task (stored by group in ``run.json`` for ``--resume``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepfit.errors import ConfigError
from deepfit.tasks.settings import TaskSettings

__all__ = ["RecommendSettings"]


@dataclass(frozen=True)
class RecommendSettings(TaskSettings):
    """Everything that decides a recommendation run.

    Example:
        >>> s = RecommendSettings(user="userId", item="movieId", target="rating")
        >>> RecommendSettings.from_json(s.to_json()) == s
        True
    """

    VERSION = 1
    GROUPS = {
        "data": ("user", "item", "target", "time", "rating_range", "item_label"),
        "split": ("test_size", "valid_size"),
        "schedule": ("time_limit", "max_epochs", "patience"),
        "optimizer": ("batch_size", "lr", "weight_decay", "reg", "reg_power", "rank_weight"),
        "model": ("dim", "mlp_width", "implicit", "rank_dim", "margin", "bias_reg"),
        "run": ("seed", "checkpoint_every"),
    }

    user: str = "user"
    item: str = "item"
    target: str = "rating"
    # With a time column, the test and validation rows are each user's latest ratings (a per-user
    # time split), and recall@10 / NDCG@10 are measured on them; without, random rows.
    time: str | None = None
    # The ratings' scale (low, high): a rating outside it is an error. None: the training ratings' min and max.
    rating_range: tuple[float, float] | None = None
    # A column naming each item (e.g. a movie's title), shown in recommendations and the report.
    # None: a column called "title" or "name", if there is one.
    item_label: str | None = None
    test_size: float = 0.1
    valid_size: float = 0.1
    time_limit: float | None = None
    max_epochs: int = 40
    patience: int = 3
    batch_size: int = 1024
    lr: float = 3e-3
    weight_decay: float = 0.0
    # L2 strength of each rating's user and item vectors, weighted 1 / count ** reg_power (models/collab.py).
    reg: float = 0.05
    reg_power: float = 0.0
    rank_weight: float = 1.0  # the ranking head has its own vectors: this weighs it against their L2 only
    dim: int = 64
    mlp_width: int = 128  # 0: no MLP branch
    implicit: bool = True  # SVD++'s implicit part: the items a user rated shape their vector
    rank_dim: int = 32  # 0: no ranking head (recommend ranks by predicted rating)
    margin: float = 0.05  # the sigmoid's range is the rating range widened by this share on each side
    bias_reg: float = 5.0  # the ALS bias model's L2 (in ratings): the prior and the fallback
    seed: int = 0
    checkpoint_every: int | None = None

    def __post_init__(self) -> None:
        for name in ("user", "item", "target"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"{name} must name a column, got {getattr(self, name)!r}")
        if len({self.user, self.item, self.target}) < 3:
            raise ConfigError(f"user, item and target must be three different columns, got "
                              f"{self.user!r}, {self.item!r}, {self.target!r}")
        if self.rating_range is not None:
            lo, hi = self.rating_range
            if not lo < hi:
                raise ConfigError(f"rating_range must be (low, high) with low < high, got {self.rating_range!r}")
        if not 0 <= self.test_size < 1:
            raise ConfigError(f"test_size must be in [0, 1), got {self.test_size}")
        if not 0 < self.valid_size < 1:
            raise ConfigError(f"valid_size must be in (0, 1), got {self.valid_size}")
        if self.dim < 1 or self.mlp_width < 0 or self.rank_dim < 0:
            raise ConfigError(f"dim must be >= 1, mlp_width and rank_dim >= 0; got {self.dim}, {self.mlp_width}, "
                              f"{self.rank_dim}")
        if self.reg < 0 or self.weight_decay < 0 or self.rank_weight < 0 or self.bias_reg < 0:
            raise ConfigError("reg, weight_decay, rank_weight and bias_reg must be >= 0")
        if not 0 <= self.reg_power <= 1:
            raise ConfigError(f"reg_power must be in [0, 1], got {self.reg_power}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ConfigError(f"time_limit must be > 0 seconds, got {self.time_limit}")

    @classmethod
    def _decode(cls, d: dict[str, Any]) -> dict[str, Any]:
        out = super()._decode(d)
        if isinstance(out.get("rating_range"), list):
            out["rating_range"] = tuple(out["rating_range"])
        return out
