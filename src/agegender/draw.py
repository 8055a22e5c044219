"""Drawing boxes and "age, gender" labels on a copy of an image (never on the image inference reads)."""

from __future__ import annotations

import cv2
import numpy as np

from .types import FacePrediction, Gender

_COLORS = {Gender.MALE: (66, 135, 245), Gender.FEMALE: (235, 64, 140)}  # RGB


def annotate(image_rgb: np.ndarray, faces: list[FacePrediction], extra_labels: list[str] | None = None) -> np.ndarray:
    """Return a new RGB image with each face's box and label ("34, F") drawn; the input is not modified.

    extra_labels: optional text appended per face (e.g. a track id).
    """
    out = image_rgb.copy()
    h, w = out.shape[:2]
    thick = max(1, round(max(h, w) / 400))
    scale = max(0.45, max(h, w) / 1000)
    for i, f in enumerate(faces):
        color = _COLORS[f.gender]
        x1, y1, x2, y2 = (int(round(v)) for v in f.detection.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick, cv2.LINE_AA)
        text = f.label + (f" {extra_labels[i]}" if extra_labels and i < len(extra_labels) else "")
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = y1 - 4 if y1 - th - base - 4 >= 0 else min(h - 1, y2 + th + base + 4)
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 4, ty + 2), color, -1)
        cv2.putText(out, text, (x1 + 2, ty - base // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                    cv2.LINE_AA)
    return out
