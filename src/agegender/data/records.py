"""A labelled face sample as every dataset reader yields it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..types import Gender

SPLITS = ("train", "val", "test")


@dataclass
class Sample:
    """One labelled image.

    path: image file. age: years (None if unknown). gender: project convention (None if unknown).
    split: "train"/"val"/"test" or None. face_box: (x1, y1, x2, y2) in image pixels where the dataset
    says where the face is (IMDB-WIKI), used to pick the right detection. extra: other labels kept as
    columns of the prepared labels table (e.g. UTKFace's race).
    """

    path: str
    age: float | None
    gender: Gender | None
    split: str | None = None
    face_box: tuple[float, float, float, float] | None = None
    extra: dict[str, str] = field(default_factory=dict)
