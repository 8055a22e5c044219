"""The demo loop: frames in, tracked and smoothed "age, gender" readings out (window, video, JSON lines).

Detection runs every `detect_every` frames (and on every frame while no face is tracked); in between,
tracks move at constant velocity and keep their last reading, or are re-estimated on their predicted
boxes with `reestimate=True`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from ..align import crop_faces
from ..draw import annotate
from ..inference.predictor import Predictor
from ..types import Detection, FacePrediction, Gender, Preprocessing
from .tracking import Tracker, appearance_descriptor
from .video import Frame, Prefetch, VideoError, VideoWriter

#: crop for the tracker's appearance descriptor: small, aligned, with hair and outline, compared in CIELAB.
#: Measured on a moving-portrait mp4 clip: one person's detections correlate >= 0.73 (lowest at the frame
#: edge), and 40 real portraits pairwise 0.55 on average; the tracker splits below 0.6.
DESCRIPTOR_CROP = Preprocessing(crop="align5", margin=0.3, size=16)


def face_descriptors(image: np.ndarray, dets: list[Detection]) -> list[np.ndarray]:
    """Appearance descriptors of an RGB frame's detections (see tracking.appearance_descriptor)."""
    if not dets:
        return []
    return [appearance_descriptor(cv2.cvtColor(c, cv2.COLOR_RGB2LAB)) for c in crop_faces(image, dets, DESCRIPTOR_CROP)]


def female_probability(face: FacePrediction) -> float:
    return face.gender_probability if face.gender is Gender.FEMALE else 1.0 - face.gender_probability


@dataclass
class TrackedFace:
    """A face in one frame: its track id, the smoothed reading, and this frame's own estimate (or None)."""

    track: int
    face: FacePrediction
    raw: FacePrediction | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"track": self.track, **self.face.to_json()}
        d["raw_age"] = round(self.raw.age, 1) if self.raw else None
        d["raw_gender_probability"] = round(female_probability(self.raw), 4) if self.raw else None  # P(female)
        raw_range = self.raw.age_range if self.raw else None
        d["raw_age_range"] = [round(v, 1) for v in raw_range] if raw_range else None
        return d


@dataclass
class FrameResult:
    """Everything known about one frame; `to_json()` is the demo's JSONL line."""

    frame: int
    time: float
    width: int
    height: int
    detected: bool = False
    faces: list[TrackedFace] = field(default_factory=list)
    name: str = ""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"frame": self.frame, "time": round(self.time, 3), "width": self.width,
                             "height": self.height, "detected": self.detected,
                             "faces": [f.to_json() for f in self.faces]}
        if self.name:
            d["image"] = self.name
        if self.error is not None:
            d["error"] = self.error
        return d


class DemoRunner:
    """Per-frame detection, tracking and smoothing around a Predictor.

    detect_every: run the detector on every N-th frame (1: every frame). reestimate: on frames without
    detection, estimate age and gender again on the tracks' predicted boxes (else reuse the last reading).
    """

    def __init__(self, predictor: Predictor, *, detect_every: int = 1, reestimate: bool = False,
                 tracker: Tracker | None = None) -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        self.predictor = predictor
        self.detect_every = detect_every
        self.reestimate = reestimate
        self.tracker = tracker or Tracker()
        self._last_detect: int | None = None

    def reset(self) -> None:
        """Forget all tracks (for unrelated pictures, e.g. the images of a folder)."""
        self.tracker.reset()
        self._last_detect = None

    def process(self, image: np.ndarray, index: int) -> tuple[list[TrackedFace], bool]:
        """(H, W, 3) uint8 RGB frame number `index` -> its tracked faces and whether the detector ran."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {image.shape} {image.dtype}")
        due = self._last_detect is None or index - self._last_detect >= self.detect_every
        if due or not self.tracker.active:
            return self._detect(image, index), True
        tracks = self.tracker.active
        raws: list[FacePrediction | None] = [None] * len(tracks)
        if self.reestimate and tracks:
            raws = list(self.predictor.estimate_faces(image, [t.predicted_detection(index) for t in tracks]))
            for t, f in zip(tracks, raws):
                t.add_estimate(f.age, female_probability(f), f.age_range)
        out = []
        for t, raw in zip(tracks, raws):
            face = t.face(index)
            if face is not None:
                out.append(TrackedFace(t.id, face, raw))
        return out, False

    def _detect(self, image: np.ndarray, index: int) -> list[TrackedFace]:
        self._last_detect = index
        dets = self.predictor.detector.detect(image)
        if self.predictor.max_faces is not None:
            dets = dets[: self.predictor.max_faces]
        faces = self.predictor.estimate_faces(image, dets)
        tracks = self.tracker.update(dets, index, face_descriptors(image, dets))
        out = []
        for t, f in zip(tracks, faces):
            t.add_estimate(f.age, female_probability(f), f.age_range)
            smoothed = t.face(index)
            assert smoothed is not None
            out.append(TrackedFace(t.id, smoothed, f))
        return out


class FpsMeter:
    """Frames per second over the last `n` frames (wall clock)."""

    def __init__(self, n: int = 30) -> None:
        self.times: deque[float] = deque(maxlen=n + 1)

    def tick(self) -> float:
        self.times.append(time.perf_counter())
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / max(self.times[-1] - self.times[0], 1e-9)


def draw_frame(image: np.ndarray, faces: list[TrackedFace], fps: float | None) -> np.ndarray:
    """A copy of the frame with boxes, "age, gender #track" labels and the frame rate drawn on it."""
    out = annotate(image, [f.face for f in faces], [f"#{f.track}" for f in faces])
    if fps is not None:
        scale = max(0.5, max(image.shape[:2]) / 1000)
        text = f"{fps:.1f} fps"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(out, (0, 0), (tw + 8, th + base + 8), (0, 0, 0), -1)
        cv2.putText(out, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


@dataclass
class DemoSummary:
    """frames: processed; skipped: failed to read or process; tracks: ids given; fps: mean over the run."""

    frames: int = 0
    skipped: int = 0
    tracks: int = 0
    seconds: float = 0.0
    stopped_by_user: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def require_display() -> None:
    """Raise VideoError when there is clearly no screen to open a window on (Linux without X or Wayland)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise VideoError("no display to open a window on; use --no-window (with --output and/or --jsonl)")


class _Window:
    """The OpenCV window; created only when asked for, so headless runs never touch highgui."""

    def __init__(self, name: str) -> None:
        require_display()
        self.name = name
        try:
            cv2.namedWindow(name, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise VideoError(f"cannot open a window ({str(exc).strip().splitlines()[-1]}); use --no-window") from None

    def show(self, rgb: np.ndarray, wait_ms: int) -> bool:
        """Show a frame; False when the user asks to quit (q, Esc, or closing the window)."""
        cv2.imshow(self.name, np.ascontiguousarray(rgb[..., ::-1]))
        key = cv2.waitKey(wait_ms) & 0xFF
        if key in (ord("q"), ord("Q"), 27):
            return False
        return cv2.getWindowProperty(self.name, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        cv2.destroyWindow(self.name)


def run_demo(
    source: Iterable[Frame],
    predictor: Predictor,
    *,
    detect_every: int = 1,
    reestimate: bool = False,
    tracker: Tracker | None = None,
    window: bool = True,
    output: str | None = None,
    output_fps: float | None = None,
    jsonl: str | None = None,
    show_fps: bool = True,
    progress: bool = True,
    err: IO[str] | None = None,
) -> DemoSummary:
    """Run the demo over a source (VideoSource, FolderSource or any iterable of Frames) until it ends or
    the user quits. Bad frames are reported on `err` and skipped. Returns counts and the mean frame rate."""
    from tqdm import tqdm

    err = err or sys.stderr
    if window:
        require_display()
    still = bool(getattr(source, "still", False))
    runner = DemoRunner(predictor, detect_every=1 if still else detect_every, reestimate=reestimate, tracker=tracker)
    fps_src = float(getattr(source, "fps", 0.0) or 0.0)
    writer = VideoWriter(output, output_fps or fps_src or (1.0 if still else 25.0), background=True) if output else None
    if not getattr(source, "live", True):
        source = Prefetch(source)
    # the frames' JSON lines go to a hidden partial file, renamed to `jsonl` however the run ends (the video's
    # end, the user's q or Ctrl-C, an error): the file under that name always holds whole lines
    lines_tmp = Path(jsonl).with_name(f".{Path(jsonl).name}.partial") if jsonl else None
    lines: IO[str] | None = open(lines_tmp, "w", encoding="utf-8") if lines_tmp else None  # noqa: SIM115
    win = _Window("agegender demo") if window else None
    total = getattr(source, "frame_count", None)
    bar = tqdm(total=total, unit="frame", desc="demo", file=err, disable=not progress or window)
    meter, summary = FpsMeter(), DemoSummary()
    start = time.perf_counter()
    try:
        for frame in source:
            result = _process_frame(runner, frame, still)
            bar.update(1)
            if result.error is not None:
                summary.skipped += 1
                bar.write(f"agegender demo: {result.error}", file=err)
            if lines is not None:
                lines.write(json.dumps(result.to_json()) + "\n")
            if result.error is not None or frame.image is None:
                continue
            summary.frames += 1
            fps = meter.tick()
            if writer is None and win is None:
                continue
            shown = draw_frame(frame.image, result.faces, fps if show_fps and not still else None)
            if writer is not None:
                writer.write(shown)
            if win is not None and not win.show(shown, 0 if still else 1):
                summary.stopped_by_user = True
                break
    finally:
        summary.seconds = time.perf_counter() - start
        summary.tracks = runner.tracker.created
        bar.close()
        if writer is not None:
            writer.close()
        if lines is not None:
            lines.close()
            os.replace(lines_tmp, jsonl)  # type: ignore[arg-type]
        if win is not None:
            win.close()
    return summary


def _process_frame(runner: DemoRunner, frame: Frame, still: bool) -> FrameResult:
    """One frame through the runner; a failure becomes FrameResult.error (one line), never an exception."""
    h, w = frame.image.shape[:2] if frame.image is not None else (0, 0)
    result = FrameResult(frame.index, frame.time, w, h, name=frame.name if still else "")
    if frame.image is None:
        result.error = frame.error or f"frame {frame.index}: no image"
        return result
    try:
        if still:
            runner.reset()
        result.faces, result.detected = runner.process(frame.image, frame.index)
    except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the stream
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        result.error = f"frame {frame.index}: {msg}; skipped"
    return result
