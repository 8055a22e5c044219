"""Face detectors: RetinaFace (default, ONNX) and dlib's HOG detector (the original project's)."""

from . import dlib_hog, retinaface  # noqa: F401  (registers the detectors)
from .base import FaceDetector, available_detectors, create_detector, sort_and_cap

__all__ = ["FaceDetector", "available_detectors", "create_detector", "sort_and_cap"]
