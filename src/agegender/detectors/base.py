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


def detect_faces(detector: FaceDetector, image: LazyImage) -> list[Detection]:
    """The detector's faces in a lazily decoded image, found on the coarsest view the detector can use
    (`input_size`), in the original image's pixels (as displayed). Raises ImageLoadError if the image
    cannot be decoded."""
    w, h = input_size(detector, image.width, image.height)
    view = image.view(math.ceil(w), math.ceil(h))
    if view.reduction == 1:
        return detector.detect(view.pixels)
    found = detector.detect(view.pixels, original_size=view.original_size)  # type: ignore[call-arg]
    return [view.detection_to_original(d) for d in found]


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
