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
#: reliably (RetinaFace's finest anchors are 16 px; at about 20 px it finds two faces in three), so there may
#: be more of its size that it missed
SMALL_FACE_PX = 32.0
#: the largest input side a finer pass uses (a 4096 px pass costs about 40 times a 640 px one; a crowd of
#: 65 px faces in a 6000x4000 photo needs it)
FINEST_SIDE = 4096
#: where a pass finds no face at all, finer passes go on up to this input side (and stop there: a photo
#: whose 1280 px pass finds nothing is taken to hold no face, rather than paying 4096 px passes for it)
NO_FACE_SIDE = 1280
#: how far a finer pass may enlarge a photo whose faces are small in its own pixels (a low-resolution group
#: photo), once a pass has found such faces
MAX_ENLARGE = 2.0
#: a photo under this many pixels on its longer side where no face is found (a face thumbnail of 24-48 px)
#: gets one pass enlarged TINY_ENLARGE times
TINY_IMAGE, TINY_ENLARGE = 128, 4.0


def detect_faces(detector: FaceDetector, image: LazyImage, refine: bool = False) -> list[Detection]:
    """The detector's faces in a lazily decoded image, found on the coarsest view the detector can use
    (`input_size`), in the original image's pixels (as displayed). Raises ImageLoadError if the image
    cannot be decoded.

    refine (detectors with a `max_side`): where a pass finds a face under SMALL_FACE_PX in its input, look again
    at twice the input side (up to FINEST_SIDE), the photo enlarged up to MAX_ENLARGE times if its own pixels
    are too few, as long as each pass finds small faces and sees them at least 1.5 times larger; where a pass
    finds no face at all, look again at twice the side without enlarging, up to NO_FACE_SIDE (the default's 640
    px: one finer pass for a big photo), or, in a photo under TINY_IMAGE px, enlarged TINY_ENLARGE times. A face
    seen at SMALL_FACE_PX or more stays as that pass found it (so a photo whose faces are large reads as it
    would in one pass); a smaller one gives way to a finer pass's face at its place; faces only one pass found
    are all kept (a finer pass can miss faces too large for its anchors)."""
    found = _detect_pass(detector, image, None)
    if not refine or getattr(detector, "max_side", None) is None:
        return found
    side, enlarge = detector.max_side, 1.0  # type: ignore[attr-defined]
    settled = _seen_well(found, _scale(detector, image, side, enlarge))
    while (finer := _finer_pass(detector, image, found, side, enlarge)) is not None:
        side, enlarge = finer
        new = _detect_pass(detector, image, side, enlarge)
        found, settled = merge_passes(new, _seen_well(new, _scale(detector, image, side, enlarge)), found, settled)
    return found


def _detect_pass(detector: FaceDetector, image: LazyImage, side: int | None, enlarge: float = 1.0
                 ) -> list[Detection]:
    """One detection pass at the detector's own input side (side None) or at `side`, enlarging the photo up
    to `enlarge` times."""
    kwargs = {} if side is None else {"max_side": side, "max_scale": enlarge}
    w, h = detector.input_size(image.width, image.height, **kwargs) if kwargs else \
        input_size(detector, image.width, image.height)  # type: ignore[attr-defined]
    view = image.view(math.ceil(w), math.ceil(h))
    if view.reduction == 1:
        return detector.detect(view.pixels, **kwargs)  # type: ignore[call-arg]
    found = detector.detect(view.pixels, original_size=view.original_size, **kwargs)  # type: ignore[call-arg]
    return [view.detection_to_original(d) for d in found]


def _finer_pass(detector: FaceDetector, image: LazyImage, found: list[Detection], side: int,
                enlarge: float) -> tuple[int, float] | None:
    """The next pass's (input side, enlargement) after a pass at (side, enlarge) that found `found`, or None:
    a small face found, or none (below NO_FACE_SIDE, or in a tiny photo), and the next pass sees the photo at
    least 1.5 times as large."""
    now = _scale(detector, image, side, enlarge)
    if not found and max(image.width, image.height) < TINY_IMAGE:
        nxt = (side, TINY_ENLARGE)
    elif not found:
        nxt = (min(2 * side, NO_FACE_SIDE), 1.0)
    elif not all(_seen_well(found, now)):
        nxt = (min(2 * side, FINEST_SIDE), MAX_ENLARGE)
    else:
        return None
    return nxt if _scale(detector, image, *nxt) >= 1.5 * now else None  # each pass sees more: the loop ends


def _scale(detector: FaceDetector, image: LazyImage, side: int, enlarge: float) -> float:
    """Detector input pixels per image pixel in a pass at (side, enlarge)."""
    w, _ = detector.input_size(image.width, image.height, max_side=side, max_scale=enlarge)  # type: ignore[attr-defined]
    return w / image.width


def _seen_well(faces: list[Detection], scale: float) -> list[bool]:
    """For each face, whether it was SMALL_FACE_PX or more (shorter side) in a pass at `scale`."""
    return [min(d.width, d.height) * scale >= SMALL_FACE_PX for d in faces]


def merge_passes(finer: list[Detection], finer_settled: list[bool], coarser: list[Detection],
                 coarser_settled: list[bool], overlap: float = 0.3) -> tuple[list[Detection], list[bool]]:
    """Two passes' faces as one list, largest first, each with its settled flag (seen at SMALL_FACE_PX or more).
    Where faces of both overlap (IoU > overlap), a settled coarser face stays and the finer one is dropped; an
    unsettled coarser face gives way to the finer one. Faces at no other's place are kept."""
    iou = iou_matrix(np.array([d.box for d in finer]), np.array([d.box for d in coarser]))
    fine_keep = [i for i in range(len(finer))
                 if not any(iou[i, j] > overlap and coarser_settled[j] for j in range(len(coarser)))]
    coarse_keep = [j for j in range(len(coarser))
                   if coarser_settled[j] or not any(iou[i, j] > overlap for i in fine_keep)]
    pairs = [(finer[i], finer_settled[i]) for i in fine_keep] + [(coarser[j], coarser_settled[j]) for j in coarse_keep]
    pairs.sort(key=lambda p: p[0].area, reverse=True)
    return [d for d, _ in pairs], [s for _, s in pairs]


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
