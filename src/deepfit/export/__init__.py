"""Verified ONNX export of any deepfit model: :func:`export_onnx` (``deepfit export RUN --format onnx``).

The graph takes values as close to raw as ONNX allows and holds everything deepfit does after
them (see :mod:`deepfit.export.graphs` for each kind's inputs): a consumer maps strings to the
category codes listed in ``export.json`` and nothing else. Before anything is written the
graph is run by onnxruntime (CPU) on at least ``verify_rows`` held-out rows (images, arrays,
token windows) and compared with the predictor's own answer on the same raw values; an export
that differs by more than :data:`TOLERANCE` is an :class:`~deepfit.errors.ExportError` and
writes nothing. ``export.json`` next to the ``.onnx`` file records the inputs (names, dtypes,
shapes with the dynamic ``batch`` axis, vocabularies), the outputs, class names, image size and
normalisation, the tokenizer file, the opset, the exporter, the verification figure and the
deepfit version.

The exporter (``exporter="auto"``) is torch's TorchScript-based ``torch.onnx.export(...,
dynamo=False)``, and the ``dynamo=True`` exporter (torch.export + onnxscript) where TorchScript
has no conversion for a layer (``nn.RMSNorm`` of the GPT): TorchScript was 10-40x faster here
and matched on every table graph, where dynamo's classification table graph differed by 1e-4
(docs/export.md has the measurement).

Example:
    >>> from deepfit.export import export_onnx                         # doctest: +SKIP
    >>> report = export_onnx("runs/credit", "credit.onnx")             # doctest: +SKIP
    >>> report.max_abs_diff < 1e-5, report.rows >= 1000                # doctest: +SKIP
    (True, True)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepfit.errors import ConfigError, ExportError

__all__ = ["export_onnx", "ExportReport", "DEFAULT_OPSET", "TOLERANCE", "VERIFY_ROWS", "EXPORTERS"]

DEFAULT_OPSET = 18
TOLERANCE = 1e-5  # max abs difference allowed between onnxruntime and torch (see ExportReport.max_abs_diff)
VERIFY_ROWS = 1000
EXPORTERS = ("auto", "torchscript", "dynamo")
_UNITS = {"table": "rows", "image": "images", "arrays": "arrays", "lm": "token windows"}
_MAX_ELEMENTS = 1 << 24  # verification inputs + outputs per onnxruntime call, above which it runs in chunks


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how it was verified.

    ``max_abs_diff`` is the largest absolute difference between onnxruntime's outputs and the
    predictor's: probabilities (tables, images, arrays; for language models the softmax of the
    logits), or regression values divided by ``max(1, |value|)`` (so 1e-5 is absolute below 1
    and relative above: a float32 network cannot promise 1e-5 dollars on a price of 1e5);
    ``max_abs_diff_raw`` is the plain figure on the output itself (values or logits).
    """

    path: Path
    json_path: Path
    kind: str
    task: str
    opset: int
    exporter: str
    rows: int
    rows_from_data: int
    data: str
    max_abs_diff: float
    max_abs_diff_raw: float
    tolerance: float
    batch_sizes: list[int]
    seconds: float
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        """One line: where, what and the verification figure."""
        return (f"wrote {self.path} ({self.kind}, opset {self.opset}, {self.exporter} exporter) and {self.json_path.name}; "
                f"verified on {self.rows} {_UNITS.get(self.kind, 'rows')} ({self.data}): "
                f"max abs difference {self.max_abs_diff:.2e} (tolerance {self.tolerance:.0e}), "
                f"batch sizes {', '.join(map(str, self.batch_sizes))}")


@dataclass
class _Plan:
    """What one kind exports: the module, its inputs and outputs, and how to verify it."""

    module: Any
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    arrays: list[np.ndarray]  # verification inputs, batch axis first, in the order of ``inputs``
    reference: Any  # np.ndarray of outputs, or a callable(rows slice) -> np.ndarray (language models)
    compare: str  # "probabilities", "value" or "logits"
    given: int
    data: str
    meta: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)  # extra files written next to the model
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)


def _require_packages(exporter: str) -> None:
    missing = []
    for module in ("onnx", "onnxruntime") + (("onnxscript",) if exporter == "dynamo" else ()):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ExportError(f"exporting to ONNX needs {', '.join(missing)}; install them with "
                          "pip install 'deepfit[export]'")


def _load(predictor_or_dir: Any) -> tuple[Any, Path | None]:
    from deepfit.tasks.base import BasePredictor

    if isinstance(predictor_or_dir, BasePredictor):
        return predictor_or_dir, None
    if isinstance(predictor_or_dir, (str, os.PathLike)):
        from deepfit.tasks import load

        return load(predictor_or_dir), Path(predictor_or_dir)
    raise ConfigError(f"export_onnx takes a predictor or a model directory, got {type(predictor_or_dir).__name__}")


def _shape(spec: dict[str, Any]) -> list[Any]:
    return list(spec["shape"])


def _table_plan(predictor: Any, data: Any, n: int, rng: np.random.Generator) -> _Plan:
    from deepfit.export.data import table_inputs, table_rows
    from deepfit.export.graphs import TableGraph

    module = TableGraph(predictor)  # refuses text columns before any data is read
    coerced, given = table_rows(predictor.preprocessor, data, n, rng)
    arrays, view = table_inputs(predictor.preprocessor, coerced)
    out = predictor._predict_frame(view).numpy()
    meta: dict[str, Any] = {"target": predictor.target_name}
    if predictor.task == "classify":
        classes = [str(c) for c in predictor.classes]
        outputs = [{"name": "probabilities", "dtype": "float32", "shape": ["batch", len(classes)],
                    "meaning": "class probabilities, in the order of classes (the mean of the ensemble members' "
                               "softmax)"}]
        meta["classes"] = classes
        compare = "probabilities"
    else:
        out = predictor.target.decode(out)
        t = predictor.target
        outputs = [{"name": "value", "dtype": "float64", "shape": ["batch"],
                    "meaning": f"the predicted '{predictor.target_name}' in its own units (inverse "
                               f"'{t.transform}' target transform applied; bounded to [low, high])"}]
        meta["bounds"] = {"low": t.low, "high": t.high}
        compare = "value"
    return _Plan(module, module.inputs.specs, outputs, arrays, out, compare, given,
                 "the rows given" if given >= n else (f"{given} rows given and {n - given} synthesised from the "
                                                      "training schema" if given else
                                                      "rows synthesised from the training schema"), meta)


def _image_plan(predictor: Any, data: Any, n: int, rng: np.random.Generator) -> _Plan:
    from deepfit.export.data import image_data
    from deepfit.export.graphs import ImageGraph

    module = ImageGraph(predictor)
    arrays, reference, given = image_data(predictor, data, n, rng)
    size = int(predictor.feature.size)
    inputs = [{"name": "image", "column": predictor.image_column, "kind": "image", "dtype": "float32",
               "shape": ["batch", 3, size, size],
               "layout": "RGB, channels first (NCHW), pixel values 0..255 (a decoded uint8 image cast to float32)"}]
    if module.table is not None:
        inputs += module.table.specs
    classes = [str(c) for c in predictor.classes]
    multilabel = predictor.task == "multilabel"
    outputs = [{"name": "probabilities", "dtype": "float32", "shape": ["batch", len(classes)],
                "meaning": ("per-label sigmoid probabilities" if multilabel else "class probabilities (softmax)")
                + (", averaged over the test-time views" if predictor.tta else "")}]
    meta = {"classes": classes, "target": predictor.target_name,
            "image": {"size": size, "crop": predictor.feature.crop, "mean": predictor.feature.mean,
                      "std": predictor.feature.std,
                      "decode": f"decode to RGB, {predictor.feature.crop} crop to a square, resize to {size}x{size} "
                                "(deepfit.data.images.decode_image does exactly this)",
                      "normalisation": "in the graph: x / 255, then (x - mean) / std per channel",
                      "tta": (["image"] + (["mirror"] if predictor.flip else []) + ["4 one-pixel shifts"])
                      if predictor.tta else ["image"]}}
    where = "the images given" if given >= n else (f"{given} images given and {n - given} synthesised" if given
                                                    else "synthesised images (smooth and noise pictures)")
    return _Plan(module, inputs, outputs, arrays, reference, "probabilities", given, where, meta)


def _arrays_plan(predictor: Any, data: Any, n: int, rng: np.random.Generator) -> _Plan:
    from deepfit.export.data import arrays_data
    from deepfit.export.graphs import ArraysGraph

    x, reference, given, where = arrays_data(predictor, data, n, rng)
    inputs = [{"name": "x", "kind": "array", "dtype": "float32", "shape": ["batch", *predictor.input_shape],
               "layout": "the raw numbers, as the model was trained on them (finite)"}]
    outputs = [{"name": "probabilities", "dtype": "float32", "shape": ["batch", len(predictor.classes)],
                "meaning": "class probabilities (softmax)"}]
    text = where if given >= n else (f"{given} rows of {where} and {n - given} near them" if given
                                     else "synthesised arrays")
    return _Plan(ArraysGraph(predictor), inputs, outputs, [x], reference, "probabilities", given, text,
                 {"classes": list(predictor.classes), "dataset": predictor.data})


def _lm_plan(predictor: Any, data: Any, n: int, rng: np.random.Generator) -> _Plan:
    import torch

    from deepfit.export.data import lm_windows
    from deepfit.export.graphs import LMGraph

    windows, given, where = lm_windows(predictor, data, n, rng)
    model = predictor.model

    def reference(rows: slice) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(windows[rows])).float().numpy()

    tok = predictor.tokenizer
    inputs = [{"name": "ids", "kind": "tokens", "dtype": "int64", "shape": ["batch", "length"],
               "layout": f"token ids of tokenizer.json, 1 <= length <= context ({predictor.context})"}]
    outputs = [{"name": "logits", "dtype": "float32", "shape": ["batch", "length", tok.vocab_size],
                "meaning": "next-token logits at every position (softmax them for probabilities; sampling and "
                           "the generation loop stay outside the graph)"}]
    meta = {"context": predictor.context, "vocab_size": tok.vocab_size, "tokenizer": {
        "file": "tokenizer.json", "kind": tok.kind, "format": "Hugging Face tokenizers JSON (tokenizers.Tokenizer."
        "from_file)", "document_start": tok.encode("\n"),
        "note": "deepfit generate starts a document after a line break: prepend document_start to the prompt's ids"}}
    files = {"tokenizer.json": json.dumps(tok.state_dict()["tokenizer"], ensure_ascii=False).encode("utf-8")}
    text = where if given >= n else (f"{given} windows of {where} and {n - given} of random ids" if given
                                     else "windows of random token ids")
    return _Plan(LMGraph(predictor), inputs, outputs, [windows], reference, "logits", given, text, meta, files,
                 dynamic={"ids": {0: "batch", 1: "length"}, "logits": {0: "batch", 1: "length"}})


_PLANS = {"table": _table_plan, "image": _image_plan, "arrays": _arrays_plan, "lm": _lm_plan}


def _export(plan: _Plan, path: Path, *, opset: int, exporter: str) -> None:
    """Write the graph to ``path`` with torch's exporter; ExportError naming the layer on failure."""
    import torch

    sample = tuple(torch.from_numpy(np.array(a[:2])) for a in plan.arrays)
    names = [s["name"] for s in plan.inputs]
    out_names = [o["name"] for o in plan.outputs]
    dynamic = plan.dynamic or {**{nm: {0: "batch"} for nm in names}, **{nm: {0: "batch"} for nm in out_names}}
    module = plan.module.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings on Python-level shape checks
            if exporter == "torchscript":
                torch.onnx.export(module, sample, str(path), input_names=names, output_names=out_names,
                                  dynamic_axes=dynamic, opset_version=opset, dynamo=False)
            else:
                program = torch.onnx.export(module, sample, input_names=names, output_names=out_names,
                                            dynamic_shapes=_dynamic_shapes(module, names, dynamic),
                                            opset_version=opset, dynamo=True, external_data=False)
                program.save(str(path), external_data=False)
    except ExportError:
        raise
    except Exception as e:  # the exporters raise many types; each names the operator it could not convert
        message = " ".join(str(e).split())[:600]
        raise ExportError(f"torch.onnx.export ({exporter}) could not convert this {type(plan.module.model).__name__} "
                          f"graph: {type(e).__name__}: {message}") from e


def _dynamic_shapes(module: Any, names: list[str], dynamic: dict[str, dict[int, str]]) -> tuple[Any, ...]:
    """``dynamic_axes`` as torch.export's ``dynamic_shapes``: one entry per parameter of
    ``forward``, a ``*args`` parameter taking a tuple of the rest."""
    import inspect

    import torch

    dims: dict[str, Any] = {}
    specs = []
    for name in names:
        axes = dynamic.get(name, {})
        specs.append({a: dims.setdefault(label, torch.export.Dim(label, min=1)) for a, label in axes.items()})
    out: list[Any] = []
    i = 0
    for p in inspect.signature(module.forward).parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            if specs[i:]:
                out.append(tuple(specs[i:]))
            i = len(specs)
        else:
            out.append(specs[i])
            i += 1
    return tuple(out)


def _verify(plan: _Plan, path: Path) -> tuple[float, float, list[int]]:
    """Run the file with onnxruntime (CPU) and compare with the reference: (figure, raw figure, batch sizes)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ExportError(f"onnxruntime cannot load the exported graph: {type(e).__name__}: "
                          f"{' '.join(str(e).split())[:600]}") from e
    names = [s["name"] for s in plan.inputs]
    n = len(plan.arrays[0])
    per_row = sum(int(np.prod(a.shape[1:])) for a in plan.arrays)
    if plan.compare == "logits":
        per_row += int(np.prod(plan.outputs[0]["shape"][2:])) * plan.arrays[0].shape[1]
    elif plan.compare == "probabilities":
        per_row += int(plan.outputs[0]["shape"][1])
    chunk = max(1, min(n, _MAX_ELEMENTS // max(per_row, 1)))

    def run(rows: slice) -> np.ndarray:
        try:
            return session.run(None, {nm: np.ascontiguousarray(a[rows]) for nm, a in zip(names, plan.arrays)})[0]
        except Exception as e:
            raise ExportError(f"onnxruntime failed on the exported graph: {type(e).__name__}: "
                              f"{' '.join(str(e).split())[:600]}") from e

    worst = worst_raw = 0.0
    one = run(slice(0, 1))  # batch size 1
    sizes = [1]
    for start in range(0, n, chunk):
        rows = slice(start, min(n, start + chunk))
        got = run(rows)
        want = plan.reference(rows) if callable(plan.reference) else plan.reference[rows]
        if rows.start == 0:
            first = want[:1]
            if one.shape != first.shape or not np.all(np.isfinite(one) == np.isfinite(first)):
                raise ExportError(f"the exported graph answers a batch of 1 with shape {one.shape}, the model "
                                  f"with {first.shape}")
            worst_raw = max(worst_raw, _max_diff(one, first))
            worst = max(worst, _figure(plan.compare, one, first))
        if got.shape != want.shape:
            raise ExportError(f"the exported graph answers {got.shape}, the model {want.shape}")
        worst_raw = max(worst_raw, _max_diff(got, want))
        worst = max(worst, _figure(plan.compare, got, want))
        if rows.stop - rows.start not in sizes:
            sizes.append(rows.stop - rows.start)
    return worst, worst_raw, sizes


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if not np.array_equal(np.isfinite(a), np.isfinite(b)):
        return float("inf")
    ok = np.isfinite(a)
    return float(np.abs(a[ok] - b[ok]).max(initial=0.0))


def _softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _figure(compare: str, got: np.ndarray, want: np.ndarray) -> float:
    if compare == "logits":
        return _max_diff(_softmax(got), _softmax(want))
    if compare == "value":
        got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
        return _max_diff(got / np.maximum(1.0, np.abs(want)), want / np.maximum(1.0, np.abs(want)))
    return _max_diff(got, want)


def export_onnx(predictor_or_dir: Any, out: str | os.PathLike | None = None, *, opset: int | None = None,
                verify_rows: int = VERIFY_ROWS, data: Any = None, exporter: str = "auto", seed: int = 0,
                tolerance: float = TOLERANCE) -> ExportReport:
    """Export a deepfit model to ONNX, verified against the model before anything is written.

    Args:
        predictor_or_dir: a predictor (``deepfit.load(...)``, ``deepfit.fit(...)``) or a model directory.
        out: the ``.onnx`` file to write (default: ``model.onnx`` in the model directory);
            ``export.json`` (and ``tokenizer.json`` for a language model) go next to it.
        opset: the ONNX opset (default :data:`DEFAULT_OPSET`).
        verify_rows: rows (images, arrays, token windows) to verify on, at least 1,000.
        data: held-out data to verify on, as the predictor's ``predict`` takes it (a table, an image
            folder, a ``.npz``, a text corpus); topped up to ``verify_rows`` with rows synthesised
            from the training schema (tables: quantiles, vocabularies with unseen and missing values;
            images: smooth and noise pictures; arrays: the bundled dataset's test split and rows near
            it; language models: random token ids).
        exporter: ``"torchscript"`` (``torch.onnx.export(dynamo=False)``), ``"dynamo"``
            (``dynamo=True``: torch.export + onnxscript), or ``"auto"``: TorchScript, and the dynamo
            exporter when TorchScript has no conversion for a layer (``nn.RMSNorm``, in GPTs).
        seed: seeds the synthesised rows.
        tolerance: the largest difference allowed (see :class:`ExportReport`).

    Returns:
        An :class:`ExportReport`.

    Raises:
        ExportError: a column type or layer without an ONNX equivalent (naming it), a missing
            package, or outputs that differ from the model's; no file is written.
    """
    start = time.perf_counter()
    if exporter not in EXPORTERS:
        raise ConfigError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if isinstance(verify_rows, bool) or not isinstance(verify_rows, int) or verify_rows < VERIFY_ROWS:
        raise ConfigError(f"verify_rows must be an integer >= {VERIFY_ROWS}, got {verify_rows!r}")
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int) or not 14 <= opset <= 23:
        raise ConfigError(f"opset must be an integer from 14 to 23, got {opset!r}")
    _require_packages(exporter)
    predictor, directory = _load(predictor_or_dir)
    if out is None:
        if directory is None:
            raise ConfigError("export_onnx(predictor) needs out=, the .onnx file to write")
        out = directory / "model.onnx"
    path = Path(out)
    if path.suffix != ".onnx":
        raise ConfigError(f"the output file must end in .onnx, got {str(path)!r}")
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give the .onnx file to write")
    if not path.parent.is_dir():
        raise ConfigError(f"{path.parent} does not exist; create it first")
    _check_folder_free(path)
    kind = predictor.kind
    if kind not in _PLANS:
        raise ExportError(f"a {kind} model cannot be exported to ONNX by this deepfit")

    import torch

    with torch.no_grad():
        plan = _PLANS[kind](predictor, data, verify_rows, np.random.default_rng(seed))
    work = Path(tempfile.mkdtemp(prefix=".deepfit-export-", dir=path.parent))
    try:
        tmp = work / path.name
        used = "torchscript" if exporter == "auto" else exporter
        try:
            with torch.no_grad():
                _export(plan, tmp, opset=opset, exporter=used)
        except ExportError as e:
            if exporter != "auto" or not isinstance(e.__cause__, torch.onnx.errors.UnsupportedOperatorError):
                raise
            used = "dynamo"
            _require_packages(used)
            tmp.unlink(missing_ok=True)
            with torch.no_grad():
                _export(plan, tmp, opset=opset, exporter=used)
        exporter = used
        figure, raw, sizes = _verify(plan, tmp)
        if not figure <= tolerance:
            raise ExportError(f"the exported graph does not match the model: max abs difference {figure:.3g} on "
                              f"{_UNITS.get(kind, 'rows')} ({plan.data}), above the tolerance "
                              f"{tolerance:g}; nothing was written")
        from deepfit import __version__

        json_path = path.parent / "export.json"
        report = ExportReport(path=path, json_path=json_path, kind=kind, task=predictor.task, opset=opset,
                              exporter=exporter, rows=len(plan.arrays[0]), rows_from_data=plan.given, data=plan.data,
                              max_abs_diff=figure, max_abs_diff_raw=raw, tolerance=tolerance, batch_sizes=sizes,
                              seconds=round(time.perf_counter() - start, 3), inputs=plan.inputs,
                              outputs=plan.outputs)
        doc = {"format": "deepfit-onnx-export", "format_version": 1, "deepfit_version": __version__,
               "model": path.name, "kind": kind, "task": predictor.task, "opset": opset,
               "exporter": f"torch.onnx.export(dynamo={exporter == 'dynamo'}) in torch {torch.__version__}",
               "inputs": plan.inputs, "outputs": plan.outputs, **plan.meta,
               "verification": {"runtime": "onnxruntime (CPUExecutionProvider)", "rows": report.rows,
                                "rows_from_data": plan.given, "data": plan.data, "max_abs_diff": figure,
                                "max_abs_diff_raw": raw, "compared": plan.compare, "tolerance": tolerance,
                                "batch_sizes": sizes},
               "source": str(directory) if directory is not None else None}
        (work / "export.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        for name, content in plan.files.items():
            (work / name).write_bytes(content)
        for name in plan.files:
            os.replace(work / name, path.parent / name)
        os.replace(tmp, path)
        os.replace(work / "export.json", json_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _check_folder_free(path: Path) -> None:
    """One export per folder: ``export.json`` (and ``tokenizer.json``) sit beside the model under
    fixed names, so exporting another model into a folder that holds one would overwrite its
    description. Re-exporting the same file name is allowed (it replaces the export)."""
    sidecar = path.parent / "export.json"
    if not sidecar.exists():
        return
    try:
        other = json.loads(sidecar.read_text(encoding="utf-8")).get("model")
    except (OSError, ValueError, AttributeError):
        other = None
    if other != path.name:
        raise ConfigError(f"{path.parent} already holds an export ({sidecar} describes {other!r}); exporting "
                          f"{path.name} there would overwrite it: export into another folder (export.json and "
                          "tokenizer.json sit beside the model under fixed names)")


def report_dict(report: ExportReport) -> dict[str, Any]:
    """The report as JSON-ready values."""
    d = asdict(report)
    d["path"], d["json_path"] = str(report.path), str(report.json_path)
    return d
