"""Core value types shared by every layer: the gender convention, faces, predictions, preprocessing.

This module imports nothing from the rest of the package (it is the bottom layer).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np


class Gender(IntEnum):
    """The one gender convention of the project: 0 = male, 1 = female.

    Dataset readers convert their own codes to this enum once; models output P(female) as class 1.
    """

    MALE = 0
    FEMALE = 1

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def short(self) -> str:
        return "M" if self is Gender.MALE else "F"

    @classmethod
    def parse(cls, value: Any) -> Gender:
        """Parse 'male'/'female'/'m'/'f' (any case) or this project's 0/1 codes."""
        if isinstance(value, Gender):
            return value
        text = str(value).strip().lower()
        if text in ("male", "m", "man", "0"):
            return cls.MALE
        if text in ("female", "f", "woman", "1"):
            return cls.FEMALE
        raise ValueError(f"unknown gender value {value!r} (expected male/female, m/f or 0/1)")


@dataclass(frozen=True)
class Detection:
    """One detected face in image pixels.

    box: (x1, y1, x2, y2) floats in pixels of the original image.
    score: detector confidence 0..1.
    landmarks: (5, 2) float32 array (right eye, left eye, nose, right mouth, left mouth) from the
        subject's point of view as RetinaFace orders them, or None when the detector gives none.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)


@dataclass(frozen=True)
class FacePrediction:
    """Age and gender of one face: age in years, P(gender given) in 0..1. age_range: (low, high) years, the
    interval the model's record calibrates to hold the true age at its stated rate (None: the model has none);
    on video (the demo's tracks) the mean of the window's ranges, as the age is the mean of its ages."""

    detection: Detection
    age: float
    gender: Gender
    gender_probability: float
    age_range: tuple[float, float] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "box": [round(float(v), 1) for v in self.detection.box],
            "score": round(float(self.detection.score), 4),
            "age": round(float(self.age), 1),
        }
        if self.age_range is not None:
            out["age_range"] = [round(float(v), 1) for v in self.age_range]
        out["gender"] = self.gender.label
        out["gender_probability"] = round(float(self.gender_probability), 4)
        return out

    @property
    def label(self) -> str:
        """Short label drawn next to the box, e.g. '34, F'."""
        return f"{self.age:.0f}, {self.gender.short}"


@dataclass
class ImageResult:
    """All faces found in one image, with the image's size in pixels (after EXIF orientation).

    skipped_faces: faces found but not estimated, by reason ("too_small", "over_max_faces"); empty if none.
    """

    image: str
    width: int
    height: int
    faces: list[FacePrediction] = field(default_factory=list)
    error: str | None = None
    skipped_faces: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "image": self.image,
            "width": self.width,
            "height": self.height,
            "faces": [f.to_json() for f in self.faces],
        }
        if self.skipped_faces:
            out["skipped_faces"] = dict(self.skipped_faces)
        if self.error is not None:
            out["error"] = self.error
        return out


PREPROCESSING_VERSION = 3  # 2: adds crop_size; 3: adds level and level_slack


@dataclass(frozen=True)
class Preprocessing:
    """How a model's input crop is made; stored inside every weights file and read back at inference.

    crop: "align5" (similarity warp of the 5 landmarks onto a template), "square" (a square centred on the
        detection box, side (1 + 2 * margin) x the box's longer side, upright unless `level`: how the TF.js libraries
        cut faces) or "box" (the detection box grown by margin, resized without keeping its aspect, as the
        original Keras demo did).
    margin: extra context on each side, as a fraction of the face size (0.4 = the original demo's).
    size: input side in pixels (square).
    color: "RGB" or "BGR" channel order of the network input.
    mean, std: per-channel normalisation in 0..255 units, in the network's channel order: x = (p - mean) / std.
    age_min, age_max: the ages of the age head's classes (one class per year, inclusive).
    detector: the detector the model was prepared with (informational; any detector may be used).
    crop_size: 0 = the face is cut at `size` directly. Otherwise it is cut at crop_size x crop_size and
        then resized to `size` (area averaging when shrinking, bilinear when enlarging): how a model
        trained on a dataset prepared at crop_size saw its faces.
    level: "square" crops only: turn the square about the box centre so that the face's eyes are level (the
        roll read from the 5 landmarks, `align.roll_degrees`), so that a tilted head is seen upright. A model
        may read levelled crops though trained on upright ones (the built-in default does: measured on the
        validation sets, see its card); prepared datasets and training keep upright squares (`same_cut`).
    level_slack: with level, degrees of roll left in place: a face rolled by less is cut as it stands, one rolled
        by more is turned back to this much (0: every face levelled), for a model that reads the slight tilts of
        its training crops better as they are.
    """

    crop: str = "align5"
    margin: float = 0.25
    size: int = 96
    color: str = "RGB"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    age_min: int = 0
    age_max: int = 100
    detector: str = "retinaface"
    crop_size: int = 0
    level: bool = False
    level_slack: float = 0.0
    version: int = PREPROCESSING_VERSION

    def __post_init__(self) -> None:
        if self.crop not in ("align5", "square", "box"):
            raise ValueError(f"unknown crop mode {self.crop!r}")
        if self.color not in ("RGB", "BGR"):
            raise ValueError(f"unknown colour order {self.color!r}")
        if self.size < 8 or self.age_max <= self.age_min:
            raise ValueError(f"invalid preprocessing: size={self.size}, ages {self.age_min}..{self.age_max}")
        if self.crop_size and self.crop_size < 8:
            raise ValueError(f"invalid preprocessing: crop_size={self.crop_size}")
        if self.level and self.crop != "square":
            raise ValueError(f"level applies to square crops, not {self.crop!r}")
        if self.level_slack and not (self.level and 0 < self.level_slack < 90):
            raise ValueError(f"level_slack {self.level_slack} needs level and lies in (0, 90) degrees")

    @property
    def num_ages(self) -> int:
        return self.age_max - self.age_min + 1

    def same_cut(self, other: Preprocessing) -> bool:
        """True when both cut faces alike (crop mode and margin), whatever their sizes."""
        return self.crop == other.crop and abs(self.margin - other.margin) < 1e-6

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        if self.level:  # older readers would drop the field and cut upright squares: make them refuse instead
            d["version"] = max(self.version, 3)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        version = int(d.get("version", PREPROCESSING_VERSION))
        if version > PREPROCESSING_VERSION:
            raise ValueError(
                f"preprocessing record version {version} is newer than this agegender understands "
                f"({PREPROCESSING_VERSION}); upgrade agegender"
            )
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in d.items() if k in known}
        for key in ("mean", "std"):
            if key in kwargs:
                kwargs[key] = tuple(float(v) for v in kwargs[key])
        return cls(**kwargs)
