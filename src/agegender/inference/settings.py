"""PredictorSpec: how to build a Predictor, as plain values that travel to other processes (Ray workers) and
into a results folder's record, so that every worker builds the same Predictor and a resumed run uses the
settings of the run it continues."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .predictor import Predictor

#: what `predict --fast` runs: the built-in "fast" model (instead of "default"), RetinaFace on the image
#: scaled so its longer side (with the detector's padding) is at most this many pixels (instead of 640), and
#: each face averaged with its mirror image. The mirror costs the 80 px network little and helps it where it
#: does not help the default: end to end on UTKFace val and AAF val (2026-12-07, a rule written before the
#: numbers) ages 0.14 and 0.12 years closer, gender 0.4 and 0.9 points more often right
FAST_MODEL, FAST_DETECTOR_SIDE, FAST_FLIP_TTA = "fast", 320, True


def use_fast_detector(predictor: Predictor) -> None:
    """Cap the predictor's RetinaFace input side at FAST_DETECTOR_SIDE (other detectors are left as they are)."""
    if hasattr(predictor.detector, "max_side"):
        predictor.detector.max_side = min(predictor.detector.max_side, FAST_DETECTOR_SIDE)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class PredictorSpec:
    """The arguments of `Predictor(...)` (onnxruntime's `threads` per session, `device`) plus `fast` (see
    FAST_MODEL: its model, detector side and flip; a `detector_max_side` named here wins over its side).

    model: a built-in name or a weights file / run folder; `resolved()` makes a path absolute, so that
    workers started elsewhere find the same file (it must exist at that path on every node).
    """

    model: str = "default"
    detector: str = "retinaface"
    score_threshold: float | None = None
    max_faces: int | None = None
    min_face: float = 10.0
    detector_max_side: int | None = None
    refine_small_faces: bool = True
    flip_tta: bool = False
    fast: bool = False
    threads: int | None = None
    device: str = "cpu"

    def resolved(self) -> PredictorSpec:
        """The same spec with `fast`'s model and flip chosen (when no other model is named: then `fast` only
        caps the detector's input) and a model path made absolute."""
        preset = self.fast and self.model == "default"
        model = FAST_MODEL if preset else self.model
        if Path(model).exists():
            model = str(Path(model).resolve())
        flip = self.flip_tta or (preset and FAST_FLIP_TTA)
        return PredictorSpec(**{**asdict(self), "model": model, "flip_tta": flip})

    def build(self) -> Predictor:
        """A Predictor as this spec says (model and detector loaded now)."""
        spec = self.resolved()
        predictor = Predictor(spec.model, spec.detector, score_threshold=spec.score_threshold,
                              max_faces=spec.max_faces, min_face=spec.min_face,
                              detector_max_side=spec.detector_max_side,
                              refine_small_faces=spec.refine_small_faces, flip_tta=spec.flip_tta,
                              device=spec.device, threads=spec.threads)
        if spec.fast and spec.detector_max_side is None:  # a side named outright wins over --fast's cap
            use_fast_detector(predictor)
        return predictor


def predictor_settings(predictor: Predictor) -> dict[str, Any]:
    """What decides a Predictor's results, as JSON values: the detector's name, threshold and input side, and
    the face selection and flip settings (the model is recorded by name and version separately)."""
    det = predictor.detector
    return {
        "detector": getattr(det, "name", type(det).__name__),
        "score_threshold": getattr(det, "score_threshold", predictor.score_threshold),
        "detector_max_side": getattr(det, "max_side", None),
        "refine_small_faces": predictor.refine_small_faces,
        "min_face": predictor.min_face,
        "max_faces": predictor.max_faces,
        "flip_tta": predictor.flip_tta,
    }
