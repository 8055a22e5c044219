"""A test clip made from still portraits: each person slides across a plain background, and the
person changes at given frames (a hard cut). For tests, benchmarks and trying the demo without a camera."""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

from ..imageio import load_image
from .video import VideoWriter


def portrait_clip_frames(
    portraits: Sequence[np.ndarray], frames: int, size: tuple[int, int] = (640, 480), height_frac: float = 0.8
) -> list[np.ndarray]:
    """(H, W, 3) RGB frames of size (width, height): portrait k (of len(portraits)) fills the k-th equal
    part of the clip; it is scaled to `height_frac` of the frame height and moves left to right over the
    whole clip at constant speed."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack([90 + 40 * xx / w, 100 + 30 * yy / h, 110 + 0 * xx], axis=2).astype(np.uint8)
    ph = int(h * height_frac)
    scaled = []
    for p in portraits:
        pw = max(1, round(p.shape[1] * ph / p.shape[0]))
        scaled.append(cv2.resize(p, (pw, ph), interpolation=cv2.INTER_AREA))
    out = []
    for i in range(frames):
        person = scaled[min(len(scaled) - 1, i * len(scaled) // frames)]
        pw = person.shape[1]
        x = round((w - pw) * i / max(1, frames - 1))
        y = (h - ph) // 2
        f = background.copy()
        f[y : y + ph, x : x + pw] = person[:, : w - x]
        out.append(f)
    return out


def write_portrait_clip(
    portrait_paths: Sequence[str | os.PathLike[str]], path: str | os.PathLike[str], frames: int = 60,
    size: tuple[int, int] = (640, 480), fps: float = 25.0,
) -> int:
    """Write the clip of `portrait_paths` (see portrait_clip_frames) to a video file; returns its frame count."""
    images = [load_image(p) for p in portrait_paths]
    with VideoWriter(path, fps) as writer:
        for f in portrait_clip_frames(images, frames, size):
            writer.write(f)
    return writer.frames
