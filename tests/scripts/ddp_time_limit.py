"""Run under torchrun: a time-limited fit with a clock-driven LR; each rank saves its weights.

Rank 1 starts its clock 0.3 s late and is given a budget 0.5 s longer, so the ranks' own clocks
and budgets disagree: without agreeing on both they would stop after different steps (one left
waiting in an all-reduce) and set different learning rates (replicas drifting apart).

Usage: torchrun --standalone --nproc_per_node 2 ddp_time_limit.py OUT_PREFIX SECONDS
"""

import json
import os
import sys
import time

import torch
from safetensors.torch import save_file

torch.set_num_threads(1)

from deepfit import Learner  # noqa: E402
from deepfit.engine.callbacks import Callback, TimeLimit  # noqa: E402
from deepfit.engine.schedules import TimeCosine  # noqa: E402


class LateStart(Callback):
    order = 0  # fit-start callbacks all run before the budget starts its clock

    def on_fit_start(self, learner):
        if learner.dist.rank == 1:
            time.sleep(0.3)


if __name__ == "__main__":
    out, seconds = sys.argv[1], float(sys.argv[2])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 16, generator=g)
    y = (x[:, 0] * x[:, 1] > 0).long()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    rank = int(os.environ["RANK"])
    limit = TimeLimit(seconds + 0.5 * rank)
    learn = Learner(model, (x, y), lr=1e-2, batch_size=32, seed=3, progress=False, callbacks=[LateStart(), limit])
    schedule = TimeCosine(1e-2, 0, 0.01, clock=lambda: limit.elapsed() / limit.seconds)
    learn.fit(1000, schedule=schedule)
    save_file({k: v.contiguous() for k, v in learn.model.state_dict().items()}, f"{out}.{rank}.safetensors")
    with open(f"{out}.{rank}.json", "w") as f:
        json.dump({"step": learn.step, "stopped": limit.stopped, "lr": learn.optimizer.param_groups[0]["lr"]}, f)
