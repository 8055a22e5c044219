"""Predictor: image in, faces with age and gender out. Detector and estimator are loaded once.

    >>> from agegender import Predictor
    >>> p = Predictor()                      # default model, RetinaFace detector
    >>> result = p.predict("photo.jpg")      # ImageResult with .faces

An image file is decoded only as far as the answer needs (`agegender.lazyimage`): the detector runs on a
reduced decode of a large JPEG, and each face is cut from a decode with enough pixels for the model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..align import crop_faces
from ..detectors import create_detector
from ..detectors.base import FaceDetector, detect_faces, select_faces
from ..imageio import ImageLoadError, array_to_rgb
from ..lazyimage import LazyImage, as_lazy_image, crop_faces_from
from ..models.estimator import Estimator, load_estimator
from ..types import Detection, FacePrediction, Gender, ImageResult

#: faces cropped and estimated at a time
FACE_BATCH = 64


class Predictor:
    """Detects faces, crops each as its model's stored preprocessing says, estimates all of an image's
    faces in one batch.

    model: built-in name, weights file (.onnx/.safetensors) or training run folder.
    detector: detector name or a ready FaceDetector. max_faces: keep the largest N faces per image.
    min_face: skip faces whose shorter box side is under this many pixels (counted in `skipped_faces`).
    score_threshold: the least detector score (0..1) a face must exceed: RetinaFace's own threshold when the
    detector is named "retinaface"; for any other detector, faces scored at or under it are dropped after
    detection (`self.score_threshold`; None: the detector's own default).
    detector_max_side: RetinaFace sees the image scaled so its longer side is at most this many pixels
    (default 640; its first pass, see refine_small_faces).
    refine_small_faces: when a big photo's first pass finds small faces (or none), look again at finer
    scales (`detectors.detect_faces`): a class photo's or a crowd's faces are found; a portrait costs nothing
    more. False: one pass (the live demo, where each frame counts).
    flip_tta: average each face with its mirror image (slower, slightly more accurate).
    device: cpu, or cuda[:N] for the detector and an .onnx model on onnxruntime's CUDA provider (needs the
    onnxruntime-gpu package; a clear RuntimeError otherwise). threads: onnxruntime threads per session.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Estimator = "default",
        detector: str | FaceDetector = "retinaface",
        *,
        score_threshold: float | None = None,
        max_faces: int | None = None,
        min_face: float = 10.0,
        detector_max_side: int | None = None,
        refine_small_faces: bool = True,
        flip_tta: bool = False,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        check_settings(score_threshold, max_faces, min_face, detector_max_side)
        self.estimator = model if hasattr(model, "estimate") else load_estimator(model, device, threads)  # type: ignore[arg-type]
        if isinstance(detector, str):
            kwargs: dict[str, object] = {"max_faces": None, "min_face": 0.0}  # the predictor selects and counts
            if score_threshold is not None and detector == "retinaface":
                kwargs["score_threshold"] = score_threshold
            if threads and detector == "retinaface":
                kwargs["threads"] = threads
            if device != "cpu" and detector == "retinaface":
                kwargs["device"] = device
            detector = create_detector(detector, **kwargs)
            score_threshold = None if "score_threshold" in kwargs else score_threshold  # taken by the detector
        if detector_max_side is not None:
            if not hasattr(detector, "max_side"):
                raise ValueError(f"detector_max_side (--max-side) sets RetinaFace's input size; the "
                                 f"{getattr(detector, 'name', type(detector).__name__)} detector has none")
            detector.max_side = detector_max_side  # type: ignore[attr-defined]
        self.detector = detector
        self.refine_small_faces = refine_small_faces
        self.score_threshold = score_threshold
        self.max_faces = max_faces
        self.min_face = min_face
        self.flip_tta = flip_tta

    @property
    def preprocessing(self):  # -> Preprocessing
        return self.estimator.preprocessing

    def estimate_faces(self, image: np.ndarray | LazyImage, detections: list[Detection]) -> list[FacePrediction]:
        """Age and gender for given detections (in original pixels) of an (H, W, 3) uint8 RGB image or a lazy
        image (each face cut from a view with enough pixels), `FACE_BATCH` faces at a time."""
        if self.max_faces is not None:
            detections = detections[: self.max_faces]
        faces = []
        for i in range(0, len(detections), FACE_BATCH):  # bounded memory however many faces an image holds
            part = detections[i : i + FACE_BATCH]
            faces += face_predictions(part, *self.estimate_crops(self.crop(image, part)))
        return faces

    def crop(self, image: np.ndarray | LazyImage, detections: list[Detection]) -> np.ndarray:
        """The model's (N, size, size, 3) uint8 RGB crops of the detections, cut as its preprocessing says."""
        if isinstance(image, LazyImage):
            return crop_faces_from(image, detections, self.preprocessing)
        return crop_faces(image, detections, self.preprocessing)

    def estimate_crops(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(N,) ages, (N,) P(female) and (N, 2) age ranges (None if the model's record has none) of ready
        crops."""
        out = self.estimator.estimate(crops, flip_tta=self.flip_tta)
        return out.ages, out.p_female, out.age_ranges

    def detect(self, image: LazyImage) -> tuple[list[Detection], dict[str, int]]:
        """The faces to estimate (largest first, in original pixels) and the skipped counts, as `predict`
        selects them. Raises ImageLoadError if the image cannot be decoded."""
        found = detect_faces(self.detector, image, refine=self.refine_small_faces)
        if self.score_threshold is not None:
            found = [d for d in found if d.score > self.score_threshold]
        return select_faces(found, self.min_face, self.max_faces)

    def predict_image(self, image: LazyImage) -> ImageResult:
        """Faces of a lazily decoded image (see agegender.lazyimage): detection on the coarsest view the
        detector can use, each face cut from a view with enough pixels for the model; boxes and landmarks in
        the original image's pixels. Raises ImageLoadError if the image cannot be decoded."""
        dets, skipped = self.detect(image)
        faces = self.estimate_faces(image, dets)
        return ImageResult(image.name, image.width, image.height, faces, skipped_faces=skipped)

    def predict_array(self, image: np.ndarray, name: str = "<array>") -> ImageResult:
        """Faces of an (H, W, 3) uint8 RGB array (or (H, W) grey, (H, W, 4) RGBA: see as_lazy_image)."""
        return self.predict_image(LazyImage.from_array(array_to_rgb(image), name))

    def predict(self, source: str | os.PathLike[str] | bytes | BinaryIO | np.ndarray | LazyImage | Any
                ) -> ImageResult:
        """Faces of one image: a file path, encoded bytes or a binary file object (decoded only as far as the
        answer needs), a PIL image, a uint8 RGB/grey/RGBA array, or a LazyImage (see `as_lazy_image`). A bad
        file raises ImageLoadError; what is not an image at all, TypeError."""
        return self.predict_image(as_lazy_image(source))

    def predict_many(self, paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[ImageResult, LazyImage | None]]:
        """Yield (result, image) per path, in order; an unreadable file yields a result with .error set
        and image None, and the rest go on. The image is a LazyImage: `image.full()` (or np.asarray(image))
        decodes it at full size, e.g. to draw on a copy of it."""
        for p in paths:
            try:
                image = LazyImage.open(p)
                result = self.predict_image(image)
            except ImageLoadError as exc:
                yield ImageResult(str(p), 0, 0, [], error=str(exc)), None
                continue
            yield result, image


MIN_DETECTOR_SIDE = 32  # pixels: below this RetinaFace's coarsest anchors see nothing


def check_settings(score_threshold: float | None, max_faces: int | None, min_face: float,
                   detector_max_side: int | None = None) -> None:
    """ValueError, in one line naming the setting and its CLI flag, for settings out of range (a threshold
    above 1 would silently find nothing)."""
    if detector_max_side is not None and detector_max_side < MIN_DETECTOR_SIDE:
        raise ValueError(f"detector_max_side (--max-side) must be at least {MIN_DETECTOR_SIDE} pixels, "
                         f"got {detector_max_side}")
    if max_faces is not None and max_faces < 0:
        raise ValueError(f"max_faces (--max-faces) must be 0 or more, got {max_faces}")
    if min_face < 0:
        raise ValueError(f"min_face (--min-face) must be 0 or more pixels, got {min_face:g}")
    if score_threshold is None:
        return
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold (--threshold) is a detector score within 0..1, got {score_threshold:g}")


def face_predictions(detections: list[Detection], ages: np.ndarray, p_female: np.ndarray,
                     age_ranges: np.ndarray | None = None) -> list[FacePrediction]:
    """FacePredictions from detections and the estimator's (N,) ages, P(female) and (N, 2) age ranges (or
    None), in the same order."""
    out = []
    for i, (det, age, pf) in enumerate(zip(detections, ages, p_female)):
        g = Gender.FEMALE if pf >= 0.5 else Gender.MALE
        span = None if age_ranges is None else (float(age_ranges[i, 0]), float(age_ranges[i, 1]))
        out.append(FacePrediction(det, float(age), g, float(pf if g is Gender.FEMALE else 1.0 - pf), span))
    return out


def expand_inputs(inputs: Iterable[str | os.PathLike[str]], lists: bool = True) -> list[str]:
    """Files, folders (searched recursively for images), glob patterns and @lists -> list of paths, in order.

    Explicitly named files are kept whatever their suffix (so a bad one is reported, not silently dropped).
    `@FILE` (unless a file of that very name exists) names a text file of inputs, one per line (files, folders
    or globs, as if given here; blank lines and lines starting with # are ignored; a line is never itself read
    as a list); a missing list raises FileNotFoundError. lists=False: `@` has no special meaning.
    """
    import glob

    from ..imageio import is_image_path

    out: list[str] = []
    for item in inputs:
        s = str(item)
        if lists and s.startswith("@") and len(s) > 1 and not Path(s).exists():
            out.extend(expand_inputs(read_path_list(s[1:]), lists=False))
            continue
        p = Path(s)
        if p.is_dir():
            out.extend(str(f) for f in sorted(p.rglob("*")) if f.is_file() and is_image_path(f))
        elif p.exists():
            out.append(s)
        elif any(c in s for c in "*?["):
            matches = sorted(glob.glob(s, recursive=True))
            out.extend(m for m in matches if Path(m).is_file())
        else:
            out.append(s)  # reported as missing when read
    return out


def read_path_list(path: str | os.PathLike[str]) -> list[str]:
    """The inputs listed in a text file, one per line (blank lines and # comments left out; whitespace at the
    ends of a line is stripped)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"@{p}: no such list of inputs")
    lines = (line.strip() for line in p.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]
