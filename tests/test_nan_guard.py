import math

import pytest
import torch
from torch import nn

from deepfit import Callback, Learner
from deepfit.engine.checkpoint import load_checkpoint
from deepfit.errors import NonFiniteLossError


class PoisonAt(nn.Module):
    """Linear model whose output turns NaN once ``armed`` is set."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)
        self.armed = False

    def forward(self, x):
        out = self.lin(x)
        return out * float("nan") if self.armed else out


class Arm(Callback):
    def __init__(self, model, at_step):
        self.model, self.at_step = model, at_step

    def on_batch_end(self, learner):
        if learner.step == self.at_step:
            self.model.armed = True


def test_nan_loss_stops_with_clear_error_and_keeps_good_checkpoint(tmp_path):
    x = torch.randn(256, 4)
    y = (x[:, 0] > 0).long()
    model = PoisonAt()
    learn = Learner(model, (x, y), batch_size=32, out_dir=tmp_path, checkpoint_every=4,
                    callbacks=[Arm(model, 10)], progress=False)
    with pytest.raises(NonFiniteLossError, match=r"training loss became nan .*epoch 2.*Lower the learning rate"):
        learn.fit(3)
    state = load_checkpoint(tmp_path / "last.ckpt")
    assert state["step"] == 8  # the last checkpoint before the NaN; step 12 was refused
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert math.isfinite(state["history"][0]["train_loss"])


def test_nan_weights_are_never_checkpointed(tmp_path):
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    model = nn.Linear(4, 2)
    learn = Learner(model, (x, y), batch_size=64, out_dir=tmp_path, progress=False)
    learn.fit(1)
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteLossError, match=r"parameters weight hold NaN/inf .*last\.ckpt was not overwritten"):
        learn.save_checkpoint(tmp_path / "last.ckpt")
    assert torch.isfinite(load_checkpoint(tmp_path / "last.ckpt")["model"]["weight"]).all()
