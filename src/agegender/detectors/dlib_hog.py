"""dlib's HOG + linear SVM frontal face detector, as the original Keras demo used it (optional extra)."""

from __future__ import annotations

import numpy as np

from ..extras import require
from ..types import Detection
from .base import register_detector, sort_and_cap


class DlibHogDetector:
    """dlib.get_frontal_face_detector(); `upsample` = times the image is doubled first (the demo used 1).

    Gives boxes without landmarks; scores are dlib's SVM margins squashed to 0..1 with a logistic.
    """

    name = "dlib-hog"

    def __init__(self, upsample: int = 1, max_faces: int | None = None, min_face: float = 0.0) -> None:
        dlib = require("dlib", "the dlib-hog detector")
        self._detector = dlib.get_frontal_face_detector()
        self.upsample = upsample
        self.max_faces = max_faces
        self.min_face = min_face

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        rects, scores, _ = self._detector.run(np.ascontiguousarray(image), self.upsample, 0.0)
        dets = []
        for r, s in zip(rects, scores):
            x1, y1 = max(r.left(), 0), max(r.top(), 0)
            x2, y2 = min(r.right() + 1, w), min(r.bottom() + 1, h)
            if min(x2 - x1, y2 - y1) < self.min_face or x2 <= x1 or y2 <= y1:
                continue
            dets.append(Detection(box=(float(x1), float(y1), float(x2), float(y2)), score=float(1 / (1 + np.exp(-s)))))
        return sort_and_cap(dets, self.max_faces)


@register_detector("dlib-hog")
def _make_dlib(**kwargs: object) -> DlibHogDetector:
    return DlibHogDetector(**kwargs)  # type: ignore[arg-type]
