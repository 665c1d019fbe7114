"""Benchmark 2 of the images issue: image pipeline throughput.

On a folder of JPEGs that the benchmark generates itself (2,000 images of 375x500, quality 90,
smooth gradients + shapes + noise so file sizes resemble photos; ``--quick``: 200), it measures:

1. **bare Pillow**: ``Image.open(p).convert("RGB")`` + ``load()`` in one process: the practical
   limit of a Pillow decoder, images/s;
2. **deepfit pipeline**: decode + random-resized-crop to 224 (scale 0.35-1) + horizontal flip
   with :class:`deepfit.data.images.ImageBatches` in 1 worker process (and in one per core,
   wall-clock only); the ratio to (1) per core used is ``decode_ratio_vs_pillow`` (target >= 0.9);
3. **training**: steady-state steps/s of a ResNet-18 at 128 px (``deepfit.models.resnet.resnet18``,
   batch 32, passes of 16 steps, the first step of each not timed; quick: 4) trained with the
   streaming loader (decode + random-resized-crop + flip in 1 worker process) vs on pre-decoded
   uint8 tensors, both with ``cores - 1`` torch threads, 3 rounds (quick: 1), which side goes
   first alternating;
   the median of the rounds' ratios is ``steps_ratio_decode_vs_cached`` (target >= 0.9);
4. **decoders**: JPEG bytes -> RGB array, Pillow vs simplejpeg (``simplejpeg_speedup_vs_pillow``),
   the measurement behind deepfit's choice of JPEG decoder.

``decode_ratio_vs_pillow`` ("per core used") divides images per CPU-second of the pipeline's
processes (main + workers, from ``getrusage``) by images per CPU-second of the bare loop; the
wall-clock ratio is reported too (``..._wall``). Both sides run interleaved in one process, so
the ratios hold on a busy machine better than the absolute rates do.

Usage:
    python bench/images_pipeline.py [--quick] [--json results/images_pipeline.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["run", "make_jpeg_folder", "bare_pillow_rate"]

WIDTH, HEIGHT, QUALITY = 500, 375, 90


_NOISE: dict[int, np.ndarray] = {}


def _noise_bank(seed: int) -> np.ndarray:
    """A (H+64, W+64, 3) int16 field of sensor-like noise, sliced at random offsets per image."""
    if seed not in _NOISE:
        rng = np.random.default_rng(seed + 10_000)
        fine = rng.normal(0, 16, (HEIGHT + 64, WIDTH + 64, 3))
        coarse = np.repeat(np.repeat(rng.normal(0, 8, ((HEIGHT + 65) // 2, (WIDTH + 65) // 2, 3)), 2, 0), 2, 1)
        coarse = coarse[: HEIGHT + 64, : WIDTH + 64]
        _NOISE[seed] = np.rint(fine + coarse).astype(np.int16)
    return _NOISE[seed]


def _one_image(rng: np.random.Generator, noise: np.ndarray) -> np.ndarray:
    """A photo-like 375x500 RGB array: smooth colour waves, a few shapes, texture noise."""
    from PIL import Image, ImageDraw

    x = np.arange(WIDTH, dtype=np.float32)
    y = np.arange(HEIGHT, dtype=np.float32)
    img = np.empty((HEIGHT, WIDTH, 3), np.float32)
    for c in range(3):  # sin(ax + by + p) as a sum of two outer products: cheap
        a, b = rng.uniform(-1, 1, 2) / rng.uniform(40, 200)
        p = rng.uniform(0, 2 * math.pi)
        img[..., c] = rng.uniform(60, 190) + 60 * (np.outer(np.cos(b * y), np.sin(a * x + p))
                                                  + np.outer(np.sin(b * y), np.cos(a * x + p)))
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(4, 12))):
        x0, y0 = int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT))
        x1, y1 = x0 + int(rng.integers(10, 200)), y0 + int(rng.integers(10, 150))
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=color)
    dy, dx = int(rng.integers(0, 64)), int(rng.integers(0, 64))
    out = np.asarray(pil).astype(np.int16) + noise[dy:dy + HEIGHT, dx:dx + WIDTH]
    return np.clip(out, 0, 255).astype(np.uint8)


def make_jpeg_folder(root: str | os.PathLike, n: int, *, seed: int = 0, classes: int = 10) -> list[str]:
    """Write ``n`` JPEGs (375x500, quality 90) into ``root/<class>/``; returns their paths."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    noise = _noise_bank(seed)
    paths = []
    for i in range(n):
        d = Path(root) / f"c{i % classes}"
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"{i:05d}.jpg"
        Image.fromarray(_one_image(rng, noise)).save(p, quality=QUALITY)
        paths.append(str(p))
    return paths


def bare_pillow_rate(paths: list[str], repeat: int = 1) -> float:
    """Images/s of the bare Pillow loop (open, convert to RGB, load), one process."""
    from PIL import Image

    t = time.perf_counter()
    for _ in range(repeat):
        for p in paths:
            with Image.open(p) as im:
                im.convert("RGB").load()
    return repeat * len(paths) / (time.perf_counter() - t)


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process and its reaped children (finished loader workers)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def pipeline_rate(paths: list[str], *, size: int = 224, workers: int = 1, batch_size: int = 64) -> dict:
    """deepfit's streaming loader (decode + random-resized-crop + flip) over ``paths`` once.

    Returns images/s (wall) and images per CPU-second of all its processes (main + workers).
    """
    import gc

    from deepfit.data.images import ImageBatches

    loader = ImageBatches(paths, np.zeros(len(paths), np.int64), size=size, batch_size=batch_size,
                          num_workers=workers, seed=0)
    gc.collect()  # before the clock starts: a collection with torch loaded costs ~0.1 s
    cpu, wall, n = _cpu_seconds(), time.perf_counter(), 0
    for x, _ in loader.iterate(0):
        n += len(x)
    wall = time.perf_counter() - wall
    cpu = _cpu_seconds() - cpu  # the exhausted DataLoader has joined (and so reaped) its workers
    return {"images_per_s": n / wall, "images_per_cpu_s": n / cpu, "workers": workers}


def bare_rates(paths: list[str]) -> dict:
    """The bare Pillow loop: images/s (wall) and images per CPU-second."""
    cpu, wall = time.process_time(), time.perf_counter()
    rate = bare_pillow_rate(paths)
    return {"images_per_s": rate, "images_per_cpu_s": len(paths) / (time.process_time() - cpu),
            "wall_s": time.perf_counter() - wall}


def decoder_rates(paths: list[str], rounds: int = 3) -> dict:
    """Images per CPU-second of JPEG -> RGB uint8 numpy array: Pillow vs simplejpeg (if installed).

    The question of the issue: is simplejpeg (libjpeg-turbo straight into numpy) faster than
    Pillow here? Both read the file bytes and return an ``(H, W, 3)`` array; rounds interleave.
    """
    import io

    from PIL import Image

    def pillow(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))

    decoders = {"pillow": pillow}
    try:
        import simplejpeg

        decoders["simplejpeg"] = lambda data: simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ImportError:
        pass
    rates: dict[str, list[float]] = {k: [] for k in decoders}
    for _ in range(rounds):
        for name, decode in decoders.items():
            t = time.process_time()
            for p in paths:
                with open(p, "rb") as f:
                    decode(f.read())
            rates[name].append(len(paths) / (time.process_time() - t))
    return {name: float(np.median(r)) for name, r in rates.items()}


def _model(n_classes: int):
    """ResNet-18 (deepfit.models.resnet) behind a uint8 -> normalised float input layer."""
    import torch
    from torch import nn

    from deepfit.models.resnet import resnet18

    class FromUint8(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) uint8 -> float
            return (x.float() - 127.5) / 64.0

    return nn.Sequential(FromUint8(), resnet18(n_classes))


def training_rates(paths: list[str], labels: np.ndarray, *, size: int = 128, batch_size: int = 32,
                   threads: int = 1, workers: int = 1, rounds: int = 3) -> dict:
    """Steady-state steps/s of ResNet-18 training: streamed decoding vs pre-decoded tensors.

    Both sides use the same torch threads, model, batch size and steps; the streamed side decodes
    + random-resized-crops + flips in ``workers`` processes while the model trains. Each side
    trains one pass over ``paths`` per round, for ``rounds`` rounds after a short warm-up, the side
    that goes first alternating (drift on a shared machine hits both), and a pass's rate counts the steps after its first one (the
    first pays for oneDNN's caches and, streamed, for starting the worker: once per epoch, not
    per step). The ratio is the median of the rounds' ratios.
    """
    import torch

    from deepfit import Learner
    from deepfit.data.images import ImageBatches, decode_images
    from deepfit.engine.callbacks import Callback

    torch.set_num_threads(threads)
    images, _, keep = decode_images(paths, size)
    y = torch.as_tensor(labels[keep])

    class StepClock(Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_batch_end(self, learner) -> None:  # noqa: ANN001
            self.times.append(time.perf_counter())

    def rate(train) -> float:
        torch.manual_seed(0)
        clock = StepClock()
        Learner(_model(int(labels.max()) + 1), train=train, batch_size=batch_size, lr=1e-3, progress=False,
                compile=False, threads=threads, callbacks=[clock]).fit(1)
        return (len(clock.times) - 1) / (clock.times[-1] - clock.times[0])

    def streamed() -> ImageBatches:
        return ImageBatches(paths, labels, size=size, batch_size=batch_size, num_workers=workers, seed=0)

    rate((images[: 2 * batch_size], y[: 2 * batch_size]))  # warm-up: allocator, oneDNN primitive caches
    cached, stream = [], []
    for r in range(rounds):  # the side that goes first alternates, so neither gains from the order
        if r % 2 == 0:
            cached.append(rate((images, y)))
            stream.append(rate(streamed()))
        else:
            stream.append(rate(streamed()))
            cached.append(rate((images, y)))
    return {"cached_steps_per_s": float(np.median(cached)), "decode_steps_per_s": float(np.median(stream)),
            "steps_ratio": float(np.median(np.asarray(stream) / np.asarray(cached))),
            "rounds_cached_steps_per_s": [round(r, 4) for r in cached],
            "rounds_decode_steps_per_s": [round(r, 4) for r in stream],
            "steps": len(paths) // batch_size, "rounds": rounds, "threads": threads, "workers": workers, "size": size,
            "batch_size": batch_size}


def run(quick: bool = False) -> dict:
    """Run the benchmark; returns ``{"summary": {...}, ...}`` (see the module docstring)."""
    import torch

    from deepfit.data.images import JPEG_DECODER

    n = 200 if quick else 2000
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads_before = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="deepfit-bench-images-") as tmp:
        t = time.perf_counter()
        paths = make_jpeg_folder(tmp, n)
        gen_s = time.perf_counter() - t
        labels = np.array([int(Path(p).parent.name[1:]) for p in paths])
        sizes = [os.path.getsize(p) for p in paths]
        bare_pillow_rate(paths[:50])  # warm the page cache and Pillow's imports
        rounds = 1 if quick else 2
        bare, one, multi = [], [], []
        for _ in range(rounds):  # interleaved, so drift on a shared machine hits both sides
            bare.append(bare_rates(paths))
            one.append(pipeline_rate(paths, workers=1))
            if cores > 1:
                multi.append(pipeline_rate(paths, workers=min(cores, 8)))
        bare.append(bare_rates(paths))
        decoders = decoder_rates(paths[:200])
        steps = 4 if quick else 16  # ResNet-18 steps take ~1-3 s on one core: a subset is enough
        train = training_rates(paths[:steps * 32], labels[:steps * 32], threads=max(1, cores - 1), workers=1,
                               rounds=1 if quick else 3)
    torch.set_num_threads(threads_before)

    def med(rows: list[dict], key: str) -> float:
        return float(np.median([r[key] for r in rows]))

    bare_cpu, bare_wall = med(bare, "images_per_cpu_s"), med(bare, "images_per_s")
    one_cpu, one_wall = med(one, "images_per_cpu_s"), med(one, "images_per_s")
    summary = {
        "decode_ratio_vs_pillow": round(one_cpu / bare_cpu, 3),
        "decode_ratio_vs_pillow_wall": round(one_wall / bare_wall, 3),
        "steps_ratio_decode_vs_cached": round(train["steps_ratio"], 3),
        "bare_pillow_images_per_s": round(bare_wall, 1),
        "pipeline_images_per_s_1_worker": round(one_wall, 1),
        "pipeline_images_per_cpu_s": round(one_cpu, 1),
        "bare_pillow_images_per_cpu_s": round(bare_cpu, 1),
        "cached_steps_per_s": round(train["cached_steps_per_s"], 3),
        "decode_steps_per_s": round(train["decode_steps_per_s"], 3),
    }
    if "simplejpeg" in decoders:
        summary["simplejpeg_speedup_vs_pillow"] = round(decoders["simplejpeg"] / decoders["pillow"], 3)
    if multi:
        summary[f"pipeline_images_per_s_{multi[0]['workers']}_workers"] = round(med(multi, "images_per_s"), 1)
    return {
        "summary": summary,
        "setup": {"images": n, "width": WIDTH, "height": HEIGHT, "quality": QUALITY,
                  "mean_kb": round(float(np.mean(sizes)) / 1024, 1), "generate_s": round(gen_s, 1),
                  "crop": "random-resized-crop 224, scale (0.35, 1), ratio (3/4, 4/3), flip p=0.5",
                  "jpeg_decoder": JPEG_DECODER, "cores": cores, "loadavg": os.getloadavg()},
        "bare": bare, "pipeline_1_worker": one, "pipeline_all_workers": multi, "training": train,
        "decoders_images_per_cpu_s": decoders,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 images and short training runs (< 2 minutes)")
    parser.add_argument("--json", help="write the results to this JSON file")
    args = parser.parse_args(argv)
    t = time.perf_counter()
    result = run(args.quick)
    setup = result["setup"]
    print(f"{setup['images']} JPEGs {setup['height']}x{setup['width']} q{setup['quality']} "
          f"(mean {setup['mean_kb']} KB), decoder {setup['jpeg_decoder']}, {setup['cores']} cores")
    for k, v in result["summary"].items():
        print(f"{k:40s} {v}")
    print(f"({time.perf_counter() - t:.0f} s)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
