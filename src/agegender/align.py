"""Crop geometry: from a detection to the square face crop a model sees.

Three modes, chosen by a model's stored Preprocessing:
- "align5": a similarity transform maps the 5 detector landmarks onto a fixed template, with `margin`
  extra context on each side (fraction of the template face's size);
- "square": a square centred on the detection box, side (1 + 2 margin) x the box's longer side, upright;
  with `level`, turned about the box centre so that the face's eyes are level (its roll read from the 5
  landmarks): a tilted head is seen as an upright one, at the box's scale;
- "box": the original Keras demo's crop: the detection box grown by `margin` of its width/height on each
  side, clipped to the image, resized to a square (aspect not kept).

`crop_face` reads pixels through a `PixelSource`: an (H, W, 3) array (`ArraySource`), or a reduced view of
a larger image read in that image's coordinates (`agegender.lazyimage`), so that a crop's geometry is the
same whatever resolution its pixels come from.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

import cv2
import numpy as np

from .types import Detection, Preprocessing

#: 5-point template in a unit face square (eyes, nose tip, mouth corners), x right, y down.
#: Derived from the widely used 112x112 face-recognition template (divided by 112).
TEMPLATE_UNIT = np.array(
    [
        [0.3419, 0.4616],
        [0.6565, 0.4598],
        [0.5002, 0.6405],
        [0.3710, 0.8247],
        [0.6315, 0.8232],
    ],
    dtype=np.float64,
)


def template_points(size: int, margin: float) -> np.ndarray:
    """(5, 2) template landmark positions in a `size` x `size` crop with `margin` context per side."""
    return (TEMPLATE_UNIT + margin) / (1.0 + 2.0 * margin) * size


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src -> dst.

    src, dst: (N, 2) point arrays, N >= 2. Returns a (2, 3) float64 affine matrix (Umeyama, no reflection).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0**2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError("degenerate landmarks: all points coincide")
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = (sig * d).sum() / var_s
    t = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, t[:, None]])


def box_crop_window(
    box: tuple[float, float, float, float], margin: float, width: int, height: int
) -> tuple[int, int, int, int]:
    """The original demo's crop window (x1, y1, x2, y2), inclusive-exclusive, clipped to the image."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    xw1 = max(int(x1 - margin * w), 0)
    yw1 = max(int(y1 - margin * h), 0)
    xw2 = min(int(x2 + margin * w), width - 1)
    yw2 = min(int(y2 + margin * h), height - 1)
    return xw1, yw1, xw2 + 1, yw2 + 1


def crop_matrix(det: Detection, prep: Preprocessing) -> np.ndarray:
    """(2, 3) affine matrix mapping image pixels to crop pixels for one detection (align5 and square modes).

    align5 falls back to the square crop, and a levelled square to the upright one, when the detection has no
    usable landmarks (none, not finite, or all at one point).
    """
    size, margin = prep.size, prep.margin
    lms = det.landmarks
    usable = lms is not None and np.isfinite(lms).all() and np.ptp(np.asarray(lms, np.float64), axis=0).max() > 1e-3
    if prep.crop == "align5" and usable:
        return similarity_transform(lms, template_points(size, margin))
    if prep.crop == "square" and prep.level and usable:
        return square_matrix(det.box, size, margin, level_turn(roll_degrees(lms), prep.level_slack))
    return square_matrix(det.box, size, margin)


def level_turn(roll: float, slack: float = 0.0) -> float:
    """Degrees a levelled square turns back for a face rolled by `roll` (`roll_degrees`): all of it but `slack`
    (a face rolled by at most `slack` is left as it stands), and none for a face turned past LEVEL_MAX_DEGREES."""
    if abs(roll) > LEVEL_MAX_DEGREES or abs(roll) <= slack:
        return 0.0
    return roll - np.sign(roll) * slack


def square_matrix(box: tuple[float, float, float, float], size: int, margin: float, roll: float = 0.0) -> np.ndarray:
    """(2, 3) matrix taking the square of side (1 + 2 margin) x max(box width, height), centred on the box, to
    a size x size crop (uniform scale). `roll` (degrees, counter-clockwise on screen) is turned back: a face
    turned by `roll` (`roll_degrees`) comes out upright; 0 cuts the square as the box stands."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    s = size / max(side, 1e-6)
    t = np.radians(roll)
    rs = s * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])  # clockwise on screen (y down)
    return np.hstack([rs, (np.array([size / 2.0, size / 2.0]) - rs @ np.array([cx, cy]))[:, None]])


class PixelSource(Protocol):
    """The pixels `crop_face` cuts from: an image of width x height pixels, read by region.

    Regions are [x0, x1) x [y0, y1) in pixels, inside the image; results are (h, w, 3) uint8 arrays.
    """

    width: int
    height: int

    def area(self, x0: int, y0: int, x1: int, y1: int, w: int, h: int) -> np.ndarray:
        """The region shrunk to w x h by area averaging (cv2.INTER_AREA)."""
        ...

    def resized(self, x0: int, y0: int, x1: int, y1: int, w: int, h: int) -> np.ndarray:
        """The region resized to w x h bilinearly (cv2.INTER_LINEAR)."""
        ...

    def warped(self, m: np.ndarray, size: int) -> np.ndarray:
        """The size x size image of the (2, 3) affine map m (image pixels -> output pixels), bilinear, the
        image's border replicated."""
        ...


class ArraySource:
    """An (H, W, 3) uint8 array as a PixelSource (OpenCV on the array itself)."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.height, self.width = image.shape[:2]

    def area(self, x0: int, y0: int, x1: int, y1: int, w: int, h: int) -> np.ndarray:
        return cv2.resize(self.image[y0:y1, x0:x1], (w, h), interpolation=cv2.INTER_AREA)

    def resized(self, x0: int, y0: int, x1: int, y1: int, w: int, h: int) -> np.ndarray:
        return cv2.resize(self.image[y0:y1, x0:x1], (w, h), interpolation=cv2.INTER_LINEAR)

    def warped(self, m: np.ndarray, size: int) -> np.ndarray:
        return cv2.warpAffine(self.image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


#: degrees: a face whose mouth lies more than this far round from straight below its eyes is lying on its side
#: (a photo turned by a quarter, e.g. a scan fed sideways); upright faces of the benchmark sets stay within 27
SIDEWAYS_DEGREES = 50.0

#: degrees: levelled square crops leave a face turned further than this as the box stands: the landmarks of upside-down
#: faces are not reliable (their angles scatter from -126 to +18 degrees on photos turned by a half)
LEVEL_MAX_DEGREES = 120.0


def _mouth_angle(lm: np.ndarray) -> float:
    """Degrees from straight down to the direction from the eyes' midpoint to the mouth's, counter-clockwise on
    screen positive: 0 upright, +-90 lying on its side. lm: (5, 2) landmarks (eyes, nose, mouth corners)."""
    dx, dy = lm[3:5].mean(axis=0) - lm[:2].mean(axis=0)
    return float(np.degrees(np.arctan2(dx, dy)))


def roll_degrees(landmarks: np.ndarray) -> float:
    """How far a face is turned from upright, in degrees in (-180, 180], counter-clockwise on screen positive,
    from its (5, 2) landmarks (left eye, right eye, nose, left and right mouth corner in image pixels): the
    circular mean of the eye line's angle and of the eyes-to-mouth direction's, so that neither a squint nor a
    half-profile's short eye line decides it alone."""
    lm = np.asarray(landmarks, np.float64)
    ex, ey = lm[1] - lm[0]
    eyes = np.arctan2(-ey, ex)  # the eye line: 0 level, counter-clockwise on screen positive (y points down)
    mouth = np.radians(_mouth_angle(lm))
    return float(np.degrees(np.arctan2(np.sin(eyes) + np.sin(mouth), np.cos(eyes) + np.cos(mouth))))


def upright_turns(det: Detection) -> int:
    """Quarter turns (np.rot90's k) that make a face lying on its side upright, from its 5 landmarks (left eye,
    right eye, nose, left and right mouth corner): 1 or -1 for a face turned by about a quarter either way, else
    0 (upright or tilted, upside down, whose landmarks are not reliable, or no landmarks). Levelled square
    crops turn by the whole roll (`roll_degrees`) instead."""
    if det.landmarks is None:
        return 0
    angle = _mouth_angle(np.asarray(det.landmarks, np.float64))
    if SIDEWAYS_DEGREES < abs(angle) < 180.0 - SIDEWAYS_DEGREES:
        return -1 if angle > 0 else 1
    return 0


def crop_face(image: np.ndarray | PixelSource, det: Detection, prep: Preprocessing) -> np.ndarray:
    """Cut one face from an (H, W, 3) uint8 image (or a PixelSource); returns (size, size, 3) uint8, same
    channel order. A face lying on its side (`upright_turns`) is turned upright in the crop, as the models
    learned faces; "align5" and levelled square crops turn by the landmarks anyway."""
    src = ArraySource(image) if isinstance(image, np.ndarray) else image
    size = prep.size
    if prep.crop_size and prep.crop_size != size:
        return resize_square(crop_face(src, det, replace(prep, size=prep.crop_size, crop_size=0)), size)
    crop = _cut(src, det, prep)
    turns = upright_turns(det) if prep.crop == "box" or (prep.crop == "square" and not prep.level) else 0
    return np.ascontiguousarray(np.rot90(crop, turns)) if turns else crop


def _cut(src: PixelSource, det: Detection, prep: Preprocessing) -> np.ndarray:
    """The (size, size, 3) crop as `prep` cuts it, before any turn."""
    size = prep.size
    if prep.crop == "box":
        x1, y1, x2, y2 = box_crop_window(det.box, prep.margin, src.width, src.height)
        if x2 <= x1 or y2 <= y1:
            return np.zeros((size, size, 3), np.uint8)
        return src.resized(x1, y1, x2, y2, size, size)
    m = crop_matrix(det, prep)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.5:
        small, m = _shrink_for_warp(src, m, size, scale)
        return cv2.warpAffine(small, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return src.warped(m, size)


def crop_scale(det: Detection, prep: Preprocessing) -> float:
    """Crop pixels per image pixel when `det` is cut as `prep` says, at the size faces are cut at
    (`prep.crop_size`, else `prep.size`); the larger of the two axes. Under 1: the crop has fewer pixels than
    the face region it covers; over 1: it is enlarged from fewer. A crop mode this function does not know
    gives infinity (cut from the full-size image)."""
    cut = prep.crop_size or prep.size
    if prep.crop == "box":  # the grown box is resized to cut x cut, each axis on its own
        side = min(det.width, det.height) * (1.0 + 2.0 * prep.margin)
        return cut / max(side, 1e-6)
    if prep.crop in ("align5", "square"):
        m = crop_matrix(det, replace(prep, size=cut, crop_size=0))
        return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    return float("inf")


def _shrink_for_warp(
    src: PixelSource, m: np.ndarray, size: int, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Area-downsample the part of the image a warp reads, so a big face is not aliased by bilinear sampling.

    Returns the smaller region and the matrix `m` rewritten to map that region's pixels to the crop.
    """
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inv.T
    h, w = src.height, src.width
    x0 = int(np.clip(np.floor(corners[:, 0].min()) - 2, 0, w - 1))
    y0 = int(np.clip(np.floor(corners[:, 1].min()) - 2, 0, h - 1))
    x1 = int(np.clip(np.ceil(corners[:, 0].max()) + 2, x0 + 1, w))
    y1 = int(np.clip(np.ceil(corners[:, 1].max()) + 2, y0 + 1, h))
    f = 2.0 * scale
    rw, rh = max(1, round((x1 - x0) * f)), max(1, round((y1 - y0) * f))
    small = src.area(x0, y0, x1, y1, rw, rh)
    fx, fy = rw / (x1 - x0), rh / (y1 - y0)
    # region pixel -> image pixel: p_img = p_small / f + origin (pixel centres ignored: sub-pixel only)
    back = np.array([[1.0 / fx, 0.0, x0], [0.0, 1.0 / fy, y0], [0.0, 0.0, 1.0]])
    return small, m @ back


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """An (H, W, C) crop resized to (size, size, C) as training resizes stored crops: area averaging when
    shrinking, bilinear when enlarging; returned as is when it already has that size."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    shrink = img.shape[0] > size
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def center_cut(crop: np.ndarray, cut: int) -> np.ndarray:
    """The central cut x cut pixels of a crop: the same face centre with a narrower margin."""
    h = crop.shape[0]
    if cut >= h:
        return crop
    o = (h - cut) // 2
    return crop[o : o + cut, o : o + cut]


def margin_cut(stored: Preprocessing, margin: float) -> int:
    """Side in pixels of the centre of a crop cut as `stored` says (its size and margin) that holds the same
    face with `margin` instead (align5 and square crops are centred on the face; `margin` <= stored's)."""
    if margin > stored.margin + 1e-9:
        raise ValueError(f"margin {margin} is wider than the crops' margin {stored.margin}")
    return int(round(stored.size * (1 + 2 * margin) / (1 + 2 * stored.margin)))


def from_stored_crop(crop: np.ndarray, stored: Preprocessing, model: Preprocessing) -> np.ndarray:
    """A crop cut as `stored` says (a prepared dataset's), as `model` sees it: its centre at the model's
    margin, resized to the model's input size, as training feeds it."""
    return resize_square(center_cut(crop, margin_cut(stored, model.margin)), model.size)


def crop_faces(image: np.ndarray | PixelSource, detections: list[Detection], prep: Preprocessing) -> np.ndarray:
    """All faces of one RGB image (or PixelSource) as an (N, size, size, 3) uint8 batch (RGB)."""
    if not detections:
        return np.zeros((0, prep.size, prep.size, 3), np.uint8)
    src = ArraySource(image) if isinstance(image, np.ndarray) else image
    return np.stack([crop_face(src, d, prep) for d in detections])


def to_network_input(crops_rgb: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """(N, S, S, 3) uint8 RGB crops -> (N, 3, S, S) float32 network input, as `prep` prescribes.

    The channels are reordered and moved first while still bytes, then written once into the float array and
    normalised in place: the same float32 operations as converting first, about 9x faster (at batch 64 of
    140 px crops on 2 cores, 0.06 instead of 0.5 ms a face, next to the network's 3.5)."""
    crops = crops_rgb[..., ::-1] if prep.color == "BGR" else crops_rgb
    x = np.empty((crops.shape[0], crops.shape[3], crops.shape[1], crops.shape[2]), np.float32)
    x[...] = crops.transpose(0, 3, 1, 2)
    x -= np.asarray(prep.mean, np.float32)[:, None, None]
    x /= np.asarray(prep.std, np.float32)[:, None, None]
    return x
