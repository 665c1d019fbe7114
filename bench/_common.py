"""Shared plumbing of the benchmarks that run each (case, seed) in its own 1-thread process.

The parent runs ``python <script> --case C --seed S --mode M [extra...]``; the child prints one
line ``RESULT {json}``. The parent adds a quiet check: CPU seconds other processes used on the
machine while the child ran (from /proc/stat, minus the child's own rusage).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence

__all__ = ["now", "busy_cpu_s", "run_child", "env_info"]

now = time.perf_counter


def busy_cpu_s() -> float:
    """Non-idle CPU seconds of the whole machine so far (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def run_child(script: str, case: str, seed: int, mode: str, timeout: float, *, extra: Sequence[str] = (),
              env: dict[str, str] | None = None) -> dict:
    """Run one case of ``script`` in a fresh process (one thread unless ``env`` says otherwise); its RESULT
    dict plus ``quiet``."""
    # ``env`` may override the thread counts (a benchmark at two threads).
    child_env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **(env or {})}
    cmd = [sys.executable, os.path.abspath(script), "--case", case, "--seed", str(seed), "--mode", mode, *extra]
    b0, r0, t0 = busy_cpu_s(), resource.getrusage(resource.RUSAGE_CHILDREN), now()
    try:
        p = subprocess.run(cmd, env=child_env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"case": case, "seed": seed, "error": f"timed out after {timeout:.0f} s"}
    wall, r1 = now() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    mine = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    others = max(0.0, busy_cpu_s() - b0 - mine)
    quiet = {"wall_s": round(wall, 2), "own_cpu_s": round(mine, 2), "others_cpu_s": round(others, 2),
             "others_cores_busy": round(others / wall, 3)}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        err = (p.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return {"case": case, "seed": seed, "error": f"exit {p.returncode}: {err[:300]}", "quiet": quiet}
    res = json.loads(lines[-1][7:])
    res["quiet"] = quiet
    return res


def env_info(packages: Sequence[str], threads: str) -> dict:
    """Interpreter, package versions, CPU, git commit (and whether the tree was dirty), load."""
    import importlib.metadata as md

    versions = {"python": sys.version.split()[0]}
    for name in packages:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = "n/a"
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    flags = next((ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")), "")
    here = os.path.dirname(os.path.abspath(__file__))
    g = subprocess.run(["git", "-C", here, "rev-parse", "--verify", "-q", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {"interpreter": sys.executable, "versions": versions, "cpu": cpu, "nproc": os.cpu_count(),
            "cpu_bf16": "avx512_bf16" in flags or "amx_bf16" in flags, "platform": platform.platform(),
            "threads": threads, "git_commit": g.stdout.strip() or None, "git_dirty": bool(dirty),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "loadavg_start": os.getloadavg()}
