"""The linear part of a table model: an additive model fitted before the network trains,
blended into its output after training as far as the validation rows ask for it.

:func:`fit_linear_part` fits :func:`~deepfit.models.tabular.linear_logits` — for each number a
piecewise-linear curve over its bins plus a slope, for each category level its own weight (every
level of the vocabulary, however many), and a bias — by full-batch L-BFGS on the training rows,
minimising the summed loss (cross-entropy, or half the squared error of the standardised target)
plus ``strength / 2`` times the squared weights (the bias is not penalised). In rows: a level seen
``m`` times moves its weight by its residuals' sum over ``m + strength`` — shrinkage toward zero by
how often the level was seen, the random-effects (ridge) view of an id column.

The strength is chosen on the validation rows: the path ``LAMBDAS`` from strong to weak,
each fit warm-started from the last, stopping once the validation loss rises 1 % above the
best; the best is kept. The fitted weights are fixed buffers of the model. After the network
has trained, :func:`choose_alpha` picks the linear model's share ``alpha`` of the output from
``ALPHAS`` by the validation loss of the blend (``(1 - alpha) * network + alpha * linear``, in
logits or standardised values): 0 where the network is better everywhere, up to 1 where the
linear model is. Measured on the 19-table suite (BENCHMARKS.md §3): adding the fitted linear
model to the output as a fixed prior instead, the network learning the residual, lost ground on
9 of 19 tables.

Large tables are fitted on a seeded subsample of at most ``MAX_CELLS`` (rows x features) cells.

Example:
    >>> import torch
    >>> from deepfit.models.tabular import TabularModel
    >>> spec = {"n_num": 1, "num_bins": [None], "cat_cardinalities": [], "n_text": 0, "text_buckets": 1}
    >>> model = TabularModel(spec, n_outputs=1, k=2, width=8, depth=1, linear=True)
    >>> x = torch.linspace(-2, 2, 200)[:, None]
    >>> rows = (x, torch.zeros(200, 0, dtype=torch.long), torch.zeros(200, 0, 1, dtype=torch.long), 2 * x[:, 0])
    >>> fit = fit_linear_part(model, rows, rows, task="regress")
    >>> fit.install(model); round(float(model.lin_x[0, 0] + model.lin_ple[0, 0, 0]), 2)
    2.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from deepfit.errors import ConfigError
from deepfit.models.tabular import LINEAR_BUFFERS, TabularModel, linear_logits

__all__ = ["LinearFit", "fit_linear_part", "choose_alpha", "LAMBDAS", "ALPHAS", "MAX_CELLS", "MAX_ITER"]

ALPHAS = tuple(i / 20 for i in range(21))  # the linear model's share of the output: 0, 0.05, ..., 1

LAMBDAS = (1000.0, 300.0, 100.0, 30.0, 10.0, 3.0, 1.0, 0.3, 0.1)  # L2 strengths, in rows, strong to weak
MAX_CELLS = 2e6  # rows x features fitted at most (a seeded subsample beyond): a few seconds in all
CHUNK = 2048  # choose_alpha: validation rows through the network at once
MAX_ITER = 30  # L-BFGS iterations per strength (each warm-started from the last)


@dataclass
class LinearFit:
    """A fitted linear part: its weights (:data:`~deepfit.models.tabular.LINEAR_BUFFERS`), the
    strength chosen, its validation loss and the path tried (strength, validation loss)."""

    weights: dict[str, Tensor]
    strength: float
    valid_loss: float
    path: list[tuple[float, float]] = field(default_factory=list)
    rows: int = 0
    task: str = "classify"

    def install(self, model: TabularModel) -> None:
        """Copy the weights into ``model``'s ``lin_*`` buffers (a model of the same spec, ``linear=True``)."""
        for name, buffer in zip(LINEAR_BUFFERS, model.linear_weights()):
            if buffer.shape != self.weights[name].shape:
                raise ConfigError(f"linear part {name} has shape {tuple(self.weights[name].shape)}, the model "
                                  f"{tuple(buffer.shape)}: fit it on this model's spec")
            buffer.copy_(self.weights[name])

    def note(self) -> str:
        """One line for the report."""
        what = ("validation loss" if self.task == "classify" else "validation MSE, standardised")
        value = self.valid_loss if self.task == "classify" else 2 * self.valid_loss  # half the squared error
        return (f"linear part: L2 strength {self.strength:g} chosen on the validation rows "
                f"({what} {value:.4g}; tried {', '.join(f'{s:g}' for s, _ in self.path)}; "
                f"fitted on {self.rows} rows)")


def _inputs(model: TabularModel, rows: tuple[Tensor, ...]) -> tuple[Tensor | None, Tensor, Tensor]:
    x_num, x_cat = rows[0].float(), rows[1].long()
    with torch.no_grad():
        enc = model.ple_encode(x_num) if model.n_num else None
    return enc, x_num, x_cat + model.cat_offsets


def _loss(logits: Tensor, y: Tensor, task: str) -> Tensor:
    """Mean loss per row: cross-entropy, or half the squared error."""
    if task == "classify":
        return F.cross_entropy(logits, y.long())
    return 0.5 * (logits[:, 0] - y.float()).square().mean()


def fit_linear_part(model: TabularModel, fit_rows: tuple[Tensor, ...], valid_rows: tuple[Tensor, ...], *,
                    task: str, strengths: tuple[float, ...] = LAMBDAS, seed: int = 0) -> LinearFit:
    """Fit the linear part of ``model`` (built with ``linear=True``; left unchanged) on
    ``fit_rows`` and choose its strength on ``valid_rows`` (each: the preprocessor's tensors,
    then the encoded target). Returns a :class:`LinearFit`; ``.install(model)`` sets it."""
    if task not in ("classify", "regress"):
        raise ConfigError(f"task must be 'classify' or 'regress', got {task!r}")
    if not strengths or any(not s > 0 for s in strengths):
        raise ConfigError(f"strengths must be numbers > 0, got {strengths!r}")
    shapes = [b.shape for b in model.linear_weights()]
    n = len(fit_rows[-1])
    n_features = shapes[0][0] * shapes[0][1] + shapes[1][0] + max(model.n_cat, 1)
    if n * n_features > MAX_CELLS:  # a seeded subsample: a linear model needs far fewer rows than the network
        keep = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: int(MAX_CELLS // n_features)]
        fit_rows = tuple(t[keep] for t in fit_rows)
        n = len(keep)
    enc, x_num, cats = _inputs(model, fit_rows)
    v_enc, v_num, v_cats = _inputs(model, valid_rows)
    y, v_y = fit_rows[-1], valid_rows[-1]
    weights = [torch.zeros(s, requires_grad=True) for s in shapes]
    with torch.no_grad():  # the bias starts at the training rows' log-prior / mean
        if task == "classify":
            counts = torch.bincount(y.long(), minlength=shapes[3][0]).float() + 1.0
            weights[3].copy_((counts / counts.sum()).log())
        else:
            weights[3].fill_(float(y.float().mean()))
    path: list[tuple[float, float]] = []
    best: tuple[float, float, list[Tensor]] | None = None
    for strength in sorted(strengths, reverse=True):
        optimizer = torch.optim.LBFGS(weights, lr=1.0, max_iter=MAX_ITER, history_size=20,
                                      line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-10)

        def closure(strength: float = strength) -> Tensor:
            optimizer.zero_grad()
            penalty = sum(w.square().sum() for w in weights[:3])
            loss = _loss(linear_logits(enc, x_num, cats, *weights), y, task) + 0.5 * strength / n * penalty
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            valid = float(_loss(linear_logits(v_enc, v_num, v_cats, *weights), v_y, task))
        if not math.isfinite(valid):
            break
        path.append((strength, valid))
        if best is None or valid < best[1]:
            best = (strength, valid, [w.detach().clone() for w in weights])
        elif valid > 1.01 * best[1]:
            break  # weaker shrinkage only overfits from here
    if best is None:
        raise ConfigError("the linear part did not converge to a finite loss; build the model with linear=False")
    return LinearFit(weights=dict(zip(LINEAR_BUFFERS, best[2])), strength=best[0], valid_loss=best[1], path=path,
                     rows=n, task=task)


def choose_alpha(model: torch.nn.Module, valid_rows: tuple[Tensor, ...], *, task: str) -> tuple[float, dict[float, float]]:
    """The linear model's share of ``model``'s output (a :class:`TabularModel` or a bag of them,
    built with ``linear=True``, their linear parts installed): the ``ALPHAS`` value with the
    lowest validation loss of the ensemble's prediction (log-loss of the mean member
    probabilities, or the squared error of the mean standardised value); ties go to the smaller
    share. Sets it on every model and returns ``(alpha, {alpha: loss})``."""
    parts = [m for m in model.modules() if isinstance(m, TabularModel)]
    if not parts or not all(m.linear for m in parts):
        raise ConfigError("choose_alpha needs TabularModels built with linear=True")
    inputs, y = valid_rows[:-1], valid_rows[-1]
    model.eval()
    with torch.no_grad():
        for m in parts:
            m.lin_alpha.fill_(0.0)
        # In chunks: a bag's members times the hidden width would not fit in memory for every row at once.
        deep = torch.cat([model(*(t[i:i + CHUNK] for t in inputs)).float()
                          for i in range(0, len(y), CHUNK)])  # (B, K, C): every member of every model
        lins = [linear_logits(*_inputs(m, inputs), *m.linear_weights()).unsqueeze(1).expand(-1, m.k, -1)
                for m in parts]
        lin = torch.cat(lins, dim=1)  # (B, K, C): each member's own model's linear part
        losses: dict[float, float] = {}
        for alpha in ALPHAS:
            out = torch.lerp(deep, lin, alpha)
            if task == "classify":
                p = out.softmax(-1).mean(1).clamp_min(1e-12)
                losses[alpha] = float(-p.gather(1, y.long()[:, None]).log().mean())
            else:
                losses[alpha] = float((out[..., 0].mean(1) - y.float()).square().mean())
        best = min(ALPHAS, key=lambda a: (losses[a], a))
        for m in parts:
            m.lin_alpha.fill_(best)
    return best, losses
