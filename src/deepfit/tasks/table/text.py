"""Text columns in a table classifier: the n-gram part trained like a logistic regression.

A table model reads a text column through hashed n-grams whose logits form a linear "wide"
part (``TabularModel.text_linear``). Classifying, that part is regularised as in NBSVM /
``LogisticRegression(C=...)`` (``TableSettings.ngram_c`` / ``ngram_nb``; BENCHMARKS.md §7):

- :func:`ngram_prior_of`: each n-gram's naive-Bayes log-count ratio, from the rows a model is
  fitted on, scales its weights;
- :func:`penalise_like_logistic_regression`: a coupled L2 term ``(1 / (C x rows)) x w`` added to
  the gradient;
- :func:`wide_optimizer`: AdamW with the wide part in its own, faster group.

How the text reaches the model at all — n-grams, the pretrained sentence encoder's frozen
embeddings, or both (``TableSettings.text_encoder``) — is chosen, with ``"auto"``, by
:func:`choose_text_encoder`: three penalised linear judges (logistic regression when
classifying, ridge when regressing) on the first carve-out's fitting rows, one per choice,
compared by their validation loss (the embeddings' own penalty chosen on the validation rows
too, ``EMBED_CS``); n-grams stay unless an encoder choice lowers it by at
least ``ENCODER_MARGIN`` (1 %).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from deepfit.models.tabular import ngram_prior

__all__ = ["uses_ngram_penalty", "ngram_prior_of", "penalise_like_logistic_regression", "wide_optimizer",
           "TextViews", "choose_text_encoder", "ENCODER_MARGIN"]

ENCODER_MARGIN = 0.01  # an encoder choice must lower the judges' validation loss by this share


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


@dataclass
class TextViews:
    """One set of rows as the judges see it: n-gram ids ``(N, G)`` (1..V, 0 = padding) and their
    TF-IDF weights, the sentence embeddings ``(N, E)``, the encoded target ``(N,)``."""

    ids: torch.Tensor
    weights: torch.Tensor
    emb: torch.Tensor
    y: torch.Tensor


def _judge_loss(fit: TextViews, valid: TextViews, *, use: str, task: str, n_outputs: int, vocab: int,
                c: float, c_emb: float) -> float:
    """Validation loss of one penalised linear model on the n-grams, the embeddings or both
    (``use``); objective: mean loss + ||W_ngrams||^2 / (2 c N) + ||W_emb||^2 / (2 c_emb N), as
    ``LogisticRegression(C=...)``. L-BFGS, at most 40 iterations: a judge, not the model."""
    torch.manual_seed(0)
    bag = torch.nn.EmbeddingBag(vocab, n_outputs, mode="sum", padding_idx=0) if use != "minilm" else None
    lin = torch.nn.Linear(fit.emb.shape[1], n_outputs, bias=False) if use != "ngrams" else None
    bias = torch.zeros(n_outputs, requires_grad=True)
    penalised = ([(bag.weight, c)] if bag is not None else []) + ([(lin.weight, c_emb)] if lin is not None else [])
    for p, _ in penalised:
        torch.nn.init.zeros_(p)

    def logits(rows: TextViews) -> torch.Tensor:
        out = bias.expand(len(rows.y), n_outputs)
        if bag is not None:
            out = out + bag(rows.ids, per_sample_weights=rows.weights)
        if lin is not None:
            out = out + lin(rows.emb)
        return out

    def loss_of(rows: TextViews) -> torch.Tensor:
        z = logits(rows)
        if task == "classify":
            return torch.nn.functional.cross_entropy(z, rows.y.long())
        return torch.nn.functional.mse_loss(z[:, 0], rows.y.float())

    opt = torch.optim.LBFGS([bias, *(p for p, _ in penalised)], lr=1.0, max_iter=40, history_size=10,
                            line_search_fn="strong_wolfe")
    n = len(fit.y)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_of(fit) + sum((p * p).sum() / (2.0 * strength * n) for p, strength in penalised)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(loss_of(valid))


EMBED_CS = (0.01, 0.03, 0.1, 0.3, 1.0)  # the embedding judge's inverse penalties tried (unit-scale inputs)


def choose_text_encoder(fit: TextViews, valid: TextViews, *, task: str, n_outputs: int, vocab: int,
                        c: float = 10.0) -> tuple[str, dict[str, float]]:
    """``(choice, validation loss by choice)``: ``"ngrams"``, ``"minilm"`` or ``"both"`` (see the
    module docstring); ``vocab``: n-gram ids incl. padding; ``c``: the n-gram judges' inverse
    penalty. The embedding part's own penalty is the one of ``EMBED_CS`` whose embeddings-only
    judge has the lowest validation loss (dense and small: cheap), then used in "both"."""
    outputs = n_outputs if task == "classify" else 1
    judge = partial(_judge_loss, fit, valid, task=task, n_outputs=outputs, vocab=vocab, c=c)
    with torch.enable_grad():
        by_c = {c_emb: judge(use="minilm", c_emb=c_emb) for c_emb in EMBED_CS}
        c_emb = min(by_c, key=by_c.__getitem__)
        losses = {"ngrams": judge(use="ngrams", c_emb=c_emb), "minilm": by_c[c_emb], "both": judge(use="both", c_emb=c_emb)}
    encoder = min(("minilm", "both"), key=losses.__getitem__)
    if losses[encoder] < losses["ngrams"] * (1.0 - ENCODER_MARGIN):
        return encoder, losses
    return "ngrams", losses
