"""Results as flat rows: one row per face, plus one row for an image with no face or an error.

The form that Parquet results, the Ray engine's batches and `agegender report` share. The values are those
of the JSON-lines output (`ImageResult.to_json`: boxes to 0.1 px, ages to 0.1 year, probabilities to 4
digits), so rows and JSON lines convert into each other without loss. Plain Python: no pyarrow here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..types import Detection, FacePrediction, Gender, ImageResult

#: column name -> pyarrow type name, in order. Per image: image (path as given), width, height (pixels,
#: after EXIF rotation), faces (faces estimated in the image), skipped_faces (JSON {"too_small": N, ...} or
#: null), error (one line or null). Per face (null on an image's no-face/error row): face (0-based index in
#: the image), x1..y2 (box, pixels), score (detector, 0..1), age (years), age_low, age_high (the age range
#: the model's record calibrates, years; null when it has none), gender ("male"/"female"),
#: gender_probability (P of that gender). model, model_version: the estimator's name and weights digest.
COLUMNS: dict[str, str] = {
    "image": "string", "width": "int32", "height": "int32", "faces": "int32", "face": "int32",
    "x1": "float64", "y1": "float64", "x2": "float64", "y2": "float64", "score": "float64", "age": "float64",
    "age_low": "float64", "age_high": "float64", "gender": "string", "gender_probability": "float64",
    "skipped_faces": "string", "error": "string", "model": "string", "model_version": "string",
}
FACE_COLUMNS = ("face", "x1", "y1", "x2", "y2", "score", "age", "age_low", "age_high", "gender",
                "gender_probability")


@dataclass(frozen=True)
class ModelInfo:
    """The model a result came from: name (e.g. 'default') and version ('sha256:' + 12 hex digits of the
    weights file, so two files of the same name never pass for each other)."""

    name: str
    version: str


def model_info(estimator: Any) -> ModelInfo:
    """ModelInfo of a loaded estimator (its `name` and the digest of its weights file at `path`)."""
    from ..fileio import sha256_of

    path = getattr(estimator, "path", None)
    version = f"sha256:{sha256_of(path)[:12]}" if path else "unknown"
    return ModelInfo(str(getattr(estimator, "name", "unknown")), version)


def result_rows(result: ImageResult, model: ModelInfo) -> list[dict[str, Any]]:
    """The rows of one image: one per face, or a single row with the face columns null."""
    return json_rows(result.to_json(), model)


def results_from_rows(rows: Iterable[dict[str, Any]]) -> list[ImageResult]:
    """ImageResults back from rows (any order; an image's faces by their `face` index), in the order each
    image first appears."""
    by_image: dict[str, tuple[ImageResult, list[tuple[int, FacePrediction]]]] = {}
    for row in rows:
        image = row["image"]
        if image not in by_image:
            skipped = json.loads(row["skipped_faces"]) if row.get("skipped_faces") else {}
            by_image[image] = (ImageResult(image, int(row["width"]), int(row["height"]), [], error=row.get("error"),
                                           skipped_faces=skipped), [])
        if row.get("face") is not None:
            box = (float(row["x1"]), float(row["y1"]), float(row["x2"]), float(row["y2"]))
            span = None if row.get("age_low") is None else (float(row["age_low"]), float(row["age_high"]))
            face = FacePrediction(Detection(box, float(row["score"])), float(row["age"]), Gender.parse(row["gender"]),
                                  float(row["gender_probability"]), span)
            by_image[image][1].append((int(row["face"]), face))
    out = []
    for result, faces in by_image.values():
        result.faces = [f for _, f in sorted(faces, key=lambda t: t[0])]
        out.append(result)
    return out


def json_rows(obj: dict[str, Any], model: ModelInfo | None = None) -> list[dict[str, Any]]:
    """The rows of one JSON line of `predict --format jsonl` (model columns null unless `model` is given)."""
    skipped = obj.get("skipped_faces") or {}
    faces = obj.get("faces") or []
    base: dict[str, Any] = {
        "image": obj["image"], "width": obj.get("width", 0), "height": obj.get("height", 0), "faces": len(faces),
        "skipped_faces": json.dumps(skipped, sort_keys=True) if skipped else None, "error": obj.get("error"),
        "model": model.name if model else None, "model_version": model.version if model else None,
    }
    if not faces:
        return [base | dict.fromkeys(FACE_COLUMNS)]
    return [base | {"face": i, "x1": f["box"][0], "y1": f["box"][1], "x2": f["box"][2], "y2": f["box"][3],
                    "score": f["score"], "age": f["age"], "age_low": f.get("age_range", (None, None))[0],
                    "age_high": f.get("age_range", (None, None))[1], "gender": f["gender"],
                    "gender_probability": f["gender_probability"]} for i, f in enumerate(faces)]
