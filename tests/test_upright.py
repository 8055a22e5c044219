"""Faces lying on their side (a photo turned by a quarter with no EXIF orientation, e.g. a scan fed sideways)
are turned upright in the crop, from the detector's landmarks; upright faces are cut as before."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from agegender import Predictor
from agegender.align import upright_turns
from agegender.types import Detection

UPRIGHT = np.array([[40, 40], [60, 40], [50, 50], [42, 62], [58, 62]], np.float32)  # eyes, nose, mouth corners


def turned(lm: np.ndarray, k: int) -> Detection:
    """The landmarks as np.rot90(image, k) moves them, in a 100x100 image."""
    pts = lm.copy()
    for _ in range(k % 4):
        pts = np.stack([pts[:, 1], 100 - pts[:, 0]], axis=1)  # one quarter turn counter-clockwise
    return Detection(box=(0, 0, 100, 100), score=1.0, landmarks=pts)


def test_quarter_turns_are_undone_and_upright_or_tilted_faces_left_alone():
    assert upright_turns(turned(UPRIGHT, 0)) == 0
    assert upright_turns(turned(UPRIGHT, 1)) == -1  # turned counter-clockwise: turn the crop back clockwise
    assert upright_turns(turned(UPRIGHT, 3)) == 1
    assert upright_turns(turned(UPRIGHT, 2)) == 0  # upside down: landmarks too unreliable to act on
    tilt = np.radians(40)  # a head tilted by 40 degrees stays as it is
    rot = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
    assert upright_turns(Detection((0, 0, 100, 100), 1.0, (UPRIGHT - 50) @ rot.T + 50)) == 0
    assert upright_turns(Detection((0, 0, 100, 100), 1.0, None)) == 0


@pytest.fixture(scope="module")
def portraits(frl_images) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB").reduce(2)) for p in frl_images[::4]]  # 10 of the 40


def test_sideways_portraits_read_as_upright_ones(portraits):
    predictor = Predictor(threads=1)
    upright = [predictor.predict(im).faces[0] for im in portraits]
    for k in (1, 3):
        faces = [predictor.predict(np.ascontiguousarray(np.rot90(im, k))).faces[0] for im in portraits]
        diff = np.abs([f.age - u.age for f, u in zip(faces, upright)])
        assert diff.mean() < 2.0 and diff.max() < 5.0, (k, diff)
        assert [f.gender for f in faces] == [u.gender for u in upright]
        h, w = portraits[0].shape[:2]
        x1, y1, x2, y2 = faces[0].detection.box  # boxes stay in the turned photo's own pixels
        assert x2 <= h + 1 and y2 <= w + 1 and (x2 - x1) > 0.1 * h
