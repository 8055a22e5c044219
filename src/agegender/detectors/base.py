"""The face detector interface and its registry (detectors are looked up by name)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import numpy as np

from ..lazyimage import LazyImage
from ..types import Detection


class FaceDetector(Protocol):
    """Finds faces in an (H, W, 3) uint8 RGB image; boxes and landmarks in that image's pixels.

    A detector that shrinks large images before looking at them may also have
    `input_size(width, height) -> (w, h)`, the size it shrinks a width x height image to, and accept
    `detect(image, original_size=(width, height))`: `image` is then a reduced copy of such an image (at
    least `input_size` large) and the detector works as it would on the image itself, giving boxes in the
    copy's pixels. `detect_faces` uses this to detect on a reduced decode; other detectors get the full-size
    image.
    """

    name: str

    def detect(self, image: np.ndarray) -> list[Detection]: ...


def input_size(detector: FaceDetector, width: int, height: int) -> tuple[int, int]:
    """The smallest copy (w, h) of a width x height image the detector works on as on the image itself."""
    fn = getattr(detector, "input_size", None)
    return (width, height) if fn is None else fn(width, height)


#: a face under this many pixels (shorter box side) in the detector's input is near the smallest it finds
#: reliably (RetinaFace's finest anchors are 16 px), so there may be more that it missed
SMALL_FACE_PX = 20.0
#: the largest input side a finer pass uses (a 4096 px pass costs about 40 times a 640 px one; a crowd of
#: 65 px faces in a 6000x4000 photo needs it)
FINEST_SIDE = 4096
#: where a pass finds no face at all, finer passes go on up to this input side (and stop there: a photo
#: whose 1280 px pass finds nothing is taken to hold no face, rather than paying 4096 px passes for it)
NO_FACE_SIDE = 1280


def detect_faces(detector: FaceDetector, image: LazyImage, refine: bool = False) -> list[Detection]:
    """The detector's faces in a lazily decoded image, found on the coarsest view the detector can use
    (`input_size`), in the original image's pixels (as displayed). Raises ImageLoadError if the image
    cannot be decoded.

    refine (detectors with a `max_side`): when the image has at least 1.5 times the pixels a side of the
    detector's input and the pass found no face, or a face under SMALL_FACE_PX in its input, look again at twice
    the input side (up to FINEST_SIDE and the image's own size), as long as each pass finds small faces; where
    no face is found at all, up to NO_FACE_SIDE (the default's 640 px: one finer pass). The faces of each pass
    are kept where the finer pass has none at their place (it can miss faces too large for its anchors)."""
    side = getattr(detector, "max_side", None)
    found = _detect_pass(detector, image, None)
    while refine and side is not None and _wants_finer_pass(detector, image, found, side):
        side = min(2 * side, FINEST_SIDE)
        found = merge_passes(_detect_pass(detector, image, side), found)
    return found


def _detect_pass(detector: FaceDetector, image: LazyImage, side: int | None) -> list[Detection]:
    """One detection pass at the detector's own input side (side None) or at `side`."""
    kwargs = {} if side is None else {"max_side": side}
    w, h = detector.input_size(image.width, image.height, **kwargs) if kwargs else \
        input_size(detector, image.width, image.height)  # type: ignore[attr-defined]
    view = image.view(math.ceil(w), math.ceil(h))
    if view.reduction == 1:
        return detector.detect(view.pixels, **kwargs)  # type: ignore[call-arg]
    found = detector.detect(view.pixels, original_size=view.original_size, **kwargs)  # type: ignore[call-arg]
    return [view.detection_to_original(d) for d in found]


def _wants_finer_pass(detector: FaceDetector, image: LazyImage, found: list[Detection], side: int) -> bool:
    """Whether a pass at `side` leaves faces to find: the image has more pixels than that input, a finer
    side is allowed, and the pass found a small face (or none at all, below NO_FACE_SIDE)."""
    w, _ = detector.input_size(image.width, image.height, max_side=side)  # type: ignore[attr-defined]
    scale = w / image.width
    if scale > 2 / 3 or side >= FINEST_SIDE:  # under 1.5x more pixels a side to gain: not worth a pass
        return False
    if not found:
        return side < NO_FACE_SIDE
    return min(min(d.width, d.height) for d in found) * scale < SMALL_FACE_PX


def merge_passes(finer: list[Detection], coarser: list[Detection], overlap: float = 0.3) -> list[Detection]:
    """The finer pass's faces plus the coarser pass's faces that overlap none of them (IoU <= overlap),
    largest first."""
    if not finer or not coarser:
        return sort_and_cap(finer or coarser, None)
    iou = iou_matrix(np.array([d.box for d in coarser]), np.array([d.box for d in finer]))
    kept = [d for d, row in zip(coarser, iou) if row.max() <= overlap]
    return sort_and_cap(finer + kept, None)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) and (M, 4) boxes (x1, y1, x2, y2) -> (N, M) intersection over union in 0..1."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


_REGISTRY: dict[str, Callable[..., FaceDetector]] = {}


def register_detector(name: str) -> Callable[[Callable[..., FaceDetector]], Callable[..., FaceDetector]]:
    def wrap(factory: Callable[..., FaceDetector]) -> Callable[..., FaceDetector]:
        _REGISTRY[name] = factory
        return factory

    return wrap


def available_detectors() -> list[str]:
    return sorted(_REGISTRY)


def create_detector(name: str = "retinaface", **kwargs: object) -> FaceDetector:
    """Build a detector by name ("retinaface", "dlib-hog")."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose from {', '.join(available_detectors())}") from None
    return factory(**kwargs)


def sort_and_cap(dets: list[Detection], max_faces: int | None) -> list[Detection]:
    """Largest faces first; keep at most `max_faces` (None: all)."""
    dets = sorted(dets, key=lambda d: d.area, reverse=True)
    return dets if max_faces is None else dets[:max_faces]


def select_faces(
    dets: list[Detection], min_face: float = 0.0, max_faces: int | None = None
) -> tuple[list[Detection], dict[str, int]]:
    """Drop faces whose shorter box side is under `min_face` pixels, then keep the `max_faces` largest.

    Returns the kept faces (largest first) and how many were dropped for each reason: {"too_small": n,
    "over_max_faces": m}, with zero counts left out.
    """
    kept = [d for d in dets if min(d.width, d.height) >= min_face]
    capped = sort_and_cap(kept, max_faces)
    counts = {"too_small": len(dets) - len(kept), "over_max_faces": len(kept) - len(capped)}
    return capped, {k: v for k, v in counts.items() if v}
