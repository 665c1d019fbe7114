"""Helpers of the command-line tests: run ``deepfit`` as a user does, and kill a training run
once it has written a checkpoint (the SIGKILL resume tests)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, wait: bool = True):
    """``python -m deepfit ARGS`` at one thread from the repository root: the finished process
    (text output captured), or with ``wait=False`` the running one (stderr piped)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "deepfit", *args]
    if not wait:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def kill_at_first_checkpoint(proc: subprocess.Popen, work: Path, *, timeout: float = 240) -> None:
    """Wait until ``work/last.ckpt`` exists (the process must still run), then SIGKILL the process."""
    deadline = time.monotonic() + timeout
    while not (work / "last.ckpt").exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
