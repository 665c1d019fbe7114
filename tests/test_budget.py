"""The time budget: Budget on its own (a fake clock), and a Learner stopping with ``budget=``."""

import io

import pytest
import torch
from torch import nn

import deepfit.engine.budget as budget_module
from deepfit import Callback, Learner
from deepfit.engine.budget import Budget
from deepfit.engine.callbacks import ProgressLog, TimeLimit
from deepfit.errors import ConfigError


class FakeTime:
    """Stands in for the ``time`` module inside deepfit.engine.budget: ``now`` moves when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr(budget_module, "time", fake)
    return fake


class Advance(Callback):
    """Moves the fake clock by ``seconds`` at the end of every batch (before the budget is checked)."""

    def __init__(self, clock, seconds=1.0):
        self.clock, self.seconds = clock, seconds

    def on_batch_end(self, learner):
        self.clock.now += self.seconds


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] > 0).long()


def test_budget_counts_from_start(clock):
    budget = Budget(10)
    clock.now += 100  # time before start() does not count
    budget.start()
    assert budget.elapsed() == 0 and budget.fraction() == 0 and budget.seconds_left() == 10
    clock.now += 4
    assert budget.elapsed() == 4 and budget.fraction() == 0.4 and budget.seconds_left() == 6
    assert not budget.tick() and not budget.expired and not budget.stopped
    clock.now += 6  # exactly spent is not over
    assert not budget.tick() and not budget.stopped
    clock.now += 0.5
    assert budget.expired and not budget.stopped  # reading does not stop anything
    assert budget.tick() and budget.stopped
    assert budget.seconds_left() == 0 and budget.fraction() == pytest.approx(1.05)


def test_budget_state_carries_the_time_spent_into_a_resumed_run(clock):
    first = Budget(10)
    first.start()
    clock.now += 3
    resumed = Budget(10)
    resumed.load_state_dict(first.state_dict())
    clock.now += 50  # the process restarting
    resumed.start()
    assert resumed.elapsed() == 3 and resumed.seconds_left() == 7


@pytest.mark.parametrize("seconds", [0, -1, float("nan")])
def test_budget_must_be_positive(seconds):
    with pytest.raises(ConfigError, match="time limit must be > 0 seconds"):
        Budget(seconds)


def test_learner_stops_after_the_batch_that_spends_the_budget(clock):
    x, y = _data()  # 4 batches of 16 per epoch
    learn = Learner(nn.Linear(4, 2), (x, y), batch_size=16, budget=10.0, progress=False,
                    callbacks=[Advance(clock)])
    history = learn.fit(100)
    # 1 s per batch: after batch 10 exactly 10 s are spent (not over), after batch 11 it is over.
    assert learn.step == 11 and learn.budget.stopped
    assert len(history) == 2  # two whole epochs; the stopped third one has no row
    assert isinstance(learn.budget, Budget) and learn.budget.seconds == 10.0


def test_learner_takes_a_budget_object_and_each_fit_starts_it_again(clock):
    x, y = _data()
    budget = Budget(2.5)
    learn = Learner(nn.Linear(4, 2), (x, y), batch_size=16, budget=budget, progress=False,
                    callbacks=[Advance(clock)])
    learn.fit(10)
    assert learn.budget is budget and learn.step == 3
    learn.fit(10)
    assert learn.step == 3  # a fit counts its own steps and gets the whole budget again


def test_learner_without_a_budget_runs_every_epoch():
    x, y = _data()
    learn = Learner(nn.Linear(4, 2), (x, y), batch_size=16, progress=False)
    assert learn.budget is None
    assert len(learn.fit(2)) == 2 and learn.step == 8


def test_a_budget_and_a_time_limit_together_are_refused():
    x, y = _data()
    learn = Learner(nn.Linear(4, 2), (x, y), budget=60, callbacks=[TimeLimit(30)], progress=False)
    with pytest.raises(ConfigError, match="time budget already.*give it once"):
        learn.fit(1)


@pytest.mark.parametrize("bad", ["60", True])
def test_budget_argument_is_checked(bad):
    with pytest.raises(ConfigError, match="budget must be seconds"):
        Learner(nn.Linear(4, 2), _data(), budget=bad)


def test_time_limit_lends_its_budget_and_reads_it(clock):
    x, y = _data()
    limit = TimeLimit(5)
    learn = Learner(nn.Linear(4, 2), (x, y), batch_size=16, callbacks=[limit, Advance(clock)], progress=False)
    learn.fit(10)
    assert learn.budget is limit.budget and learn.step == 6
    assert limit.stopped and limit.seconds == 5 and limit.elapsed() == 6


def test_a_resumed_fit_gets_only_what_its_budget_had_left(clock, tmp_path):
    from deepfit.errors import CancelFit

    class StopAt6(Callback):
        order = 85  # after ModelCheckpoint (80) wrote last.ckpt for this step

        def on_batch_end(self, learner):
            if learner.step == 6:
                raise CancelFit()

    x, y = _data()
    run = dict(batch_size=16, budget=10, out_dir=tmp_path, checkpoint_every=1, progress=False)
    Learner(nn.Linear(4, 2), (x, y), callbacks=[Advance(clock), StopAt6()], **run).fit(3)  # 6 s spent
    again = Learner(nn.Linear(4, 2), (x, y), callbacks=[Advance(clock)], **run)
    clock.now += 1000  # time between the runs does not count
    again.fit(3, resume=tmp_path / "last.ckpt")
    assert again.budget.spent_before == 6
    assert again.step == 6 + 5 and again.budget.stopped  # 6 s + 5 batches of 1 s > 10 s


def test_progress_line_reads_the_learners_budget():
    stream = io.StringIO()
    x, y = _data()
    Learner(nn.Linear(4, 2), (x, y), callbacks=[ProgressLog(stream)], batch_size=16, budget=60,
            progress=False).fit(1)
    assert stream.getvalue().startswith("epoch 1  step 4  0s/60s  train_loss"), stream.getvalue()
