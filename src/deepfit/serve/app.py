"""The HTTP face of a trained model: :func:`create_app` (a FastAPI app) and :func:`serve` (uvicorn).

Endpoints (docs/serve.md has their JSON):

* ``GET /health`` — ``{"status": "ok", "kind": ...}``; open even with a token (for probes);
* ``GET /v1/model`` — kind, task, input schema (columns, types, category levels), classes,
  metrics, deepfit version, the batching knobs and limits;
* ``POST /v1/predict`` — JSON ``{"rows": [...]}`` or a CSV body (tables, arrays), multipart
  uploads (images); answers ``{"predictions": [...]}`` in request order;
* ``POST /v1/generate`` — language models; ``"stream": true`` (or ``Accept: text/event-stream``)
  streams server-sent events;
* ``GET /`` — a self-contained page to try the model; ``GET /openapi.json`` — the schema.

Safety: :func:`serve` binds 127.0.0.1 unless told otherwise; with a token (``token=`` /
``--token`` / ``DEEPFIT_TOKEN``) every ``/v1`` endpoint needs ``Authorization: Bearer <token>``,
compared in constant time (:func:`hmac.compare_digest`), else 401; bodies and rows are limited
(413 naming the limit, :class:`~deepfit.serve.inputs.Limits`); client-sent paths are never opened;
the artifact is loaded, checked and run once on a blank input before anything is served; SIGTERM
lets in-flight requests finish (up to ``graceful_s``), then the process exits 0.

Example:
    >>> from deepfit.serve import create_app             # doctest: +SKIP
    >>> app = create_app("runs/credit", token="s3cret")   # doctest: +SKIP
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, whose types
# are imported inside create_app (fastapi stays an optional import of deepfit).
import asyncio
import hmac
import json
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from deepfit.errors import ConfigError, DeepfitError
from deepfit.serve.batcher import MicroBatcher
from deepfit.serve.inputs import Limits, RequestError, handler_for

__all__ = ["create_app", "serve", "load_checked", "MAX_BATCH", "MAX_WAIT_MS", "THREADS", "GRACEFUL_S"]

MAX_BATCH = 256  # rows per forward pass
# The oldest request waits at most this long for company. 0: a batch starts as soon as the model
# is free, and requests that arrive while it runs form the next one (measured with bench/serve.py
# on credit_data, 1 / 8 / 32 / 128 clients: 100 / 317 / 775 / 1,123 rows/s at 0 ms against
# 81 / 313 / 769 / 1,071 at 2 ms, p50 at one client 9.8 ms against 12.2).
MAX_WAIT_MS = 0.0
THREADS = 1  # torch intra-op threads in the server (one core for the model, one for HTTP)
GRACEFUL_S = 30  # SIGTERM: in-flight requests get this long to finish


def load_checked(run_dir: str | os.PathLike) -> Any:
    """Load a run directory's model for serving: the artifact is validated as ``deepfit.load``
    does (JSON fields, weights' names and shapes); any problem is an ArtifactError naming it."""
    from deepfit.artifact import ArtifactError
    from deepfit.tasks import load

    path = Path(run_dir)
    if not path.is_dir():
        raise ArtifactError(f"{path} is not a directory; pass a run directory written by deepfit train")
    try:
        return load(path)
    except ArtifactError:
        raise
    except (DeepfitError, OSError, ValueError, KeyError, RuntimeError) as e:
        raise ArtifactError(f"{path} is not a usable model: {type(e).__name__}: {e}") from e


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    from starlette.responses import Response

    return Response(json.dumps(obj, separators=(",", ":"), allow_nan=False), status_code=status,
                    media_type="application/json", headers=headers)


class _BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes is refused with 413 (by its Content-Length
    before anything is read, or as it streams in)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_big = RequestError(413, f"the request body exceeds the limit of {self.limit} bytes (--max-body-bytes)",
                               field="body", expected=f"at most {self.limit} bytes")
        if length is not None and length.isdigit() and int(length) > self.limit:
            response = _json(too_big.body(), 413, {"connection": "close"})
            return await response(scope, receive, send)
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise too_big
            return message

        return await self.app(scope, counted, send)


def create_app(predictor_or_dir: Any, *, token: str | None = None, max_batch: int = MAX_BATCH,
               max_wait_ms: float = MAX_WAIT_MS, limits: Limits | None = None, threads: int = THREADS,
               warm_up: bool = True) -> Any:
    """A FastAPI app serving one model; see the module docstring.

    Args:
        predictor_or_dir: a predictor (``deepfit.load(...)``) or a run directory.
        token: require ``Authorization: Bearer <token>`` on ``/v1`` (None: no token).
        max_batch: rows per forward pass (micro-batching).
        max_wait_ms: how long the oldest queued request waits for others to join its batch.
        limits: request limits (:class:`~deepfit.serve.inputs.Limits`; defaults there).
        threads: torch intra-op threads (default 1: the model thread on one core, HTTP on the other).
        warm_up: predict once on a blank input now (a model that cannot answer fails here).
    """
    import torch
    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.responses import HTMLResponse, StreamingResponse

    from deepfit._version import __version__
    from deepfit.serve.schemas import GenerateRequest, ModelInfo, PredictResponse, predict_openapi

    if token is not None and (not isinstance(token, str) or not token):
        raise ConfigError("token must be a non-empty string (or None for no token)")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be an integer >= 1, got {threads!r}")
    limits = limits or Limits()
    predictor = predictor_or_dir if hasattr(predictor_or_dir, "kind") else load_checked(predictor_or_dir)
    handler = handler_for(predictor, limits)
    torch.set_num_threads(threads)
    if warm_up:
        handler.warm_up()

    executor = ThreadPoolExecutor(1, thread_name_prefix="deepfit-model", initializer=torch.set_num_threads,
                                  initargs=(threads,))
    batcher = MicroBatcher(handler.run_batch, max_batch=max_batch, max_wait_ms=max_wait_ms, executor=executor)

    @asynccontextmanager
    async def lifespan(app: Any):  # type: ignore[no-untyped-def]
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()
            executor.shutdown(wait=True)

    app = FastAPI(title="deepfit", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description=f"A deepfit {predictor.kind} model. See GET /v1/model for its inputs.")
    app.add_middleware(_BodyLimit, limit=limits.max_body_bytes)
    app.state.predictor, app.state.handler, app.state.batcher = predictor, handler, batcher

    secret = token.encode("utf-8") if token is not None else None

    def authorized(request: Request) -> None:
        if secret is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8"), secret):
            raise RequestError(401, "this server needs a token: send the header 'Authorization: Bearer <token>'",
                               field="Authorization", expected="Bearer <token>")

    @app.exception_handler(RequestError)
    async def on_request_error(request: Request, e: RequestError) -> Any:
        headers = {"www-authenticate": "Bearer"} if e.status == 401 else None
        return _json(e.body(), e.status, headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, e: RequestValidationError) -> Any:
        first = e.errors()[0] if e.errors() else {"loc": ("body",), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        status = 400 if first.get("type") == "json_invalid" else 422
        name = ".".join(loc) if loc and status != 400 else "body"
        msg = ("the body is not valid JSON: " + str(first.get("ctx", {}).get("error", first.get("msg")))
               if status == 400 else f"{name}: {first.get('msg')}")
        return _json({"error": msg, "field": name, "expected": _expected(first)}, status)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, e: StarletteHTTPException) -> Any:
        return _json({"error": str(e.detail), "field": None, "expected": None}, e.status_code)

    @app.exception_handler(DeepfitError)
    async def on_deepfit_error(request: Request, e: DeepfitError) -> Any:
        return _json({"error": str(e), "field": None, "expected": None}, 422)

    @app.get("/health", summary="Liveness: always open, even with a token; counts of what was served")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "kind": predictor.kind, **batcher.stats}

    info = {"kind": predictor.kind, "task": predictor.task, "model": predictor.model_name,
            "input": handler.schema(), "classes": handler.classes(),
            "metrics": {k: v for k, v in predictor.metrics.items()}, "deepfit_version": __version__,
            "batching": {"max_batch": max_batch, "max_wait_ms": max_wait_ms, "torch_threads": threads},
            "limits": {k: getattr(limits, k) for k in limits.__dataclass_fields__},
            "token_required": secret is not None}

    @app.get("/v1/model", dependencies=[Depends(authorized)], response_model=ModelInfo,
             summary="What the model takes and predicts")
    async def model_info() -> Any:
        return _json(info)

    @app.post("/v1/predict", dependencies=[Depends(authorized)], summary="Predict rows or images",
              responses={200: {"model": PredictResponse}}, openapi_extra=predict_openapi())
    async def predict(request: Request) -> Any:
        from starlette.concurrency import run_in_threadpool

        ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):  # an HTML form, files or not
            try:
                form = await request.form(max_files=limits.max_rows, max_fields=1000,
                                          max_part_size=limits.max_body_bytes)
            except RequestError:
                raise
            except Exception as e:  # noqa: BLE001 - starlette's MultiPartException and parser errors
                raise RequestError(400, f"the multipart body cannot be parsed: {e}", field="body",
                                   expected="multipart/form-data") from e
            files, fields = [], {}
            for key, value in form.multi_items():
                if hasattr(value, "read"):
                    files.append((str(getattr(value, "filename", "") or key), await value.read()))
                else:
                    fields[key] = str(value)
            await form.close()
            prepared = await run_in_threadpool(handler.prepare_uploads, files, fields)
        else:
            body = await request.body()
            if ctype in ("text/csv", "application/csv", "text/plain"):
                prepared = await run_in_threadpool(handler.prepare_csv, body)
            elif ctype in ("application/json", ""):
                try:
                    parsed = json.loads(body)
                except ValueError as e:
                    raise RequestError(400, f"the body is not valid JSON: {e}", field="body",
                                       expected='JSON like {"rows": [...]}') from e
                prepared = handler.prepare_json(parsed)
            else:
                raise RequestError(415, f"Content-Type {ctype!r} is not taken here; {handler.takes}",
                                   field="Content-Type", expected=handler.takes)
        result = await batcher.submit(prepared, rows=prepared.rows)
        return _json({"predictions": result})

    @app.post("/v1/generate", dependencies=[Depends(authorized)], summary="Generate text (language models)",
              responses={200: {"description": "JSON {text}, or server-sent events when streaming",
                               "content": {"text/event-stream": {}}}})
    async def generate(body: GenerateRequest, request: Request) -> Any:
        if predictor.kind != "lm":
            raise RequestError(400, f"this is a {predictor.kind} model: POST /v1/predict (only language models "
                               "generate)", field="body", expected=handler.takes)
        if body.max_tokens > limits.max_tokens:
            raise RequestError(413, f"max_tokens is {body.max_tokens}; the limit is {limits.max_tokens} "
                               "(--max-tokens)", field="max_tokens", expected=f"at most {limits.max_tokens}")
        unknown = predictor.tokenizer.unknown_chars(body.prompt)
        if unknown:
            shown = " ".join(repr(c) for c in unknown[:10])
            raise RequestError(422, f"prompt: characters this character-level model never saw in training: {shown}; "
                               "remove them", field="prompt", expected="the characters of the training text")
        args = dict(max_tokens=body.max_tokens, temperature=body.temperature, top_k=body.top_k, top_p=body.top_p,
                    seed=body.seed)
        loop = asyncio.get_running_loop()
        streamed = body.stream or "text/event-stream" in request.headers.get("accept", "")
        if not streamed:
            try:
                text = await loop.run_in_executor(executor, lambda: predictor.generate(body.prompt, **args))
            except DeepfitError as e:
                raise RequestError(422, str(e), field=str(e).split(" ")[0], expected=None) from e
            return _json({"text": text, "prompt": body.prompt})

        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        class _Stopped(Exception):
            pass

        def on_text(piece: str) -> None:
            if stop.is_set():
                raise _Stopped
            loop.call_soon_threadsafe(queue.put_nowait, ("text", piece))

        def work() -> None:
            try:
                text = predictor.generate(body.prompt, on_text=on_text, **args)
                loop.call_soon_threadsafe(queue.put_nowait, ("done", text))
            except _Stopped:
                pass
            except Exception as e:  # noqa: BLE001 - told to the client as an error event
                loop.call_soon_threadsafe(queue.put_nowait, ("error", f"{type(e).__name__}: {e}"))

        async def events() -> Any:
            future = loop.run_in_executor(executor, work)
            try:
                while True:
                    what, value = await queue.get()
                    if what == "text":
                        yield f"data: {json.dumps({'text': value})}\n\n"
                    elif what == "done":
                        yield f"event: done\ndata: {json.dumps({'text': value, 'prompt': body.prompt})}\n\n"
                        break
                    else:
                        yield f"event: error\ndata: {json.dumps({'error': value})}\n\n"
                        break
            finally:
                stop.set()
                await future

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> Any:
        return HTMLResponse(_page())

    return app


def _expected(error: dict[str, Any]) -> str | None:
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return kind.split("_")[0]
    if ctx:
        return ", ".join(f"{k} {v}" for k, v in ctx.items() if k != "error")
    return None


_PAGE: str | None = None


def _page() -> str:
    global _PAGE
    if _PAGE is None:
        from importlib.resources import files

        _PAGE = files("deepfit.serve").joinpath("page.html").read_text(encoding="utf-8")
    return _PAGE


def _ignore_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM after uvicorn's graceful shutdown: the drain is done; let serve() return 0."""


def serve(run_dir: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          max_batch: int = MAX_BATCH, max_wait_ms: float = MAX_WAIT_MS, limits: Limits | None = None,
          threads: int = THREADS, graceful_s: float = GRACEFUL_S, log_level: str = "info") -> int:
    """Serve the model of ``run_dir`` with uvicorn until SIGTERM/SIGINT; returns 0 after a clean drain.

    ``token`` None reads ``DEEPFIT_TOKEN`` from the environment (unset or empty: no token). The
    artifact is checked before the port opens: a corrupt or incomplete run raises ArtifactError
    and nothing is served. SIGTERM: uvicorn stops accepting, lets in-flight requests finish (at
    most ``graceful_s`` seconds), and the call returns.

    Example:
        >>> serve("runs/credit", port=8000)     # doctest: +SKIP
    """
    import uvicorn

    if token is None:
        token = os.environ.get("DEEPFIT_TOKEN") or None
    app = create_app(run_dir, token=token, max_batch=max_batch, max_wait_ms=max_wait_ms, limits=limits,
                     threads=threads)
    predictor = app.state.predictor
    what = f"{predictor.kind} model ({predictor.task})"
    print(f"deepfit serve: {what} from {run_dir} on http://{host}:{port}/ — batches of up to {max_batch} rows, "
          f"waiting at most {max_wait_ms:g} ms; torch at {threads} thread(s); "
          f"{'a token is required on /v1' if token else 'no token'}", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=graceful_s, lifespan="on")
    server = uvicorn.Server(config)
    previous = signal.signal(signal.SIGTERM, _ignore_sigterm)  # uvicorn re-raises the signal it drained for
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
