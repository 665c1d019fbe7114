"""Verification data for an export: the graph's raw inputs and what the predictor answers for them.

For every kind, rows (images, arrays, windows) come from the data the caller gives, topped up
to the number asked for with rows synthesised from what the artifact knows (its schema,
vocabularies, quantiles, ranges; see :func:`synth_table`). The reference is the predictor's own
path from those raw values (deepfit's NumPy preprocessing, then the torch model), fed the
values exactly as the graph sees them: sequence values rounded to float32 (the graph's input
type; numbers and dates enter as float64).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from deepfit.errors import DataError

__all__ = ["table_inputs", "synth_table", "table_rows", "image_data", "arrays_data", "lm_windows"]

_EPOCH = pd.Timestamp("1970-01-01")
UNSEEN = "\u2063unseen value\u2063"  # a category no training vocabulary holds


def table_inputs(preprocessor: Any, coerced: pd.DataFrame) -> tuple[list[np.ndarray], pd.DataFrame]:
    """The graph's raw inputs for coerced rows (``preprocessor.check_input``), in the order of
    :func:`deepfit.export.graphs.column_inputs`, and the rows as the graph sees them (sequence
    values rounded to float32) for the reference."""
    from deepfit.features.category import as_text
    from deepfit.features.date import as_datetime
    from deepfit.features.number import as_float
    from deepfit.features.sequence import sequence_arrays

    arrays: list[np.ndarray] = []
    view = coerced.copy()
    n = len(coerced)
    for name, f in preprocessor.features.items():
        values = coerced[name]
        if f.kind == "number":
            arrays.append(as_float(values, name))
        elif f.kind == "category":
            arrays.append(f.encode(values)["cat"][:, 0].astype(np.int64))
        elif f.kind == "binary":
            present, strings = as_text(values)
            known = np.full(len(strings), -1, dtype=np.int64)
            for k, v in enumerate(f.values):
                known[strings == v] = k + 1
            code = np.zeros(n, dtype=np.int64)
            code[present] = known
            arrays.append(code)
        elif f.kind == "date":
            d = as_datetime(values, name)
            arrays.append(((d - _EPOCH) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64, na_value=np.nan))
        elif f.kind == "sequence":
            seq = np.zeros((n, f.channels, f.max_len), dtype=np.float32)
            length = np.zeros(n, dtype=np.int64)
            rounded: list[Any] = []
            for i, a in enumerate(sequence_arrays(values, name)):
                if a is None:
                    rounded.append(None)
                    continue
                if a.shape[0] != f.channels:
                    raise DataError(f"sequence column '{name}', row {i}: {a.shape[0]} channels, but the model was "
                                    f"trained on {f.channels}")
                cut = a[:, : f.max_len].astype(np.float32)
                seq[i, :, : cut.shape[1]] = cut
                length[i] = cut.shape[1]
                rounded.append(cut.astype(np.float64))
            arrays += [seq, length]
            view[name] = pd.Series(rounded, index=coerced.index, dtype=object)
        else:  # text: refused by column_inputs before any data is read
            raise DataError(f"column '{name}' ({f.kind}) has no graph input")
    return arrays, view


def synth_table(preprocessor: Any, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` rows drawn from what the preprocessor learnt: numbers between (and at) its quantiles,
    with missing, infinite and out-of-range values; categories from the vocabulary with missing and
    unseen ones; dates around the training mean; sequences of random length. Typed columns."""
    out: dict[str, Any] = {}
    for name, f in preprocessor.features.items():
        u = rng.random(n)
        if f.kind == "number":
            if f.min is None:
                out[name] = np.full(n, np.nan)
                continue
            q = np.asarray(f.quantiles, dtype=np.float64)
            x = np.interp(rng.random(n), np.linspace(0, 1, len(q)), q)
            at = u < 0.10
            x[at] = q[rng.integers(0, len(q), int(at.sum()))]  # exactly on a quantile (ties)
            span = max(f.max - f.min, 1.0)
            low, high = (u >= 0.10) & (u < 0.12), (u >= 0.12) & (u < 0.14)
            x[low] = f.min - span * rng.uniform(0.01, 1.0, int(low.sum()))
            x[high] = f.max + span * rng.uniform(0.01, 1.0, int(high.sum()))
            x[(u >= 0.14) & (u < 0.17)] = np.nan
            x[(u >= 0.17) & (u < 0.18)] = np.inf
            out[name] = x
        elif f.kind in ("category", "binary"):
            vocab = list(f.vocabulary if f.kind == "category" else f.values)
            values = np.array(vocab, dtype=object)[rng.integers(0, len(vocab), n)] if vocab else np.full(n, None)
            values = values.astype(object)
            values[u < 0.05] = None
            values[(u >= 0.05) & (u < 0.10)] = UNSEEN
            out[name] = pd.Series(values, dtype=object)
        elif f.kind == "date":
            years = f.mean + f.std * rng.uniform(-3.0, 3.0, n)
            seconds = np.round((years - 1970.0) * 365.25 * 86400.0)
            if not f.has_time:
                seconds = np.floor(seconds / 86400.0) * 86400.0
            d = pd.Series(pd.to_datetime(seconds, unit="s"))
            d[u < 0.04] = pd.NaT
            out[name] = d
        elif f.kind == "sequence":
            rows: list[Any] = []
            mean, std = np.asarray(f.mean)[:, None], np.asarray(f.std)[:, None]
            for i in range(n):
                if u[i] < 0.03:
                    rows.append(None)
                    continue
                length = int(rng.integers(1, f.max_len + 1))
                a = mean + std * rng.normal(size=(f.channels, length))
                if u[i] > 0.98:
                    a[:, 0] = np.nan
                rows.append(a)
            out[name] = pd.Series(rows, dtype=object)
    return pd.DataFrame(out)


def table_rows(preprocessor: Any, data: Any, n: int, rng: np.random.Generator, *,
               frame: pd.DataFrame | None = None) -> tuple[pd.DataFrame, int]:
    """Coerced rows to verify on: those of ``data`` (or ``frame``), then synthesised ones up to
    ``n``; and how many came from the data."""
    from deepfit.tasks.table.predictor import as_frame

    parts = []
    given = 0
    if frame is None and data is not None:
        frame, _ = as_frame(data, source=str(data))
    if frame is not None and len(frame):
        parts.append(preprocessor.check_input(frame.reset_index(drop=True), source=str(data)))
        given = len(frame)
    if given < n:
        synth = synth_table(preprocessor, n - given, rng)
        parts.append(preprocessor.check_input(synth, source="synthesised rows"))
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True), given


def _synth_images(n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """uint8 (n, 3, size, size): half smooth random pictures (upsampled coarse noise), half pixel noise."""
    coarse = torch.from_numpy(rng.random((n, 3, max(size // 4, 1), max(size // 4, 1))).astype(np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    noise = torch.from_numpy(rng.random((n, 3, size, size)).astype(np.float32))
    pick = torch.from_numpy(rng.random(n) < 0.5).view(n, 1, 1, 1)
    return (torch.where(pick, smooth, noise) * 255).round().clamp(0, 255).to(torch.uint8)


def image_data(predictor: Any, data: Any, n: int, rng: np.random.Generator
               ) -> tuple[list[np.ndarray], np.ndarray, int]:
    """(the graph's inputs, the predictor's probabilities, how many images came from ``data``)."""
    pre = predictor.preprocessor
    images = torch.zeros(0, 3, predictor.feature.size, predictor.feature.size, dtype=torch.uint8)
    frame = None
    if data is not None:
        frame, (images, *_), _ = predictor._encode(data, str(data))
    given = len(images)
    if given < n:
        images = torch.cat([images, _synth_images(n - given, predictor.feature.size, rng)])
    arrays = [images.to(torch.float32).numpy()]
    inputs: tuple[torch.Tensor, ...] = (images,)
    if pre is not None:
        coerced, _ = table_rows(pre, None, len(images), rng, frame=frame)
        raw, view = table_inputs(pre, coerced)
        arrays += raw
        inputs += tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in pre.transform(view))
    return arrays, predictor.proba_tensors(inputs).numpy(), given


def arrays_data(predictor: Any, data: Any, n: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, int, str]:
    """(float32 inputs, the predictor's probabilities, how many came from held-out data, from where)."""
    from deepfit import datasets

    where = "synthesised arrays"
    x = None
    if data is not None:
        raw, _, where = predictor._arrays(data, str(data), labels=False)
        x = predictor._inputs(raw, where)
    elif predictor.data in datasets.names():
        bundle = datasets.load(predictor.data)
        x = predictor._inputs(bundle.x_test, predictor.data)
        where = f"the test split of {predictor.data}"
    given = 0 if x is None else len(x)
    if given < n:
        shape = (n - given, *predictor.input_shape)
        if given:  # real rows again, with noise: new inputs near the data
            base = x[torch.from_numpy(rng.integers(0, given, n - given))]
            scale = float(x.float().std()) * 0.1
            extra = base + torch.from_numpy(rng.normal(scale=scale, size=shape).astype(np.float32))
        else:
            extra = torch.from_numpy(rng.normal(size=shape).astype(np.float32))
        x = extra if x is None else torch.cat([x, extra])
    return x.numpy(), predictor._proba(x).numpy(), given, where


def lm_windows(predictor: Any, data: Any, n: int, rng: np.random.Generator) -> tuple[np.ndarray, int, str]:
    """int64 (n, context) token windows: from the corpus ``data`` (random starts), topped up with
    random token ids; and how many came from the corpus."""
    from deepfit.data.corpus import encode_text, read_corpus

    t = predictor.context
    windows = np.zeros((0, t), dtype=np.int64)
    where = "random token ids"
    if data is not None:
        text, where = read_corpus(data)
        ids = encode_text(predictor.tokenizer, text).numpy().astype(np.int64)
        if len(ids) > t:
            starts = rng.integers(0, len(ids) - t + 1, n)
            windows = np.stack([ids[s:s + t] for s in starts])
    given = len(windows)
    if given < n:
        windows = np.concatenate([windows, rng.integers(0, predictor.tokenizer.vocab_size, (n - given, t))])
    return windows.astype(np.int64), given, where
