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


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc; none where there is no /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a launcher, its process group and every process below it. torchrun starts each
    rank in a session of its own, so killing the launcher's group alone leaves the ranks running."""
    below = _descendants(proc.pid)
    for pid in [proc.pid, *below]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_script(name: str, *args: object, ranks: int | None = None, timeout: float = 240) -> None:
    """Run ``tests/scripts/NAME`` (under torchrun with ``ranks`` processes); on a timeout the
    launcher and every rank are killed, so a hung rank never outlives the test."""
    launch = [sys.executable] + (["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
                                 if ranks else [])
    proc = subprocess.Popen([*launch, str(SCRIPTS / name), *map(str, args)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]


def assert_same_replicas(prefix: Path) -> None:
    """Both ranks saved the same weights to ``<prefix>.<rank>.safetensors``: the replicas never drifted."""
    a, b = (load_file(f"{prefix}.{r}.safetensors") for r in (0, 1))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


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
    assert_same_replicas(prefix)
    assert not (tmp_path / "lm.incomplete").exists()
    lm = load(out)
    assert lm.info["stopped_by_time_limit"] and lm.info["steps"] > 20
    assert lm.metrics["valid_nats_per_char"] < lm.info["unigram_nats_per_char"]  # it learned
    assert lm.generate("The ", max_tokens=5, seed=0)  # the artifact loads and continues a prompt


def test_bundled_dataset_trains_under_torchrun_and_rank_0_writes_a_loadable_run(tmp_path):
    from deepfit.tasks import load

    out, prefix = tmp_path / "digits", tmp_path / "weights"
    run_script("ddp_arrays.py", out, prefix, ranks=2, timeout=240)
    assert_same_replicas(prefix)
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
        kill_tree(proc)
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]


def _kill_after_first_checkpoint(proc: subprocess.Popen, run: Path, *, settle: float = 0.2,
                                 wait: float = 300) -> None:
    """Wait (up to ``wait`` s) for the launch's first ``last.ckpt`` in ``<run>.incomplete``, then,
    ``settle`` s later, kill it mid-training."""
    import time

    work = run.with_name(run.name + ".incomplete")
    deadline = time.monotonic() + wait
    while not (work / "last.ckpt").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            kill_tree(proc)
            pytest.fail(f"the run ended or stalled before its first checkpoint: {proc.communicate()[1][-2000:]}")
        time.sleep(0.005)
    time.sleep(settle)
    kill_tree(proc)  # every rank and the launcher, mid-training
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


def test_a_task_that_does_not_split_its_work_refuses_torchrun_before_writing(tmp_path, monkeypatch):
    from deepfit.errors import DistributedError

    from deepfit.tasks import TASK_MODULES
    from deepfit.tasks.base import TASKS, BasePredictor, Task
    from deepfit.tasks.runner import fit

    class OneProcess(Task):  # a task that does not split its work across ranks
        kind = "one_process_test"
        Predictor = BasePredictor
        describe = "nothing"

        @classmethod
        def accepts(cls, data, hints):
            return False

        @classmethod
        def settings_from_cli(cls, args, given):
            return {}

        def train(self, data, run, *, test=None):
            raise AssertionError("must not start")

    monkeypatch.setitem(TASK_MODULES, OneProcess.kind, __name__)
    monkeypatch.setenv("WORLD_SIZE", "2")
    try:
        with pytest.raises(DistributedError, match="one process only, but WORLD_SIZE=2.*without torchrun"):
            fit(OneProcess.kind, None, object(), out=tmp_path / "t")
    finally:
        TASKS.pop(OneProcess.kind, None)
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
    # 86 training images, batches of 16 per rank (checkpoints hold every rank's random state, so
    # uneven last batches resume exactly too: see the bundled-dataset test above).
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


def _table_csvs(folder: Path) -> tuple[Path, Path]:
    """credit_data (4,454 real loans, target Status: 72 % good) and a small, clearly learnable
    text table (three sentiment words per row among filler words)."""
    import numpy as np
    import pandas as pd

    from deepfit import datasets

    credit = folder / "credit.csv"
    datasets.rdataset("modeldata", "credit_data").to_csv(credit, index=False)
    rng = np.random.default_rng(0)
    good, bad = ["great", "fine", "lovely", "happy", "nice"], ["awful", "sad", "poor", "bad", "dull"]
    label = rng.integers(0, 2, 240)
    text = [" ".join(rng.choice(good if y else bad, 3)) + " " + " ".join(rng.choice(["the", "a", "it", "was", "so"], 3))
            for y in label]
    reviews = folder / "reviews.csv"
    pd.DataFrame({"text": text, "y": np.where(label, "pos", "neg")}).to_csv(reviews, index=False)
    return credit, reviews


@pytest.mark.parametrize("case", ["timed", "text"])
def test_table_trains_under_torchrun_with_rank_0_deciding_and_writing(tmp_path, case):
    """timed: a time limit, so rank 0 sizes the ensemble and decides whether another model joins;
    text: text_bags models, each on its own carve-out. Both: one model on both ranks, one run."""
    from deepfit.tasks import load

    credit, reviews = _table_csvs(tmp_path)
    out, prefix = tmp_path / "run", tmp_path / "weights"
    run_script("ddp_table.py", case, credit if case == "timed" else reviews, out, prefix, ranks=2, timeout=300)
    assert_same_replicas(prefix)
    seen = [json.loads(Path(f"{prefix}.{r}.json").read_text()) for r in (0, 1)]
    assert seen[0] == seen[1] and seen[0]["world"] == 2  # the same decisions and metrics on both ranks
    assert not (tmp_path / "run.incomplete").exists()
    assert {"deepfit.json", "model.safetensors", "metrics.json", "report.html", "run.json"} <= {p.name for p in out.iterdir()}
    model = load(out)
    info = seen[0]["info"]
    assert model.metrics == pytest.approx(seen[0]["metrics"])
    plan = json.loads((out / "run.json").read_text())["plan"]
    assert plan["ensemble_k"] == info["ensemble_k"] == model.info["ensemble_k"]
    if case == "timed":
        assert info["sizing_step_s"]  # rank 0 timed the ensemble
        assert model.metrics["test_accuracy"] > 0.75  # majority class: 0.72
    else:
        assert info["bags"] == 2
        assert model.metrics["test_accuracy"] > 0.9


def test_two_process_table_run_killed_mid_way_resumes_to_the_uninterrupted_weights(tmp_path):
    credit, _ = _table_csvs(tmp_path)
    args = ["--target", "Status", "--epochs", "20", "--checkpoint-every", "5", "--seed", "1", "--quiet"]
    _finish(_torchrun_cli("train", credit, "--out", tmp_path / "full", *args), timeout=300)
    run = tmp_path / "killed"
    _kill_after_first_checkpoint(_torchrun_cli("train", credit, "--out", run, *args), run, settle=0.05)
    _finish(_torchrun_cli("train", credit, "--out", run, "--resume", "--quiet"), timeout=300)
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(run / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
