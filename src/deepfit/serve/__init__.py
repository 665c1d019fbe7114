"""``deepfit serve``: a trained model behind HTTP (FastAPI + uvicorn), with micro-batching.

Install with ``pip install 'deepfit[serve]'``. :func:`create_app` builds the app for a predictor
or run directory; :func:`serve` runs it with uvicorn. docs/serve.md describes the endpoints.

Example:
    >>> from deepfit.serve import serve        # doctest: +SKIP
    >>> serve("runs/credit", port=8000)        # doctest: +SKIP
"""

from __future__ import annotations

from deepfit.serve.app import create_app, load_checked, serve
from deepfit.serve.batcher import MicroBatcher
from deepfit.serve.inputs import Limits, RequestError

__all__ = ["create_app", "serve", "load_checked", "Limits", "RequestError", "MicroBatcher"]
