"""An N-BEATS-style network for global forecasting with quantile outputs that never cross.

Oreshkin et al. (2020), "N-BEATS: Neural basis expansion analysis for interpretable time series
forecasting", generic architecture: a stack of fully connected blocks, each reading what the
blocks before it left unexplained of the input window (the *backcast* residual) and adding its
part of the forecast. Here each block also reads side inputs — the observed-mask of the window
(short series are padded), calendar features of the first forecast step, a learned embedding of
the series and known covariates — and the forecast is ``horizon x quantiles`` numbers
parametrised to be monotone: the median, plus cumulative softplus steps up and down from it.
``members`` independent stacks are trained side by side (each on its own loss) and averaged
when predicting: an ensemble inside one module, one optimizer, one checkpoint.

Inputs are scaled windows (the task divides each window by its mean absolute value).

Example:
    >>> import torch
    >>> net = NBeats(context=8, horizon=3, quantiles=(0.1, 0.5, 0.9), n_series=2, n_calendar=2)
    >>> out = net(torch.randn(4, 8), torch.ones(4, 8), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long),
    ...           torch.zeros(4, 0))
    >>> tuple(out.shape), bool((out.diff(dim=-1) >= 0).all())
    ((4, 1, 3, 3), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["NBeats", "quantile_loss"]


class _Block(nn.Module):
    def __init__(self, context: int, side: int, out: int, width: int, layers: int) -> None:
        super().__init__()
        dims = [2 * context + side] + [width] * layers
        self.body = nn.Sequential(*[m for a, b in zip(dims, dims[1:]) for m in (nn.Linear(a, b), nn.ReLU())])
        self.backcast = nn.Linear(width, context)
        self.forecast = nn.Linear(width, out)

    def forward(self, residual: torch.Tensor, mask: torch.Tensor, side: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(torch.cat([residual, mask, side], dim=1))
        return self.backcast(h), self.forecast(h)


class _Stack(nn.Module):
    def __init__(self, context: int, horizon: int, n_q: int, side: int, width: int, blocks: int, layers: int) -> None:
        super().__init__()
        self.horizon, self.n_q = horizon, n_q
        self.blocks = nn.ModuleList(_Block(context, side, horizon * n_q, width, layers) for _ in range(blocks))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        residual, total = x, None
        for block in self.blocks:
            back, fore = block(residual, mask, side)
            residual = residual - back * mask
            total = fore if total is None else total + fore
        return total.view(len(x), self.horizon, self.n_q)


class NBeats(nn.Module):
    """See the module docstring. ``forward(x, mask, calendar, series, covariates)`` returns
    scaled quantile forecasts ``(batch, members, horizon, quantiles)``, increasing along the last axis."""

    def __init__(self, context: int, horizon: int, quantiles: Sequence[float], n_series: int, *, n_calendar: int = 0,
                 n_covariates: int = 0, embed_dim: int = 8, width: int = 256, blocks: int = 3, layers: int = 2,
                 members: int = 1) -> None:
        super().__init__()
        self.context, self.horizon = int(context), int(horizon)
        self.quantiles = tuple(float(q) for q in quantiles)
        if 0.5 not in self.quantiles:
            raise ValueError(f"quantiles must include 0.5 (the median), got {self.quantiles}")
        self.median = self.quantiles.index(0.5)
        self.n_series, self.n_calendar, self.n_covariates = int(n_series), int(n_calendar), int(n_covariates)
        self.embed_dim, self.width, self.blocks, self.layers = int(embed_dim), int(width), int(blocks), int(layers)
        self.members = int(members)
        # Index 0 is a series the model did not train on.
        self.embedding = nn.Embedding(self.n_series + 1, self.embed_dim) if self.embed_dim else None
        side = self.n_calendar + self.embed_dim + self.n_covariates
        self.stacks = nn.ModuleList(_Stack(self.context, self.horizon, len(self.quantiles), side, self.width,
                                           self.blocks, self.layers) for _ in range(self.members))

    def config(self) -> dict[str, Any]:
        """The constructor arguments, as JSON (``deepfit.json``'s ``model.config``)."""
        return {"context": self.context, "horizon": self.horizon, "quantiles": list(self.quantiles),
                "n_series": self.n_series, "n_calendar": self.n_calendar, "n_covariates": self.n_covariates,
                "embed_dim": self.embed_dim, "width": self.width, "blocks": self.blocks, "layers": self.layers,
                "members": self.members}

    def _monotone(self, raw: torch.Tensor) -> torch.Tensor:
        m = self.median
        centre = raw[..., m:m + 1]
        up = centre + torch.cumsum(F.softplus(raw[..., m + 1:]), dim=-1)
        down = centre - torch.cumsum(F.softplus(raw[..., :m].flip(-1)), dim=-1)
        return torch.cat([down.flip(-1), centre, up], dim=-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, calendar: torch.Tensor, series: torch.Tensor,
                covariates: torch.Tensor) -> torch.Tensor:
        parts = [calendar]
        if self.embedding is not None:
            parts.append(self.embedding(series))
        parts.append(covariates)
        side = torch.cat(parts, dim=1)
        outs = [self._monotone(stack(x, mask, side)) for stack in self.stacks]
        return torch.stack(outs, dim=1)


def quantile_loss(output: torch.Tensor, target: torch.Tensor, quantiles: Sequence[float]) -> torch.Tensor:
    """Mean pinball loss of ``output`` ``(B, members, H, Q)`` against ``target`` ``(B, H, 2)``
    (scaled values and their 0/1 mask), summed over members (each member learns on its own)."""
    q = torch.tensor(quantiles, dtype=output.dtype, device=output.device)
    y, mask = target[..., 0], target[..., 1]
    diff = y[:, None, :, None] - output
    loss = torch.maximum(q * diff, (q - 1) * diff).mean(-1)  # (B, E, H)
    per_member = (loss * mask[:, None, :]).sum(dim=(0, 2)) / mask.sum().clamp_min(1.0)
    return per_member.sum()
