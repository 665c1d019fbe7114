"""Text columns in a table classifier: the n-gram part trained like a logistic regression.

A table model reads a text column through hashed n-grams whose logits form a linear "wide"
part (``TabularModel.text_linear``). Classifying, that part is regularised as in NBSVM /
``LogisticRegression(C=...)`` (``TableSettings.ngram_c`` / ``ngram_nb``; BENCHMARKS.md §7):

- :func:`ngram_prior_of`: each n-gram's naive-Bayes log-count ratio, from the rows a model is
  fitted on, scales its weights;
- :func:`penalise_like_logistic_regression`: a coupled L2 term ``(1 / (C x rows)) x w`` added to
  the gradient;
- :func:`wide_optimizer`: AdamW with the wide part in its own, faster group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from deepfit.models.tabular import ngram_prior

__all__ = ["uses_ngram_penalty", "ngram_prior_of", "penalise_like_logistic_regression", "wide_optimizer"]


def uses_ngram_penalty(task: str, spec: dict[str, Any]) -> bool:
    """Whether the n-gram weights are regularised like a logistic regression's: classifying, with text."""
    return task == "classify" and bool(spec["n_text"])


def ngram_prior_of(rows: tuple[torch.Tensor, ...], spec: dict[str, Any], n_classes: int) -> torch.Tensor:
    """The (V, C) n-gram prior of the rows a model is fitted on (``rows``: the tensors of a
    table with a text column, its n-gram ids third and the target last)."""
    return ngram_prior(rows[2], rows[-1], buckets=int(spec["text_buckets"]), n_classes=n_classes)


def penalise_like_logistic_regression(weight: torch.nn.Parameter, *, c: float, n_rows: int) -> None:
    """Add ``(1 / (c x n_rows)) x w`` to ``weight``'s gradient (a coupled L2 penalty).

    Unlike AdamW's decoupled decay, its fixed point under Adam is the penalised optimum, as in
    ``LogisticRegression(C=c)`` fitted on ``n_rows`` rows.
    """
    strength = 1.0 / (c * n_rows)
    weight.register_hook(lambda grad, w=weight: grad + strength * w.detach())


def wide_optimizer(wide: torch.nn.Parameter, scale: float) -> Callable[[list[dict[str, Any]]], torch.optim.Optimizer]:
    """AdamW whose group holding the n-gram logits learns ``scale`` times faster.

    The linear n-gram part is convex and slow at the MLP's learning rate (~20 epochs on 5k tweets),
    while early stopping watches the whole model; a faster wide part converges in a few epochs.
    """

    def build(groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        out = []
        for group in groups:
            rest = [p for p in group["params"] if p is not wide]
            if rest:
                out.append({**group, "params": rest})
            if len(rest) < len(group["params"]):
                out.append({**group, "params": [wide], "lr_scale": scale})
        return torch.optim.AdamW(out, lr=1e-3, fused=True)  # lr is set by the Learner's schedule every step

    return build
