"""The HTTP API's contract in its OpenAPI schema: what each endpoint accepts and every answer it gives.

Response bodies are pydantic models (FastAPI validates what the server sends against them); errors are
{"error": "one line"} with the statuses listed per endpoint. The request body of POST /v1/predict is
built per server, since it states that server's upload and pixel limits.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ..formats import readable_media_types
from .body import RAW_TYPES


class FaceOut(BaseModel):
    box: list[float] = Field(description="[x1, y1, x2, y2] in pixels of the image as displayed (EXIF-rotated)",
                             min_length=4, max_length=4)
    score: float = Field(description="detector score, 0..1", ge=0, le=1)
    age: float = Field(description="estimated age in years")
    age_range: list[float] | None = Field(
        None, min_length=2, max_length=2,
        description="[low, high] years: the interval the model's record calibrates to hold the true age at its "
                    "stated rate (GET /v1/models: model.age_range); absent when the model has none")
    gender: Literal["male", "female"]
    gender_probability: float = Field(description="probability of the gender given", ge=0, le=1)


class PredictOut(BaseModel):
    """Same object as one line of `agegender predict --format jsonl`; annotated_jpeg only with annotate=true."""

    image: str = Field(description='the uploaded filename (sanitised) or "upload"')
    width: int
    height: int
    faces: list[FaceOut]
    skipped_faces: dict[str, int] | None = Field(None, description='faces found but left out, e.g. {"too_small": 2}')
    annotated_jpeg: str | None = Field(None, description="with annotate=true: the annotated image, base64 JPEG")


class ErrorOut(BaseModel):
    error: str = Field(description="what was wrong, in one line")


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str
    workers: int = Field(description="requests run at once")


class ModelOut(BaseModel):
    name: str
    arch: str
    preprocessing: dict[str, Any]
    age_range: dict[str, Any] | None = Field(None, description="how the model's age ranges are read and what "
                                                                "share of validation faces they held (null: none)")
    summary: str | None
    metrics: dict[str, Any] = Field(description="the model card's test (or validation) metrics")


class DetectorOut(BaseModel):
    name: str
    min_threshold: float = Field(description="the lowest `threshold` a request may ask for (--min-threshold)")
    default_threshold: float = Field(description="the threshold of a request that names none (--threshold)")


class LimitsOut(BaseModel):
    max_upload_bytes: int = Field(description="largest request body (413 above; --max-upload-mb)")
    max_pixels: int = Field(description="largest decoded image, width x height (413 above; --max-pixels)")


class ModelsOut(BaseModel):
    model: ModelOut
    detector: DetectorOut
    limits: LimitsOut


_ERRORS = {
    400: "a bad parameter (threshold, max_faces, annotate) or an empty, corrupt or truncated image",
    413: "the upload is over the server's byte limit, or the image over its pixel limit (checked from the "
         "header, before decoding)",
    415: "the body is neither an image nor multipart/form-data with a file part, or its bytes are not an image",
    500: "a bug in the server (never bad input): please report it with the output of `agegender info`",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses` for these error statuses (JSON {"error": ...}), plus uvicorn's 503."""
    out: dict[int | str, dict[str, Any]] = {s: {"model": ErrorOut, "description": _ERRORS[s]} for s in statuses}
    out[503] = {"description": "more connections at once than the server's --max-connections (sent by uvicorn, "
                               "as plain text)",
                "content": {"text/plain": {"schema": {"type": "string"}}}}
    return out


def predict_body(max_upload_bytes: int, max_pixels: int) -> dict[str, Any]:
    """The request body of POST /v1/predict: one image, raw or as the file part of a form. It names the image
    media types this server decodes (any image/* body is accepted; Pillow decides what decodes)."""
    image = {"type": "string", "format": "binary", "minLength": 1, "maxLength": max_upload_bytes}
    types = readable_media_types()  # what this server decodes: AVIF and HEIC only where it can
    formats = ", ".join(types)
    return {
        "required": True,
        "description": f"One image, as the raw body (Content-Type image/* or application/octet-stream) or as the "
                       f"file part of multipart/form-data (field `file`). Any format this server decodes ({formats}, "
                       f"...); at most {max_upload_bytes} bytes and {max_pixels} decoded pixels (413 above). "
                       f"The bytes must decode as an image: others get 415 (not an image) or 400 (corrupt, "
                       f"truncated, empty).",
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"], "properties": {"file": image}},
                "encoding": {"file": {"contentType": formats}},
            },
            **{t: {"schema": image} for t in (*types, *RAW_TYPES)},
        },
    }
