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
    monkeypatch.setattr(learn._compiler, "_enable", lambda: enabled.append(learn.step))
    learn.fit(1)
    assert (enabled == [4]) is expect and (enabled == []) is (not expect)  # decided in the 5th step
    assert learn._compiler.decision is False  # _enable was stubbed, so nothing was compiled


def test_compile_flag_validation():
    with pytest.raises(ConfigError, match="compile must be True, False or 'auto'"):
        Learner(_model(), _data(), compile="yes")


def test_compiled_step_trains_like_eager():
    x, y = _data()
    eager = Learner(_model(), (x, y), (x, y), compile=False, lr=1e-2, metrics=["accuracy"], progress=False)
    compiled = Learner(_model(), (x, y), (x, y), compile=True, lr=1e-2, metrics=["accuracy"], progress=False)
    h_e, h_c = eager.fit(3), compiled.fit(3)
    assert compiled._compiler.compiled and not eager._compiler.compiled
    assert h_c[-1]["valid_accuracy"] > 0.9
    for a, b in zip(h_e, h_c):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)



@pytest.mark.parametrize("budget, expect", [(None, True), (1.5, False), (1e6, True)])
def test_auto_policy_respects_a_time_budget(monkeypatch, budget, expect):
    learn = Learner(_model(), _data(), progress=False, budget=budget)
    if learn.budget is not None:
        learn.budget.start()
    compiler = learn._compiler
    enabled = []
    monkeypatch.setattr(compiler, "_enable", lambda: enabled.append(True))
    compiler.prepare(CompilePolicy("auto", auto_threshold_s=3.0, probe_steps=5), total_steps=1_000_000)
    for _ in range(5):
        left = learn.budget.seconds_left() if learn.budget is not None else None
        compiler.observe(0.01, stepped=True, budget_left=left)  # projected eager time: 10,000 s
    assert bool(enabled) is expect


@pytest.mark.parametrize("seconds, expect", [(1.5, False), (1e6, True)])
def test_auto_policy_respects_a_time_limit_callback(monkeypatch, seconds, expect):
    from deepfit import Callback
    from deepfit.engine.callbacks import TimeLimit
    from deepfit.errors import CancelFit

    class StopAt10(Callback):
        def on_batch_end(self, learner):
            if learner.step == 10:
                raise CancelFit()

    limit = TimeLimit(seconds)
    learn = Learner(_model(), _data(), progress=False, callbacks=[limit, StopAt10()])
    learn.compile_policy = CompilePolicy("auto", auto_threshold_s=3.0, probe_steps=5)
    enabled = []
    monkeypatch.setattr(learn._compiler, "_enable", lambda: enabled.append(True))
    learn.fit(100_000)  # projected eager time: hours; the TimeLimit hands its budget to the learner
    assert learn.budget is limit.budget and learn.step == 10
    assert bool(enabled) is expect
