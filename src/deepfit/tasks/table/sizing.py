"""Size the tabular ensemble to a time budget: as many members as still leave enough epochs.

A TabM-style ensemble costs about ``k`` times one MLP per row, and on a CPU without fast bf16
the default ``k=16`` x 3x256 ensemble trains only a few epochs of a 50k-row table in a minute
(diamonds: 3 epochs at one thread, RMSE 619; HistGradientBoosting 554). Fewer members train
more epochs and end far better when the budget binds (k=4: 13 epochs, RMSE 554; k=4 at width
128 or k=1: 34 epochs, 549-550 — measured here, seed 0, one thread), while small tables, which
early stopping ends long before the budget, keep the full ensemble.

How: time a few real training steps (forward, backward, AdamW) at ``k_max`` members and at
one member, fit ``step_s(k) = fixed + per_member * k`` through the two, and keep the largest
power of two ``k <= k_max`` whose epochs fit ``min_epochs`` times into the seconds left. The
trial models are thrown away; the caller seeds the real model afterwards, so the run with the
chosen ``k`` is the same as one asked for that ``k`` directly.

Example:
    >>> from deepfit.tasks.table.sizing import choose_k
    >>> choose_k(step_s={16: 0.16, 1: 0.02}, steps_per_epoch=100, seconds=120, k_max=16, min_epochs=24)
    4
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["choose_k", "projected_epochs", "time_train_step", "size_ensemble", "default_batch_size", "MIN_EPOCHS",
           "BUDGET_BOUND_EPOCHS", "BUDGET_BOUND_PATIENCE"]

# Epochs the budget must still pay for before members are kept. Set from the public suite's
# time-bound tables with a 60 s budget on 2 cores: diamonds with k=8 got 11 epochs (RMSE 557),
# with k=4 23 epochs (536); hotel_rates with k=16 got 16-19 epochs (RMSE 13.99, HGB 13.86);
# cpssw8 with k=4 (16-19 epochs) beat k=1 (8.584 vs 8.595, one thread).
MIN_EPOCHS = 20
# A run the budget will end (projected to fewer than BUDGET_BOUND_EPOCHS epochs) gets early
# stopping's patience of BUDGET_BOUND_PATIENCE epochs even when fewer are asked: with the LR held,
# a short patience stops it before the decay that pays most (diamonds, patience 8: stopped at
# epoch 20 of ~23 with RMSE 558; patience 16: 537).
BUDGET_BOUND_EPOCHS = 40
BUDGET_BOUND_PATIENCE = 16


def default_batch_size(n: int) -> int:
    """256 (512 from 20k rows) as calibrated on the public suite; small tables get smaller batches
    so that an epoch still holds ~16 steps and early stopping sees enough updates.

    Example:
        >>> default_batch_size(1000), default_batch_size(50_000)
        (64, 512)
    """
    if n >= 20_000:
        return 512
    if n >= 4096:
        return 256
    return int(min(256, max(16, 2 ** round(math.log2(max(n, 1) / 16)))))


def projected_epochs(step_s: dict[int, float], k: int, *, steps_per_epoch: int, seconds: float) -> float:
    """Epochs that ``seconds`` pay for at ``k`` members, from step times measured at two sizes
    (``step_s(k) = fixed + per_member * k`` through them)."""
    (k_a, t_a), (k_b, t_b) = sorted(step_s.items())[0], sorted(step_s.items())[-1]
    per_member = max(t_b - t_a, 0.0) / max(k_b - k_a, 1)
    fixed = max(t_a - per_member * k_a, 0.0)
    return seconds / max(steps_per_epoch * (fixed + per_member * k), 1e-9)


def choose_k(*, step_s: dict[int, float], steps_per_epoch: int, seconds: float, k_max: int, min_epochs: float) -> int:
    """The largest power of two ``k <= k_max`` whose projected epochs in ``seconds`` reach ``min_epochs``
    (1 when none does), from step times measured at ``k_max`` and at 1 member."""
    k = 1 << int(math.log2(k_max))
    while k > 1 and projected_epochs(step_s, k, steps_per_epoch=steps_per_epoch, seconds=seconds) < min_epochs:
        k //= 2
    return k


def time_train_step(model: nn.Module, inputs: Sequence[torch.Tensor], target: torch.Tensor,
                    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, repeats: int = 3) -> float:
    """Median seconds of one training step (forward, backward, fused AdamW) after one warm-up step."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss(model(*inputs), target).backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def size_ensemble(make_model: Callable[[int], nn.Module], batch: Sequence[torch.Tensor],
                  loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, steps_per_epoch: int,
                  seconds: float, k_max: int, min_epochs: float = MIN_EPOCHS) -> tuple[int, dict[int, float]]:
    """Time ``make_model(k_max)`` and ``make_model(1)`` on ``batch`` (inputs..., target) and return
    (the chosen k, the measured step seconds by k). ``k_max == 1`` measures nothing."""
    if k_max <= 1:
        return 1, {}
    *inputs, target = batch
    step_s = {k: time_train_step(make_model(k), inputs, target, loss) for k in (k_max, 1)}
    return choose_k(step_s=step_s, steps_per_epoch=steps_per_epoch, seconds=seconds, k_max=k_max,
                    min_epochs=min_epochs), step_s
