import csv
import io
import json

import pytest
import torch
from torch import nn

from deepfit import Callback, Learner
from deepfit.engine.callbacks import CallbackList, CSVLogger, EarlyStopping, JSONLLogger, ProgressLog
from deepfit.errors import CallbackError, CancelEpoch, CancelFit


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] > 0).long()


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_fit_start(self, learner): self.events.append("fit_start")
    def on_epoch_start(self, learner): self.events.append("epoch_start")
    def on_batch_start(self, learner): self.events.append("batch_start")
    def on_after_backward(self, learner): self.events.append("after_backward")
    def on_batch_end(self, learner): self.events.append("batch_end")
    def on_validation_end(self, learner): self.events.append("validation_end")
    def on_epoch_end(self, learner): self.events.append("epoch_end")
    def on_fit_end(self, learner): self.events.append("fit_end")


def test_event_order():
    rec = Recorder()
    x, y = _data()
    Learner(nn.Linear(4, 2), (x, y), (x, y), batch_size=32, callbacks=[rec], progress=False).fit(2)
    step = ["batch_start", "after_backward", "batch_end"]
    epoch = ["epoch_start", *step, *step, "validation_end", "epoch_end"]
    assert rec.events == ["fit_start", *epoch, *epoch, "fit_end"]


def test_dispatch_lists_only_overridden_events():
    class OnlyEpochEnd(Callback):
        def on_epoch_end(self, learner): ...

    cbs = CallbackList([OnlyEpochEnd()])
    assert cbs.has("on_epoch_end")
    assert not cbs.has("on_batch_end") and not cbs.has("on_after_backward")


def test_cancel_fit_and_cancel_epoch():
    class StopAt(Callback):
        def on_batch_end(self, learner):
            if learner.step == 3:
                raise CancelFit()

    class SkipRest(Callback):
        def on_batch_end(self, learner):
            raise CancelEpoch()

    x, y = _data(128)
    learn = Learner(nn.Linear(4, 2), (x, y), batch_size=16, callbacks=[StopAt()], progress=False)
    assert learn.fit(5) == [] and learn.step == 3
    learn = Learner(nn.Linear(4, 2), (x, y), batch_size=16, callbacks=[SkipRest()], progress=False)
    assert len(learn.fit(3)) == 3 and learn.step == 3  # one step per epoch


def test_callback_error_names_callback_and_event():
    class Broken(Callback):
        def on_epoch_end(self, learner):
            raise KeyError("oops")

    x, y = _data()
    learn = Learner(nn.Linear(4, 2), (x, y), callbacks=[Broken()], progress=False)
    with pytest.raises(CallbackError, match=r"Broken failed in on_epoch_end \(epoch 1, step 1\).*KeyError"):
        learn.fit(1)


def test_early_stopping_stops_and_restores_best():
    x, y = _data(256)
    noise_y = torch.randint(0, 2, (256,), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 2))
    es = EarlyStopping("valid_loss", patience=2)
    # Random labels: the valid loss soon rises as the model memorises noise.
    learn = Learner(model, (x, noise_y), (x[:64] + 0.5, noise_y[:64]), lr=3e-2, callbacks=[es], progress=False)
    history = learn.fit(60)
    assert len(history) < 60
    best = min(history, key=lambda r: r["valid_loss"])
    assert es.best_epoch == best["epoch"]
    assert learn.validate()["loss"] == pytest.approx(best["valid_loss"], rel=1e-5)


def test_early_stopping_unknown_monitor_is_a_clear_error():
    x, y = _data()
    learn = Learner(nn.Linear(4, 2), (x, y), callbacks=[EarlyStopping("valid_acc")], progress=False)
    with pytest.raises(Exception, match="monitors 'valid_acc'.*available: train_loss"):
        learn.fit(1)


def test_csv_and_jsonl_logs(tmp_path):
    x, y = _data()
    learn = Learner(
        nn.Linear(4, 2), (x, y), (x, y), metrics=["accuracy"],
        callbacks=[CSVLogger(tmp_path / "h.csv"), JSONLLogger(tmp_path / "h.jsonl")], progress=False,
    )
    history = learn.fit(3)
    rows = list(csv.DictReader(open(tmp_path / "h.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["valid_accuracy"]) == pytest.approx(history[-1]["valid_accuracy"])
    lines = [json.loads(line) for line in open(tmp_path / "h.jsonl")]
    assert lines == history


def test_progress_log_prints_one_line_per_epoch():
    stream = io.StringIO()
    x, y = _data()
    Learner(nn.Linear(4, 2), (x, y), callbacks=[ProgressLog(stream)], progress=False).fit(3)
    lines = stream.getvalue().strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3  train_loss")


def test_progress_lines_start_with_the_learners_label():
    from deepfit.engine.callbacks import TimeLimit

    x, y = _data()
    stream = io.StringIO()
    Learner(nn.Linear(4, 2), (x, y), callbacks=[ProgressLog(stream)], progress=False,
            progress_label="model 2/4").fit(2)
    assert [line[:22] for line in stream.getvalue().splitlines()] == ["model 2/4  epoch 1/2  ", "model 2/4  epoch 2/2  "]
    stream = io.StringIO()
    Learner(nn.Linear(4, 2), (x, y), callbacks=[ProgressLog(stream), TimeLimit(60)], batch_size=16, progress=False,
            progress_label="model 3").fit(1)
    assert stream.getvalue().startswith("model 3  epoch 1  step "), stream.getvalue()


def test_tensorboard_logger_needs_package_or_writes(tmp_path):
    from deepfit.engine.callbacks import TensorBoardLogger
    from deepfit.errors import ConfigError

    x, y = _data()
    learn = Learner(nn.Linear(4, 2), (x, y), callbacks=[TensorBoardLogger(tmp_path / "tb")], progress=False)
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install 'deepfit\\[tensorboard\\]'"):
            learn.fit(1)
    else:
        learn.fit(1)
        assert any((tmp_path / "tb").iterdir())


def test_progress_log_shows_steps_and_the_budget_when_a_time_limit_ends_the_run():
    from deepfit.engine.callbacks import TimeLimit

    stream = io.StringIO()
    x, y = _data()
    Learner(nn.Linear(4, 2), (x, y), callbacks=[ProgressLog(stream), TimeLimit(60)], batch_size=16,
            progress=False).fit(2)
    lines = stream.getvalue().strip().splitlines()
    assert len(lines) == 2
    steps = len(x) // 16 + (len(x) % 16 > 0)
    assert lines[1].startswith(f"epoch 2  step {2 * steps}  0s/60s  train_loss"), lines[1]
    stream = io.StringIO()  # a budget left over from a whole fit is rounded, not printed as 40.7494s
    Learner(nn.Linear(4, 2), (x, y), callbacks=[ProgressLog(stream), TimeLimit(40.7494)], batch_size=16,
            progress=False).fit(1)
    assert stream.getvalue().startswith(f"epoch 1  step {steps}  0s/41s  train_loss"), stream.getvalue()


def test_callback_state_is_keyed_by_class_name_numbered_when_repeated():
    from deepfit.engine.callbacks import TimeLimit

    class Counter(Callback):
        def __init__(self):
            self.n = 0

        def on_batch_end(self, learner):
            self.n += 1

        def state_dict(self):
            return {"n": self.n}

        def load_state_dict(self, state):
            self.n = state["n"]

    cbs = CallbackList([EarlyStopping(), Counter(), EarlyStopping("valid_accuracy"), TimeLimit(5), Counter()])
    qual = Counter.__qualname__  # test_callback_state_is_keyed_....<locals>.Counter
    assert cbs.state_keys() == [qual, f"{qual}#1", "TimeLimit", "EarlyStopping", "EarlyStopping#1"]
    state = cbs.state_dict()
    assert list(state) == cbs.state_keys()
    # Another callback in front no longer shifts the keys: the state reaches the right callback.
    first, second = Counter(), Counter()
    first.n, second.n = 3, 7
    other = CallbackList([first, second])
    again = CallbackList([ProgressLog(), Counter(), Counter()])
    again.load_state_dict(other.state_dict())
    assert [cb.n for cb in again if isinstance(cb, Counter)] == [3, 7]


def test_monitor_mode_comes_from_the_metric_when_it_declares_one(tmp_path):
    from deepfit.engine.callbacks import ModelCheckpoint
    from deepfit.metrics import Accuracy, Metric

    class Precision(Accuracy):  # a name the name rule reads as "min"
        name = "precision"
        higher_is_better = True

    class Undeclared(Metric):  # does not say which way is better: the name rule decides
        name = "logloss_like"

        def _update(self, output, target):
            pass

        def compute(self):
            return 0.0

    x, y = _data()
    stops = [EarlyStopping("valid_precision", patience=99), EarlyStopping("valid_precision", mode="min", patience=99),
             EarlyStopping("valid_loss", patience=99), EarlyStopping("valid_logloss_like", patience=99)]
    assert [s.mode for s in stops] == ["min", "min", "min", "min"]  # before fit: the name rule
    ckpt = ModelCheckpoint(tmp_path, monitor="valid_precision")
    learn = Learner(nn.Linear(4, 2), (x, y), (x, y), metrics=[Precision(), Undeclared()], batch_size=32,
                    callbacks=[*stops, ckpt], progress=False)
    learn.fit(1)
    assert [s.mode for s in stops] == ["max", "min", "min", "min"]  # explicit mode= is kept
    assert ckpt.mode == "max"
