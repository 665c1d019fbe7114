"""Exact resume: a run interrupted mid-epoch and resumed ends bit-for-bit where an
uninterrupted run ends."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from deepfit import Callback, Learner
from deepfit.engine.callbacks import EarlyStopping
from deepfit.errors import CallbackError, CheckpointError


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=g)
    y = (x[:, 0] * x[:, 1] > 0).long()
    return x[:240], y[:240], x[240:], y[240:]


def _learner(out, callbacks=(), init_seed=0):
    x, y, xv, yv = _data()
    torch.manual_seed(init_seed)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 2))
    return Learner(
        model, (x, y), (xv, yv), metrics=["accuracy"], lr=1e-2, batch_size=32, seed=3,
        out_dir=out, checkpoint_every=5, progress=False,
        callbacks=[EarlyStopping("valid_loss", patience=50), *callbacks],
    )


class Crash(Callback):
    def __init__(self, at_step):
        self.at_step = at_step

    def on_batch_end(self, learner):
        if learner.step == self.at_step:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("crash_step", [12, 16, 32])  # mid-epoch after a checkpoint, at an epoch end, later
def test_resume_mid_epoch_is_bit_exact(tmp_path, crash_step):
    full = _learner(tmp_path / "full")
    full_history = full.fit_one_cycle(5, 1e-2)

    crashed = _learner(tmp_path / "run", callbacks=[Crash(crash_step)])
    with pytest.raises(CallbackError, match="simulated crash"):
        crashed.fit_one_cycle(5, 1e-2)
    resumed = _learner(tmp_path / "run", init_seed=99)  # different init: everything must come from the file
    history = resumed.fit_one_cycle(5, 1e-2, resume=tmp_path / "run" / "last.ckpt")

    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda h: [{k: v for k, v in r.items() if k != "time"} for r in h]  # noqa: E731
    assert strip(history) == strip(full_history)


def test_resume_reads_callback_state_keyed_by_position(tmp_path):
    """Checkpoints written before ``Callback.state_key`` keyed each callback's state by its
    position in the sorted list, ``"{index}:{class name}"``; they still resume exactly."""
    from deepfit.engine.callbacks import TimeLimit
    from deepfit.engine.checkpoint import load_checkpoint, save_checkpoint

    full = _learner(tmp_path / "full", callbacks=[TimeLimit(1e6)])
    full_history = full.fit_one_cycle(5, 1e-2)
    crashed = _learner(tmp_path / "run", callbacks=[TimeLimit(1e6), Crash(20)])
    with pytest.raises(CallbackError, match="simulated crash"):
        crashed.fit_one_cycle(5, 1e-2)
    path = tmp_path / "run" / "last.ckpt"  # written at step 15, mid-epoch 2
    state = load_checkpoint(path)
    assert list(state["callbacks"]) == ["Crash", "TimeLimit", "EarlyStopping", "ModelCheckpoint"]
    positions = enumerate(zip(crashed.callbacks, state["callbacks"].values()))
    old = {f"{i}:{type(cb).__name__}": cb_state for i, (cb, cb_state) in positions}
    assert list(old) == ["0:Crash", "1:TimeLimit", "2:EarlyStopping", "3:ModelCheckpoint"]
    state["callbacks"] = old
    del state["budget"]  # the learner's own budget state is newer too
    save_checkpoint(state, path)

    limit = TimeLimit(1e6)
    resumed = _learner(tmp_path / "run", callbacks=[limit, Crash(-1)], init_seed=99)
    stopping = next(cb for cb in resumed.callbacks if isinstance(cb, EarlyStopping))
    loads = []
    real_load = stopping.load_state_dict
    stopping.load_state_dict = lambda st: (loads.append(st), real_load(st))
    history = resumed.fit_one_cycle(5, 1e-2, resume=path)
    stored = old["2:EarlyStopping"]
    assert len(loads) == 1 and stored["best"] is not None
    for key in ("best", "best_epoch", "wait"):
        assert loads[0][key] == stored[key], key
    assert limit.spent_before == old["1:TimeLimit"]["spent"] > 0
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda h: [{k: v for k, v in r.items() if k != "time"} for r in h]  # noqa: E731
    assert strip(history) == strip(full_history)


def test_resume_with_other_settings_is_refused(tmp_path):
    learn = _learner(tmp_path)
    learn.fit(2)
    other = _learner(tmp_path)
    with pytest.raises(CheckpointError, match="written by a run with epochs=2, but this run has epochs=3"):
        other.fit(3, resume=tmp_path / "last.ckpt")


ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "deepfit", *args], env=env, cwd=ROOT, **kw)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    args = ["--epochs", "12", "--checkpoint-every", "7", "--seed", "1", "--quiet"]
    full = _cli("train", "digits", "--out", str(tmp_path / "full"), *args)

    run = tmp_path / "killed"
    work = tmp_path / "killed.incomplete"
    proc = _cli("train", "digits", "--out", str(run), *args)
    deadline = time.monotonic() + 120
    while not (work / "last.ckpt").exists():
        assert proc.poll() is None, "the run ended before writing a checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(0.05)  # land somewhere in the middle of training, possibly mid-write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not run.exists(), "the run finished before the kill: the test proved nothing"
    assert not list(work.glob("*.safetensors")), "an interrupted run must not leave a model behind"

    resumed = _cli("train", "digits", "--out", str(run), "--resume", "--quiet")
    assert resumed.wait(timeout=300) == 0
    assert full.wait(timeout=300) == 0
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(run / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not work.exists() and not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp"))
