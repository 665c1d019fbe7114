"""Two processes on gloo (CPU): the same weights as one process with the same global batch, and
a time limit that stops every rank together."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPTS = Path(__file__).parent / "scripts"


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc: no psutil here)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def kill_launch(proc: subprocess.Popen) -> None:
    """SIGKILL a launch and every rank it started. torchrun starts each rank in a session of its
    own, so killing the launcher's process group alone leaves the ranks running (and still
    holding the launcher's stderr, so ``communicate()`` would wait for them to finish)."""
    ranks = _children(proc.pid)  # before the launcher dies and its children move to init
    for group in (proc.pid, *ranks):
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def run_script(name: str, *args: object, ranks: int | None = None, timeout: float = 240) -> None:
    """Run ``tests/scripts/NAME`` (under torchrun with ``ranks`` processes); on a timeout the launch
    and every rank are killed, so a hung rank never outlives the test."""
    launch = [sys.executable] + (["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
                                 if ranks else [])
    proc = subprocess.Popen([*launch, str(SCRIPTS / name), *map(str, args)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_launch(proc)
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]


def test_two_process_ddp_matches_single_process(tmp_path):
    two = tmp_path / "two.safetensors"
    run_script("ddp_train.py", two, 32, ranks=2)
    one = tmp_path / "one.safetensors"
    run_script("ddp_train.py", one, 64)

    a, b = load_file(two), load_file(one)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    meta_two, meta_one = json.loads(Path(f"{two}.json").read_text()), json.loads(Path(f"{one}.json").read_text())
    assert meta_two["rank"] == [0, 2, True] and meta_one["rank"] == [0, 1, True]
    # Validation metrics are reduced over both ranks' shares: the same as one process's.
    for r2, r1 in zip(meta_two["history"], meta_one["history"]):
        assert r2["valid_loss"] == pytest.approx(r1["valid_loss"], rel=1e-4)
        assert r2["valid_accuracy"] == pytest.approx(r1["valid_accuracy"])
        assert r2["train_loss"] == pytest.approx(r1["train_loss"], rel=1e-4)


def test_time_limit_stops_every_rank_after_the_same_step_with_the_same_weights(tmp_path):
    out = tmp_path / "run"
    run_script("ddp_time_limit.py", out, 2.0, ranks=2, timeout=120)  # hung here before the ranks agreed
    meta = [json.loads(Path(f"{out}.{r}.json").read_text()) for r in (0, 1)]
    assert meta[0]["stopped"] and meta[1]["stopped"]
    assert meta[0]["step"] == meta[1]["step"] > 10
    assert meta[0]["lr"] == meta[1]["lr"] < 1e-2  # the clock-driven decay, identical on both ranks
    a, b = (load_file(f"{out}.{r}.safetensors") for r in (0, 1))
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_language_model_trains_under_torchrun_and_rank_0_writes_the_run(tmp_path):
    from deepfit.predict import load

    out, prefix = tmp_path / "lm", tmp_path / "weights"
    run_script("ddp_lm.py", out, prefix, ranks=2, timeout=180)
    a, b = (load_file(f"{prefix}.{r}.safetensors") for r in (0, 1))
    for k in a:
        assert torch.equal(a[k], b[k]), k  # one model: the replicas never drifted
    assert not (tmp_path / "lm.incomplete").exists()
    lm = load(out)
    assert lm.info["stopped_by_time_limit"] and lm.info["steps"] > 20
    assert lm.metrics["valid_nats_per_char"] < lm.info["unigram_nats_per_char"]  # it learned
    assert lm.generate("The ", max_tokens=5, seed=0)  # the artifact loads and continues a prompt


def test_bundled_dataset_trains_under_torchrun_and_rank_0_writes_a_loadable_run(tmp_path):
    from deepfit.tasks import load

    out, prefix = tmp_path / "digits", tmp_path / "weights"
    run_script("ddp_arrays.py", out, prefix, ranks=2, timeout=240)
    a, b = (load_file(f"{prefix}.{r}.safetensors") for r in (0, 1))
    for k in a:
        assert torch.equal(a[k], b[k]), k  # one model: the replicas never drifted
    assert not (tmp_path / "digits.incomplete").exists() and (out / "deepfit.json").exists()
    model = load(out)
    assert model.metrics["test_accuracy"] > 0.9  # reduced over both ranks' shares of the test split
    assert model.evaluate("digits")["accuracy"] == pytest.approx(model.metrics["test_accuracy"])


def _torchrun_cli(*args: object) -> subprocess.Popen:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "deepfit"]
    return subprocess.Popen([*launch, *map(str, args)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> None:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_launch(proc)
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]


def _kill_after_first_checkpoint(proc: subprocess.Popen, run: Path) -> None:
    """Wait for the launch's first ``last.ckpt`` in ``<run>.incomplete``, then kill it mid-training."""
    import time

    work = run.with_name(run.name + ".incomplete")
    deadline = time.monotonic() + 240
    while not (work / "last.ckpt").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            kill_launch(proc)
            pytest.fail(f"the run ended or stalled before its first checkpoint: {proc.communicate()[1][-2000:]}")
        time.sleep(0.005)
    time.sleep(0.2)
    kill_launch(proc)  # every rank and the launcher, mid-training
    proc.communicate()
    assert not run.exists(), "the run finished before the kill: the test proved nothing"


def test_two_process_run_killed_mid_way_resumes_to_the_uninterrupted_weights(tmp_path):
    args = ["--epochs", "6", "--checkpoint-every", "5", "--seed", "1", "--batch-size", "32", "--quiet"]
    _finish(_torchrun_cli("train", "digits", "--out", tmp_path / "full", *args))
    run = tmp_path / "killed"
    _kill_after_first_checkpoint(_torchrun_cli("train", "digits", "--out", run, *args), run)
    _finish(_torchrun_cli("train", "digits", "--out", run, "--resume", "--quiet"))
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(run / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tasks_that_do_not_split_work_across_ranks_refuse_torchrun_clearly(tmp_path, monkeypatch):
    import pandas as pd

    from deepfit.errors import DistributedError
    from deepfit.tasks.table import TableSettings, fit_table

    monkeypatch.setenv("WORLD_SIZE", "2")
    frame = pd.DataFrame({"x": range(40), "y": [0, 1] * 20})
    with pytest.raises(DistributedError, match="one process only, but WORLD_SIZE=2.*without torchrun"):
        fit_table(frame, TableSettings(target="y"), out=tmp_path / "t")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


def _digit_pngs(root: Path) -> Path:
    """40 real scikit-learn digits per class (0, 1, 2) as 32 px PNGs in class folders."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for c in (0, 1, 2):
        (root / str(c)).mkdir(parents=True)
        for i in np.flatnonzero(digits.target == c)[:40]:
            grey = np.round(digits.images[i] * 255 / 16).astype(np.uint8)
            Image.fromarray(grey).resize((32, 32), Image.BILINEAR).save(root / str(c) / f"{i:04d}.png")
    return root


def test_image_runs_train_under_torchrun_with_rank_0_deciding_the_epochs(tmp_path):
    from deepfit.tasks import load

    data, out = _digit_pngs(tmp_path / "digits"), tmp_path / "runs"
    run_script("ddp_images.py", data, out, ranks=2, timeout=240)
    for name in ("memory", "stream"):
        a, b = (load_file(out / f"{name}.{r}.safetensors") for r in (0, 1))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name  # the replicas never drifted
        info = [json.loads((out / f"{name}.{r}.json").read_text()) for r in (0, 1)]
        assert info[0] == info[1], name  # one plan, one history length, one set of metrics
        assert not (out / f"{name}.incomplete").exists() and (out / name / "deepfit.json").exists()
        assert json.loads((out / name / "run.json").read_text())["plan"] == info[0]["plan"]
    memory = json.loads((out / "memory.0.json").read_text())
    # rank 1's probe said 10^6 x slower: had it planned for itself it would have trained 1 epoch
    assert memory["plan"]["epochs_planned"] == memory["epochs"] > 1
    assert json.loads((out / "stream.0.json").read_text())["streamed"]
    model = load(out / "memory")
    assert model.metrics["test_accuracy"] >= 0.9  # three digit classes, chance 1/3
    assert model.evaluate(str(data))["accuracy"] >= 0.9


def test_two_process_image_run_killed_mid_way_resumes_to_the_uninterrupted_weights(tmp_path):
    # 86 training images, batches of 16 per rank: every batch, the last one (22) too, splits evenly,
    # so both ranks draw the same random numbers and rank 0's random state in the checkpoint fits both.
    data = _digit_pngs(tmp_path / "digits")
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
              str(SCRIPTS / "ddp_images_resume.py"), str(data)]

    def start(out: Path, *extra: str) -> subprocess.Popen:
        return subprocess.Popen([*launch, str(out), *extra], env={**os.environ, "OMP_NUM_THREADS": "1"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)

    _finish(start(tmp_path / "full"))
    run = tmp_path / "killed"
    _kill_after_first_checkpoint(start(run), run)
    _finish(start(run, "--resume"))
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(run / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
