"""Request and response shapes of the server, for validation and for ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["GenerateRequest", "Prediction", "PredictResponse", "ModelInfo", "predict_openapi"]


class GenerateRequest(BaseModel):
    """``POST /v1/generate``: what to continue and how to sample."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field("", description="the start of a document ('' = a new document)")
    max_tokens: int = Field(200, ge=0, description="tokens to generate (at most the server's max_tokens limit)")
    temperature: float = Field(0.8, ge=0, allow_inf_nan=False, description="0 = always the likeliest token")
    top_k: int | None = Field(None, ge=1, description="sample among the k likeliest tokens")
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False, description="nucleus sampling mass")
    seed: int | None = Field(None, description="seed of the sampling (the same seed, the same text)")
    stream: bool = Field(False, description="answer as server-sent events: data {text} per piece, then event done")


class Prediction(BaseModel):
    prediction: Any = Field(description="the class, the number (regression), or labels joined by '|' (multi-label)")
    probabilities: dict[str, float] | None = Field(None, description="class -> probability (classification)")
    warnings: list[str] = Field(default_factory=list,
                                description="what the model did with unusual values: unseen categories "
                                            "(served as unknown), numbers outside the training range")


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class ModelInfo(BaseModel):
    kind: str
    task: str
    model: str
    input: dict[str, Any]
    classes: list[str] | None
    metrics: dict[str, float | None]
    deepfit_version: str
    batching: dict[str, Any]
    limits: dict[str, int]
    token_required: bool


def predict_openapi() -> dict[str, Any]:
    """The request body of ``POST /v1/predict``: JSON rows, a CSV body, or image uploads."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "required": ["rows"], "properties": {"rows": {
            "type": "array", "items": {"oneOf": [{"type": "object"}, {"type": "array", "items": {}}]},
            "description": "tables: one object {column: value} per row; arrays models: one list of numbers per row"}}},
            "example": {"rows": [{"age": 41, "job": "fixed"}]}},
        "text/csv": {"schema": {"type": "string"}, "example": "age,job\n41,fixed\n"},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "image": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "rows": {"type": "string", "description": "image models with table columns: a JSON list, one row per image"},
        }}},
    }}}
