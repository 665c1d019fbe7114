"""The endpoint a user would write by hand, for bench/serve.py's baseline: FastAPI calling
``predictor.predict_frame`` once per request (no batching), on one torch thread.

    DEEPFIT_MODEL=runs/credit_data .venv/bin/python -m uvicorn _naive_serve:app --app-dir bench --port 8001

A helper of bench/serve.py, not a benchmark and not part of deepfit.
"""

from __future__ import annotations

import math
import os
from typing import Any

import pandas as pd
import torch
from fastapi import FastAPI, HTTPException, Request

import deepfit

torch.set_num_threads(1)
predictor = deepfit.load(os.environ["DEEPFIT_MODEL"])
app = FastAPI()


def _number(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


@app.post("/v1/predict")
async def predict(request: Request) -> dict[str, Any]:
    body = await request.json()
    rows = body.get("rows") if isinstance(body, dict) else None
    if not isinstance(rows, list) or not rows:
        raise HTTPException(422, "rows must be a non-empty list")
    try:
        frame = predictor.predict_frame(pd.DataFrame(rows))
    except Exception as e:  # a hand-written endpoint: any failure is the client's fault
        raise HTTPException(422, str(e)) from e
    out = []
    for record in frame.to_dict(orient="records"):
        probs = {k[len("proba_"):]: float(v) for k, v in record.items() if k.startswith("proba_")}
        pred = _number(record["prediction"])
        out.append({"prediction": None if isinstance(pred, float) and math.isnan(pred) else pred,
                    "probabilities": probs})
    return {"predictions": out}
