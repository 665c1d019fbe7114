"""Chapter 10 — Shipping a model: train, save, load, predict from the command line, serve over
HTTP and export to ONNX — and check that every route gives the same answer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["run"]


def _env() -> dict[str, str]:
    """The environment of the ``deepfit`` commands: this deepfit first on the path, one thread."""
    import deepfit

    src = str(Path(deepfit.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _deepfit(*args: str, in_process: bool = False) -> str:
    """Run ``deepfit ARGS`` (as ``python -m deepfit``, or in this process: the same code without
    the seconds a new Python takes to import torch), print the command, return its output."""
    print("$ deepfit " + " ".join(args))
    if in_process:
        import contextlib
        import io

        from deepfit.cli import main

        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            code = main(list(args))
        if code != 0:
            raise RuntimeError(f"deepfit {' '.join(args)} failed ({code})")
        return captured.getvalue()
    done = subprocess.run([sys.executable, "-m", "deepfit", *args], env=_env(), capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"deepfit {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def run(out_dir: str | Path, quick: bool = False) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    import deepfit
    from deepfit import datasets

    out_dir = Path(out_dir)
    work = out_dir / "runs"
    work.mkdir(parents=True, exist_ok=True)
    frame = datasets.rdataset("modeldata", "credit_data")
    new = frame.sample(5, random_state=1)
    new.drop(columns=["Status"]).to_csv(work / "new_loans.csv", index=False)

    # 1. Train and save: a run directory is the model (weights as safetensors, everything else JSON).
    settings = dict(max_epochs=5, k=2, width=32, depth=1) if quick else dict(time_limit=20)
    run_dir = work / "credit"
    shutil.rmtree(run_dir, ignore_errors=True)  # a run directory is created afresh
    model = deepfit.fit(frame, target="Status", out=None if quick else run_dir, progress=False, seed=0, **settings)
    if quick:  # the quick version saves just the model (no report, whose figures take seconds to draw)
        model.save(run_dir)
    print(f"trained: test accuracy {model.metrics['test_accuracy']:.3f}; the run directory holds "
          f"{', '.join(sorted(p.name for p in run_dir.iterdir() if p.is_file()))}")

    # 2. Load it back: the same predictions, to the last digit.
    loaded = deepfit.load(run_dir)
    p_memory = model.predict_proba(new)
    p_loaded = loaded.predict_proba(new)
    same = bool(np.array_equal(p_memory.to_numpy(), p_loaded.to_numpy()))
    print(f"deepfit.load: {type(loaded).__name__}; probabilities identical to the trained model's: {same}")

    # 3. From the command line.
    _deepfit("predict", str(run_dir), str(work / "new_loans.csv"), "--out", str(work / "predictions.csv"), in_process=quick)
    cli = pd.read_csv(work / "predictions.csv")
    print(cli.round(4).to_string(index=False))
    cli_gap = float(np.abs(cli[[c for c in cli.columns if c.startswith("proba_")]].to_numpy()
                           - p_loaded.to_numpy()).max())
    print(f"largest difference from deepfit.load's probabilities: {cli_gap:.1e} (the CSV rounds)")

    # 4. Over HTTP: deepfit serve, then a JSON request as any client would send it. (The quick
    #    version skips it: starting a server takes seconds; tests/test_serve*.py cover it.)
    http_gap = 0.0
    if quick:
        print("(quick: deepfit serve skipped)")
    else:
        port = _free_port()
        print(f"$ deepfit serve {run_dir} --port {port} &")
        log = open(work / "serve.log", "w")
        server = subprocess.Popen([sys.executable, "-m", "deepfit", "serve", str(run_dir), "--port", str(port)],
                                  env=_env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    health = json.loads(urllib.request.urlopen(url + "/health", timeout=1).read())
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"deepfit serve did not start; see {work / 'serve.log'}") from None
                    time.sleep(0.2)
            rows = json.loads(new.drop(columns=["Status"]).to_json(orient="records"))
            answer = _post(url + "/v1/predict", {"rows": rows[:2]})
            print(f"POST {url}/v1/predict with 2 rows ->")
            print(json.dumps(answer)[:400])
            served = np.array([[p["probabilities"][c] for c in loaded.classes] for p in answer["predictions"]])
            http_gap = float(np.abs(served - p_loaded.to_numpy()[:2]).max())
            print(f"largest difference from deepfit.load's probabilities: {http_gap:.1e}; health: {health['status']}")
        finally:
            server.terminate()
            server.wait(30)
            log.close()

    # 5. To other runtimes: ONNX, verified by onnxruntime against the model before it is written.
    print(_deepfit("export", str(run_dir), "--format", "onnx", in_process=quick).strip())
    import onnxruntime

    session = onnxruntime.InferenceSession(str(run_dir / "model.onnx"))
    inputs = [i.name for i in session.get_inputs()]
    print(f"the ONNX graph takes {len(inputs)} inputs, one per column ({', '.join(inputs[:5])}, ...) "
          f"and returns {session.get_outputs()[0].name}")
    report = json.loads((run_dir / "export.json").read_text())
    return {"test_accuracy": float(model.metrics["test_accuracy"]), "load_identical": same, "cli_gap": cli_gap,
            "http_gap": http_gap, "onnx_inputs": len(inputs), "export_keys": sorted(report)[:5]}
