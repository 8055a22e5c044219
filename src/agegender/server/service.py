"""The server's inference: bytes in, the `predict --format jsonl` JSON out, on a shared Predictor.

One Predictor (detector and model loaded once) serves every request; onnxruntime's run() is thread-safe,
so requests run concurrently on a bounded thread pool.
"""

from __future__ import annotations

import base64
import copy
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..detectors.base import FaceDetector, input_size
from ..draw import annotate
from ..imageio import ImageLoadError
from ..inference.predictor import Predictor
from ..lazyimage import LazyImage
from ..types import Detection
from .errors import ApiError, image_error

EXAMPLE_IMAGE = Path(__file__).resolve().parent.parent / "assets" / "example.jpg"
#: default cap on decoded pixels per upload (about 8k x 6k); larger images get a 413, not decoded
DEFAULT_MAX_PIXELS = 50_000_000
#: default cap on the upload size in bytes
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024


class PredictService:
    """Runs uploads through one Predictor with per-request detector threshold and face cap.

    The detector's own threshold is the floor: a request may ask for a higher threshold (the same
    detections as a detector built with it, since NMS keeps higher scores first), not a lower one.
    """

    def __init__(self, predictor: Predictor, max_pixels: int = DEFAULT_MAX_PIXELS,
                 default_threshold: float | None = None, workers: int | None = None) -> None:
        self.predictor = predictor
        self.max_pixels = max_pixels
        own = getattr(predictor.detector, "score_threshold", None)  # RetinaFace's; else the predictor's own floor
        self.min_threshold = float(own if own is not None else predictor.score_threshold or 0.0)
        self.default_threshold = max(self.min_threshold, default_threshold or self.min_threshold)
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.executor = ThreadPoolExecutor(self.workers, thread_name_prefix="agegender-predict")

    def warm_up(self) -> None:
        """One prediction on the built-in example, so that the first request does not pay for warm-up."""
        self.predict(EXAMPLE_IMAGE.read_bytes(), "warm-up")

    def check_threshold(self, threshold: float | None) -> float:
        t = self.default_threshold if threshold is None else threshold
        if not 0.0 <= t <= 1.0:
            raise ApiError(400, f"threshold must be between 0 and 1, got {t}")
        if t < self.min_threshold:
            raise ApiError(400, f"threshold {t} is below this server's detector floor {self.min_threshold} "
                                "(start the server with a lower --min-threshold)")
        return t

    def predict(self, data: bytes, name: str, threshold: float | None = None, max_faces: int | None = None,
                with_annotated: bool = False) -> dict[str, Any]:
        """Decode and run one image; the JSON of ImageResult.to_json(), plus "annotated_jpeg" (base64)
        when asked. Raises ApiError for anything that is not a usable image."""
        t = self.check_threshold(threshold)
        try:  # decoded only as far as the answer needs; the annotated copy is drawn on the full-size image
            image = LazyImage.from_bytes(data, name, max_pixels=self.max_pixels)
            result = self._request_predictor(t, max_faces).predict_image(image)
            out = result.to_json()
            if with_annotated:
                out["annotated_jpeg"] = jpeg_base64(annotate(image.full(), result.faces))
        except ImageLoadError as exc:
            raise image_error(exc) from None
        return out

    def _request_predictor(self, threshold: float, max_faces: int | None) -> Predictor:
        """A shallow copy of the shared Predictor with this request's threshold and face cap; it shares the
        loaded detector and model (nothing is loaded again) and selects faces exactly as `predict` does."""
        view = copy.copy(self.predictor)
        view.detector = _Thresholded(self.predictor.detector, threshold)
        if max_faces is not None:
            view.max_faces = max_faces if view.max_faces is None else min(max_faces, view.max_faces)
        return view

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class _Thresholded:
    """A detector that keeps only the detections of another with score >= threshold (order kept)."""

    def __init__(self, detector: FaceDetector, threshold: float) -> None:
        self.base, self.threshold, self.name = detector, threshold, detector.name

    def detect(self, image: np.ndarray, **kwargs: object) -> list[Detection]:  # kwargs: original_size
        return [d for d in self.base.detect(image, **kwargs) if d.score >= self.threshold]  # type: ignore[call-arg]

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        return input_size(self.base, width, height)


def jpeg_base64(rgb: np.ndarray, quality: int = 88) -> str:
    """An (H, W, 3) uint8 RGB image as a base64 JPEG string."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode("ascii")
