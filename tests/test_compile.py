import pytest
import torch
from torch import nn

from deepfit import Learner
from deepfit.engine.compile import CompilePolicy
from deepfit.errors import ConfigError


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=g)
    return x, (x[:, 0] - x[:, 2] > 0).long()


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))


@pytest.mark.parametrize("threshold, expect", [(0.0, True), (1e9, False)])
def test_auto_policy_compiles_only_long_runs(monkeypatch, threshold, expect):
    x, y = _data()
    learn = Learner(_model(), (x, y), batch_size=16, compile="auto", progress=False)
    learn.compile_policy = CompilePolicy("auto", auto_threshold_s=threshold, probe_steps=5)
    enabled = []
    monkeypatch.setattr(learn._runner, "_enable", lambda: enabled.append(learn.step))
    learn.fit(1)
    assert (enabled == [4]) is expect and (enabled == []) is (not expect)  # decided in the 5th step
    assert learn._runner.decision is False  # _enable was stubbed, so nothing was compiled


def test_compile_flag_validation():
    with pytest.raises(ConfigError, match="compile must be True, False or 'auto'"):
        Learner(_model(), _data(), compile="yes")


def test_compiled_step_trains_like_eager():
    x, y = _data()
    eager = Learner(_model(), (x, y), (x, y), compile=False, lr=1e-2, metrics=["accuracy"], progress=False)
    compiled = Learner(_model(), (x, y), (x, y), compile=True, lr=1e-2, metrics=["accuracy"], progress=False)
    h_e, h_c = eager.fit(3), compiled.fit(3)
    assert compiled._runner.compiled and not eager._runner.compiled
    assert h_c[-1]["valid_accuracy"] > 0.9
    for a, b in zip(h_e, h_c):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)



@pytest.mark.parametrize("budget, expect", [(None, True), (1.5, False), (1e6, True)])
def test_auto_policy_respects_a_time_budget(monkeypatch, budget, expect):
    import time

    from deepfit.engine.callbacks import TimeLimit

    callbacks = [TimeLimit(budget)] if budget else []
    learn = Learner(_model(), _data(), progress=False, callbacks=callbacks)
    learn.compile_policy = CompilePolicy("auto", auto_threshold_s=3.0, probe_steps=5)
    for cb in callbacks:
        cb._t0 = time.monotonic()
    runner = learn._runner
    enabled = []
    monkeypatch.setattr(runner, "_enable", lambda: enabled.append(True))
    runner.prepare(total_steps=1_000_000)
    for _ in range(5):
        runner._observe(0.01)  # projected eager time: 10,000 s
    assert bool(enabled) is expect
