"""``deepfit serve`` against the endpoint a user would write by hand (issue 14).

Starts real uvicorn processes on 127.0.0.1 and drives them from this one process with an
async HTTP client (aiohttp), a bounded number of requests each; every server runs torch at one
thread, on a 2-core machine in all:

- (a) ``deepfit serve`` (micro-batching) vs (b) ``bench/_naive_serve.py`` (FastAPI calling
  ``predictor.predict_frame`` per request) on the credit_data table model, one row per
  request, 1 / 8 / 32 / 128 concurrent clients: rows/s, p50 / p99 latency, errors;
- an image model (digits PNGs) with uploads: images/s and p99 at 16 clients;
- a soak: 20,000 requests at 32 clients with 5 % malformed ones mixed in: each malformed one
  must get its 4xx, each valid one a 200 whose prediction equals ``predictor.predict_frame``
  (what ``deepfit predict`` writes) on the same row; none lost; the server's RSS after / before.

    .venv/bin/python bench/serve.py --json bench/results/serve.json
    .venv/bin/python bench/serve.py --quick          # a smoke run: fewer requests, not a measurement

The models are trained once into ``--work`` (default ``runs/bench_serve``) and reused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 8, 32, 128)
# deepfit serve runs with its defaults (--max-batch 256, --max-wait-ms 0): what a user gets.


# ----------------------------------------------------------------------------- models and rows

def models(work: Path, quick: bool) -> tuple[Path, Path]:
    """The credit_data table model and the digits image model (trained once, then reused)."""
    from deepfit import datasets
    from deepfit.tasks.images.settings import ImageSettings
    from deepfit.tasks.images.task import fit_images
    from deepfit.tasks.table import TableSettings, fit_table

    work.mkdir(parents=True, exist_ok=True)
    table, images = work / "credit_data", work / "digits_images"
    csv = work / "credit_data.csv"
    if not csv.exists():
        datasets.rdataset("modeldata", "credit_data").to_csv(csv, index=False)
    if not (table / "deepfit.json").exists():
        fit_table(csv, TableSettings(target="Status", time_limit=30), out=table, progress=False)
    if not (images / "deepfit.json").exists():
        folder = work / "digits_png"
        if not folder.exists():
            datasets.digits_images(folder)
        fit_images(folder, ImageSettings(epochs=3), out=images, progress=False)
    return table, images


def table_rows(work: Path) -> list[dict[str, Any]]:
    """credit_data's rows without the target, as JSON records (NaN as null)."""
    import pandas as pd

    frame = pd.read_csv(work / "credit_data.csv").drop(columns=["Status"])
    rows = frame.to_dict(orient="records")
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]


def expected_table(run: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What ``deepfit predict`` writes for each row: its prediction and class probabilities."""
    import pandas as pd
    import torch

    import deepfit

    torch.set_num_threads(1)
    frame = deepfit.load(run).predict_frame(pd.DataFrame(rows))
    out = []
    for record in frame.to_dict(orient="records"):
        out.append({"prediction": str(record["prediction"]),
                    "probabilities": {k[len("proba_"):]: float(v) for k, v in record.items() if k.startswith("proba_")}})
    return out


# ----------------------------------------------------------------------------- servers

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process on a free loopback port, up once ``/health`` answers (or ``/docs``)."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], port: int, health: str) -> None:
        self.name, self.port, self.health = name, port, health
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait(self, timeout: float = 120.0) -> None:
        import httpx

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: "
                                   f"{self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + self.health, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {self.health} in {timeout:g}s")

    def rss_mb(self) -> float:
        """Resident memory of the server process, MB (from /proc)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def server_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def deepfit_server(run: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "deepfit", "serve", str(run), "--port", str(port)]
    return Server("deepfit serve", cmd, server_env(), port, "/health")


def naive_server(run: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "_naive_serve:app", "--app-dir", str(ROOT / "bench"),
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return Server("naive FastAPI", cmd, {**server_env(), "DEEPFIT_MODEL": str(run)}, port, "/docs")


# ----------------------------------------------------------------------------- the client

async def drive(url: str, requests: list[dict[str, Any]], concurrency: int,
                timeout: float = 60.0) -> tuple[list[tuple[int, float, Any]], float]:
    """Send ``requests`` (each ``{"json": ...}``, ``{"content": ..., "headers": ...}`` or
    ``{"files": [(field, (name, bytes, type))]}``) from ``concurrency`` workers over as many
    keep-alive connections; returns ``[(status, seconds, body)]`` in request order (status -1:
    no response) and the wall-clock seconds.

    The client is aiohttp: httpx's connection pool costs the client process more CPU per request
    as connections grow (measured here: GET /health at 1 / 32 / 128 connections, 1,451 / 462 /
    284 requests/s with httpx, 3,248 / 6,224 / 5,950 with aiohttp), so with httpx the client,
    not the server, would be measured."""
    import aiohttp

    results: list[tuple[int, float, Any]] = [(-1, float("nan"), None)] * len(requests)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(requests)):
        queue.put_nowait(i)

    def body_of(req: dict[str, Any]) -> dict[str, Any]:
        if "files" in req:
            form = aiohttp.FormData()
            for field, (name, data, ctype) in req["files"]:
                form.add_field(field, data, filename=name, content_type=ctype)
            return {"data": form}
        if "content" in req:
            return {"data": req["content"], "headers": req.get("headers", {})}
        return {"json": req["json"]}

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as client:
        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                try:
                    async with client.post("/v1/predict", **body_of(requests[i])) as r:
                        raw = await r.read()
                        body = json.loads(raw) if r.content_type == "application/json" else raw.decode()
                        results[i] = (r.status, time.perf_counter() - t0, body)
                except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                    results[i] = (-1, time.perf_counter() - t0, repr(e))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return results, wall


def stats(results: list[tuple[int, float, Any]], wall: float, rows_per_request: int = 1) -> dict[str, float]:
    ok = [t for status, t, _ in results if status == 200]
    lat = sorted(ok) or [float("nan")]
    return {"requests": len(results), "ok": len(ok), "errors": len(results) - len(ok),
            "rows_per_s": len(ok) * rows_per_request / wall if wall else float("nan"),
            "p50_ms": 1000 * statistics.median(lat),
            "p99_ms": 1000 * lat[min(len(lat) - 1, math.ceil(0.99 * len(lat)) - 1)], "wall_s": wall}


def same_prediction(got: dict[str, Any], want: dict[str, Any], tol: float = 1e-5) -> bool:
    if str(got.get("prediction")) != want["prediction"]:
        return False
    probs = got.get("probabilities") or {}
    return set(probs) == set(want["probabilities"]) and all(
        abs(float(probs[k]) - v) <= tol for k, v in want["probabilities"].items())


def malformed(rng: random.Random, row: dict[str, Any]) -> dict[str, Any]:
    """One of the bad requests a client sends: broken JSON, a missing column, a wrong type, no rows."""
    kind = rng.randrange(4)
    if kind == 0:
        return {"content": b'{"rows": [{"Seniority": 3,', "headers": {"content-type": "application/json"}}
    if kind == 1:
        bad = dict(row)
        bad.pop(next(iter(bad)))
        return {"json": {"rows": [bad]}}
    if kind == 2:
        name = next(k for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        return {"json": {"rows": [{**row, name: "not a number"}]}}
    return {"json": {"rows": []}}


# ----------------------------------------------------------------------------- the runs

def run_table(table: Path, rows: list[dict[str, Any]], want: list[dict[str, Any]], quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, make in (("serve", deepfit_server), ("naive", naive_server)):
        server = make(table)
        try:
            server.wait()
            asyncio.run(drive(server.url, [{"json": {"rows": [rows[i]]}} for i in range(64)], 8))  # warm-up
            for c in CONCURRENCY:
                n = (100 if quick else 400) if c == 1 else (300 if quick else 2000)
                idx = [i % len(rows) for i in range(n)]
                results, wall = asyncio.run(drive(server.url, [{"json": {"rows": [rows[i]]}} for i in idx], c))
                s = stats(results, wall)
                s["wrong"] = sum(1 for (status, _, body), i in zip(results, idx)
                                 if status == 200 and not same_prediction(body["predictions"][0], want[i]))
                out[f"{name}_{c}"] = s
                print(f"  {server.name:14s} {c:4d} clients: {s['rows_per_s']:8.1f} rows/s  p50 {s['p50_ms']:7.1f} ms  "
                      f"p99 {s['p99_ms']:7.1f} ms  errors {s['errors']}  wrong {s['wrong']}", flush=True)
        finally:
            server.stop()
    return out


def run_images(images: Path, work: Path, quick: bool) -> dict[str, Any]:
    files = sorted((work / "digits_png").rglob("*.png"))
    blobs = [(p.name, p.read_bytes()) for p in files]
    n = 200 if quick else 1000
    server = deepfit_server(images)
    try:
        server.wait()
        reqs = [{"files": [("image", (blobs[i % len(blobs)][0], blobs[i % len(blobs)][1], "image/png"))]} for i in range(n)]
        asyncio.run(drive(server.url, reqs[:32], 8))
        results, wall = asyncio.run(drive(server.url, reqs, 16))
        s = stats(results, wall)
        print(f"  images, 16 clients: {s['rows_per_s']:.1f} images/s  p99 {s['p99_ms']:.1f} ms  errors {s['errors']}")
        return s
    finally:
        server.stop()


def run_soak(table: Path, rows: list[dict[str, Any]], want: list[dict[str, Any]], quick: bool) -> dict[str, Any]:
    n = 2000 if quick else 20000
    rng = random.Random(0)
    plan = []  # (row index, malformed?)
    for i in range(n):
        plan.append((i % len(rows), rng.random() < 0.05))
    reqs = [malformed(rng, rows[i]) if bad else {"json": {"rows": [rows[i]]}} for i, bad in plan]
    server = deepfit_server(table)
    try:
        server.wait()
        asyncio.run(drive(server.url, [{"json": {"rows": [rows[i]]}} for i in range(256)], 32))  # warm-up
        rss_before = server.rss_mb()
        results, wall = asyncio.run(drive(server.url, reqs, 32))
        rss_after = server.rss_mb()
    finally:
        server.stop()
    lost = sum(1 for status, _, _ in results if status == -1)
    bad_ok = sum(1 for (status, _, _), (_, bad) in zip(results, plan) if bad and not 400 <= status < 500)
    good_wrong = sum(1 for (status, _, body), (i, bad) in zip(results, plan)
                     if not bad and (status != 200 or not same_prediction(body["predictions"][0], want[i])))
    s = {"requests": n, "malformed": sum(bad for _, bad in plan), "malformed_not_4xx": bad_ok,
         "valid_wrong_or_failed": good_wrong, "lost": lost, "wall_s": wall,
         "rss_before_mb": rss_before, "rss_after_mb": rss_after, "rss_growth": rss_after / rss_before - 1}
    print(f"  soak: {n} requests ({s['malformed']} malformed) in {wall:.1f}s: malformed without a 4xx {bad_ok}, "
          f"valid wrong or failed {good_wrong}, lost {lost}; RSS {rss_before:.0f} -> {rss_after:.0f} MB "
          f"({100 * s['rss_growth']:+.1f} %)")
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--quick", action="store_true", help="fewer requests: a smoke run, not a measurement")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench_serve"), help="where the models are trained")
    args = ap.parse_args(argv)
    work = Path(args.work)
    t0 = time.perf_counter()
    table, images = models(work, args.quick)
    rows = table_rows(work)
    want = expected_table(table, rows)
    print(f"models ready in {time.perf_counter() - t0:.0f}s; {len(rows)} credit_data rows")
    print("credit_data table model, 1 row per request:")
    table_runs = run_table(table, rows, want, args.quick)
    print("digits image model, one upload per request:")
    image_run = run_images(images, work, args.quick)
    print("soak, 32 clients:")
    soak = run_soak(table, rows, want, args.quick)
    s32, n32 = table_runs["serve_32"], table_runs["naive_32"]
    summary = {
        "serve_rows_per_s_32": s32["rows_per_s"], "naive_rows_per_s_32": n32["rows_per_s"],
        "speedup_32": s32["rows_per_s"] / n32["rows_per_s"], "p99_ms_32": s32["p99_ms"],
        "naive_p99_ms_32": n32["p99_ms"], "errors_32": s32["errors"] + s32["wrong"],
        "images_per_s_16": image_run["rows_per_s"], "images_p99_ms_16": image_run["p99_ms"],
        "soak_errors": soak["malformed_not_4xx"] + soak["valid_wrong_or_failed"], "soak_lost": soak["lost"],
        "rss_growth": soak["rss_growth"],
    }
    print("\n| clients | deepfit serve rows/s | p50 ms | p99 ms | naive rows/s | p50 ms | p99 ms | speed-up |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in CONCURRENCY:
        a, b = table_runs[f"serve_{c}"], table_runs[f"naive_{c}"]
        print(f"| {c} | {a['rows_per_s']:.0f} | {a['p50_ms']:.1f} | {a['p99_ms']:.1f} | {b['rows_per_s']:.0f} | "
              f"{b['p50_ms']:.1f} | {b['p99_ms']:.1f} | {a['rows_per_s'] / b['rows_per_s']:.2f}x |")
    print(f"\nsummary: {json.dumps(summary)}")
    if args.json:
        out = {"config": {"quick": args.quick, "serve_flags": "defaults (--max-batch 256, --max-wait-ms 0)",
                          "concurrency": CONCURRENCY, "server_threads": 1},
               "env": {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()},
               "table": table_runs, "images": image_run, "soak": soak, "summary": summary}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1), encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
