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
    for i, f in enumerate(faces):
        color = _COLORS[f.gender]
        scale, thick = label_style(f.detection.width, (w, h))
        x1, y1, x2, y2 = (int(round(v)) for v in f.detection.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick, cv2.LINE_AA)
        text = f.label + (f" {extra_labels[i]}" if extra_labels and i < len(extra_labels) else "")
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = y1 - 4 if y1 - th - base - 4 >= 0 else min(h - 1, y2 + th + base + 4)
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 4, ty + 2), color, -1)
        cv2.putText(out, text, (x1 + 2, ty - base // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                    cv2.LINE_AA)
    return out


def label_style(face_width: float, image_size: tuple[int, int]) -> tuple[float, int]:
    """(OpenCV font scale, line thickness in pixels) for a face `face_width` pixels wide in an image of
    (width, height): sized to the image, as large as a portrait's label, but never wider than about its face,
    so that the labels of a group photo's small faces do not cover their neighbours."""
    longer = max(image_size)
    scale = max(0.45, longer / 1000)
    thick = max(1, round(longer / 400))
    return min(scale, max(0.35, face_width / 120)), max(1, min(thick, round(face_width / 60)))
