"""The table model as an ensemble: its validation metric, and when more models join it.

The model is a TabM-style ensemble of ``k`` members (``deepfit.models.tabular``); its output is
``(B, k, C)``, so a metric reads the members' mean (:class:`EnsembleMetric`). After the first
model, more models — each from its own seed — may join it as a deep ensemble
(``TabularBag``), as :class:`BagRule` says: with a time limit, while the budget still pays for
most of another one; without one, ``text_bags`` models for a table with text, each
early-stopped on its own validation carve-out of the training rows ("cross-fit").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from deepfit.metrics import Metric, get_metric
from deepfit.models.tabular import ensemble_predict

__all__ = ["EnsembleMetric", "BagRule"]


class EnsembleMetric(Metric):
    """Adapts a deepfit metric to the ensemble's (B, k, C) output."""

    def __init__(self, name: str, task: str) -> None:
        super().__init__()
        self.inner = get_metric(name)
        self.name = self.inner.name
        self.higher_is_better = self.inner.higher_is_better
        self.task = task

    def reset(self) -> None:
        self.inner.reset()

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        pred = ensemble_predict(output.detach().float(), self.task)
        self.inner.update(pred.clamp(min=1e-15).log() if self.task == "classify" else pred, target)

    def sync(self) -> None:
        self.inner.sync()

    def compute(self) -> float:
        return self.inner.compute()


@dataclass(frozen=True)
class BagRule:
    """When another model joins the first, and how it differs.

    Args:
        settings: the run's ``TableSettings``.
        cross_fit: each extra model gets its own validation carve-out (a table with text and
            ``text_bags > 1``).
        first_limit: the first model's ``TimeLimit`` (None without a time limit).
        first_seconds: how long the first model trained.
    """

    settings: Any
    cross_fit: bool
    first_limit: Any
    first_seconds: float

    def wants_more(self, n_models: int, seconds_left: float | None) -> bool:
        """Whether model number ``n_models + 1`` is trained, ``seconds_left`` of the budget left.

        With a time limit: while the first model was not cut off by it, fewer than ``max_bags``
        models exist, and the budget left pays for most (80 %) of another first model — one the
        budget ends has its LR decayed by then and keeps its best weights, still useful.
        Without one: ``text_bags`` models when cross-fitting, else one.
        """
        if self.first_limit is None:
            return self.cross_fit and n_models < self.settings.text_bags
        return (not self.first_limit.stopped and n_models < self.settings.max_bags
                and (seconds_left or 0.0) > 0.8 * self.first_seconds)

    def seed(self, n_models: int) -> int:
        """The seed of model number ``n_models + 1`` (its initialisation, order and carve-out)."""
        return self.settings.seed + 1000 * n_models

    def ple_version(self, n_models: int) -> str:
        """The number embedding of model number ``n_models + 1``: with ``mix_bags`` the extra
        models alternate it ("b", "a", "b", ... from a "b" first model)."""
        s = self.settings
        other = "a" if s.ple_version == "b" else "b"
        return other if s.mix_bags and n_models % 2 else s.ple_version

    @staticmethod
    def first_label(settings: Any, cross_fit: bool) -> str:
        """How progress lines name the first model: ``"model 1/3"`` when it is known to be the
        first of several (``text_bags`` cross-fitted models, no time limit), else nothing — with
        a time limit, whether more follow is known only when it ends."""
        return f"model 1/{settings.text_bags}" if cross_fit and not settings.time_limit else ""

    def label(self, n_models: int) -> str:
        """How progress lines name model number ``n_models + 1``: ``"model 2/3"`` when the bag's
        size is fixed (``text_bags``, no time limit), ``"model 2"`` when the time limit decides it."""
        if self.first_limit is None:
            return f"model {n_models + 1}/{self.settings.text_bags}"
        return f"model {n_models + 1}"

    def notes(self, bag_epochs: list[int]) -> list[str]:
        """What the report says about a bag of ``len(bag_epochs)`` models."""
        why = "in the time limit" if self.first_limit is not None else f"(text_bags={self.settings.text_bags})"
        how = ", each early-stopped on its own validation rows" if self.cross_fit else ""
        notes = [f"{len(bag_epochs)} models trained {why}, each from its own seed{how}, and averaged "
                 f"(epochs: {', '.join(map(str, bag_epochs))})"]
        if self.cross_fit:
            notes.append("validation figures are the first model's alone: the other models trained on "
                         "some of its validation rows")
        return notes
