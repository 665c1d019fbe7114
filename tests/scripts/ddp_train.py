"""Run under torchrun: trains a small model with deepfit and saves rank 0's weights.

Usage: torchrun --standalone --nproc_per_node 2 ddp_train.py OUT.safetensors PER_RANK_BATCH
"""

import json
import sys

import torch
from safetensors.torch import save_file

torch.set_num_threads(1)

from deepfit import Learner  # noqa: E402
from deepfit.engine.callbacks import Callback  # noqa: E402


def make_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).long()
    return x[:384], y[:384], x[384:], y[384:]


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))


class Ranks(Callback):
    def __init__(self):
        self.seen = None

    def on_fit_start(self, learner):
        self.seen = (learner.dist.rank, learner.dist.world_size, learner.is_main)


if __name__ == "__main__":
    out, batch = sys.argv[1], int(sys.argv[2])
    x, y, xv, yv = make_data()
    ranks = Ranks()
    learn = Learner(make_model(), (x, y), (xv, yv), metrics=["accuracy"], lr=1e-2, batch_size=batch,
                    seed=5, progress=False, callbacks=[ranks])
    history = learn.fit_one_cycle(3)
    if learn.is_main:
        save_file({k: v.contiguous() for k, v in learn.model.state_dict().items()}, out)
        with open(out + ".json", "w") as f:
            json.dump({"history": history, "rank": ranks.seen}, f)
