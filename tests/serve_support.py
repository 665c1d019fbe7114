"""Shared by the `deepfit serve` tests: tiny trained runs (one session fixture) and real server
processes (`python -m deepfit serve RUN` on a free loopback port), one per model, shared by the
tests of a session. Imported by tests/conftest.py so the fixtures are session-wide."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-7f3a"


def serve_env(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("DEEPFIT_TOKEN", None)
    env.update(extra)
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m deepfit serve RUN ARGS` on a free port; ready once GET /health answers."""

    def __init__(self, run, *args, env=None, wait=True):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(Path(str(run)).parent / f"serve-{self.port}.log", "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "deepfit", "serve", str(run), "--port", str(self.port),
                                      *map(str, args)], cwd=ROOT, env=env or serve_env(), stdout=self.log,
                                     stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def wait_ready(self, timeout=90):
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"deepfit serve exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"deepfit serve did not answer within {timeout} s:\n{self.output()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def table_frame(n=320, seed=0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=n).round(4)
    amount = rng.uniform(100, 5000, size=n).round(2)
    color = rng.choice(["red", "green", "blue"], size=n)
    score = 2 * x + (color == "red") - 0.0004 * amount
    return pd.DataFrame({"x": x, "amount": amount, "color": color,
                         "y": np.where(score + 0.3 * rng.normal(size=n) > 0, "yes", "no"),
                         "value": (3 * x + 0.001 * amount + (color == "blue")).round(4)})


def write_images(root, per_class=16, side=16, seed=0):
    """Two classes of small PNGs a convnet tells apart at once: bright and dark squares with noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for label, base in (("bright", 200), ("dark", 50)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = np.clip(base + rng.normal(0, 25, (side, side, 3)), 0, 255).astype(np.uint8)
            p = root / label / f"{i:03d}.png"
            Image.fromarray(a).save(p)
            paths.append(p)
    return paths


@pytest.fixture(scope="session")
def serve_runs(tmp_path_factory):
    """Tiny trained runs: table classification (numbers + a category), table regression, an
    image folder model, an image + table-column model, a character-level LM."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    import deepfit
    from deepfit.tasks.lm import LMSettings, fit_lm

    root = tmp_path_factory.mktemp("serve_runs")
    runs = {"root": root}
    frame = table_frame()
    cls_csv, reg_csv = root / "cls.csv", root / "reg.csv"
    frame.drop(columns=["value"]).to_csv(cls_csv, index=False)
    frame.drop(columns=["y"]).to_csv(reg_csv, index=False)
    deepfit.fit(str(cls_csv), target="y", max_epochs=4, seed=0, out=str(root / "cls"), progress=False)
    deepfit.fit(str(reg_csv), target="value", max_epochs=4, seed=0, out=str(root / "reg"), progress=False)
    runs.update(cls=root / "cls", reg=root / "reg", cls_csv=cls_csv, reg_csv=reg_csv, frame=frame)

    images = root / "images"
    runs["image_paths"] = write_images(images)
    deepfit.fit(str(images), target="label", epochs=2, batch_size=16, seed=0, out=str(root / "img"), progress=False)
    runs.update(img=root / "img", images=images)

    rng = np.random.default_rng(1)
    rows = []
    (root / "photos").mkdir()
    for i in range(64):
        p = root / "photos" / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(p)
        x = float(rng.normal())
        rows.append({"photo": str(p), "x": round(x, 4), "y": "hi" if x > 0 else "lo"})
    photos = pd.DataFrame(rows)
    deepfit.fit(photos, target="y", epochs=2, batch_size=16, seed=0, out=str(root / "imgtab"), progress=False)
    runs.update(imgtab=root / "imgtab", photos=photos)

    from deepfit.datasets import tweets_corpus

    corpus = tweets_corpus()[:30_000]
    fit_lm([corpus], LMSettings(tokenizer="char", steps=40, lr=3e-3, dim=64, layers=1, heads=2, context=32,
                                batch_size=16, eval_every=40, valid_windows=16), out=root / "lm", progress=False)
    runs["lm"] = root / "lm"
    deepfit.fit("digits", epochs=1, seed=0, out=str(root / "digits"), progress=False)
    runs["digits"] = root / "digits"
    return runs


def _server(request, runs, name, *args):
    server = Server(runs[name], *args)
    request.addfinalizer(server.stop)
    return server


@pytest.fixture(scope="session")
def table_server(request, serve_runs):
    """The classification run behind a token, with small limits to test the 413s."""
    return _server(request, serve_runs, "cls", "--token", TOKEN, "--max-rows", 500, "--max-body-bytes", 200_000)


@pytest.fixture(scope="session")
def image_server(request, serve_runs):
    return _server(request, serve_runs, "img", "--max-image-pixels", 1_000_000)


@pytest.fixture(scope="session")
def auth():
    return {"Authorization": f"Bearer {TOKEN}"}
