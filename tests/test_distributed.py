"""Two processes on gloo (CPU) reach the weights of one process with the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).parent / "scripts" / "ddp_train.py"


def test_two_process_ddp_matches_single_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = tmp_path / "two.safetensors"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(SCRIPT), str(two), "32"],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = tmp_path / "one.safetensors"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(one), "64"], env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]

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
