"""Face tracking across video frames and per-track smoothing of age and gender (pure numpy).

A track follows one face: detections are matched to tracks by box overlap (IoU against each track's
constant-velocity prediction), gated by appearance (the correlation of small aligned face crops, so a
different person at the same place starts a new track). Each track keeps its recent age and P(female)
estimates; the smoothed reading is their mean over the last `window` estimates, and so is the smoothed age
range (the mean of the window's lower ends and of its upper ends, when every estimate in it has a range).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..detectors.base import iou_matrix
from ..types import Detection, FacePrediction, Gender


def greedy_match(score: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, col) of an (N, M) score matrix, best first, each row and column used once, score >= threshold."""
    pairs: list[tuple[int, int]] = []
    if score.size == 0:
        return pairs
    order = np.argsort(-score, axis=None, kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    for flat in order:
        r, c = divmod(int(flat), score.shape[1])
        if score[r, c] < threshold:
            break
        if r in used_r or c in used_c:
            continue
        pairs.append((r, c))
        used_r.add(r)
        used_c.add(c)
    return pairs


def appearance_descriptor(crop: np.ndarray) -> np.ndarray:
    """(S, S, C) aligned face crop (any colour space) -> (S*S*C,) float32 zero-mean unit-norm vector;
    the dot product of two is their correlation (1: same picture)."""
    g = np.asarray(crop, np.float32).ravel()
    return _unit(g - g.mean())


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-6 else v


@dataclass
class Track:
    """One face followed over frames. Boxes in pixels; velocity in pixels per frame; ages in years."""

    id: int
    detection: Detection
    frame: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    descriptor: np.ndarray | None = None
    window: int = 10
    missed: int = 0
    hits: int = 1
    ages: deque[float] = field(default_factory=deque)
    p_female: deque[float] = field(default_factory=deque)
    ranges: deque[tuple[float, float] | None] = field(default_factory=deque)

    def predicted_box(self, frame: int) -> np.ndarray:
        """(4,) box extrapolated to `frame` at constant velocity from the last matched detection."""
        return np.asarray(self.detection.box, np.float64) + self.velocity * (frame - self.frame)

    def predicted_detection(self, frame: int) -> Detection:
        """The last detection moved (box and landmarks) to its predicted place at `frame`."""
        if frame == self.frame:
            return self.detection
        old = np.asarray(self.detection.box, np.float64)
        new = self.predicted_box(frame)
        lms = None
        if self.detection.landmarks is not None:
            c_old, c_new = (old[:2] + old[2:]) / 2, (new[:2] + new[2:]) / 2
            s = max(new[2] - new[0], 1.0) / max(old[2] - old[0], 1.0)
            lms = ((self.detection.landmarks - c_old) * s + c_new).astype(np.float32)
        return Detection(box=tuple(float(v) for v in new), score=self.detection.score, landmarks=lms)

    def add_estimate(self, age: float, p_female: float, age_range: tuple[float, float] | None = None) -> None:
        """One frame's reading: age in years, P(female) in 0..1, the model's (low, high) age range in years."""
        self.ages.append(float(age))
        self.p_female.append(float(p_female))
        self.ranges.append(None if age_range is None else (float(age_range[0]), float(age_range[1])))
        while len(self.ages) > self.window:
            self.ages.popleft()
            self.p_female.popleft()
            self.ranges.popleft()

    @property
    def age(self) -> float | None:
        """Smoothed age: mean of the last `window` estimates (None before the first)."""
        return float(np.mean(self.ages)) if self.ages else None

    @property
    def female_probability(self) -> float | None:
        return float(np.mean(self.p_female)) if self.p_female else None

    @property
    def age_range(self) -> tuple[float, float] | None:
        """Smoothed (low, high) years: the means of the window's lower and upper ends; None unless every
        estimate in the window has a range (a model without a calibration gives none)."""
        if not self.ranges or any(r is None for r in self.ranges):
            return None
        low, high = np.mean(np.asarray(self.ranges, np.float64), axis=0)
        return float(low), float(high)

    def face(self, frame: int) -> FacePrediction | None:
        """The smoothed reading as a FacePrediction at the track's (predicted) place in `frame`."""
        age, pf = self.age, self.female_probability
        if age is None or pf is None:
            return None
        g = Gender.FEMALE if pf >= 0.5 else Gender.MALE
        return FacePrediction(self.predicted_detection(frame), age, g, pf if g is Gender.FEMALE else 1.0 - pf,
                              age_range=self.age_range)


class Tracker:
    """IoU tracker with appearance gating.

    iou_threshold: least overlap between a track's predicted box and a detection to match them.
    appearance_threshold: least cosine similarity of descriptors to match (used when both have one);
        lower it to tolerate fast pose or lighting changes, raise it to split different people sooner.
    max_missed: detection rounds a track survives without a match before it is dropped.
    window: estimates averaged per track.
    """

    def __init__(
        self, iou_threshold: float = 0.3, appearance_threshold: float = 0.6, max_missed: int = 2, window: int = 10
    ) -> None:
        self.iou_threshold = iou_threshold
        self.appearance_min = appearance_threshold
        self.max_missed = max_missed
        self.window = window
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        """Forget all tracks (ids keep counting up)."""
        self.tracks = []

    @property
    def created(self) -> int:
        """How many tracks (ids) have been started."""
        return self._next_id - 1

    @property
    def active(self) -> list[Track]:
        """Tracks matched at the last detection round."""
        return [t for t in self.tracks if t.missed == 0]

    def update(
        self, detections: list[Detection], frame: int, descriptors: list[np.ndarray] | None = None
    ) -> list[Track]:
        """Match a frame's detections to tracks; returns one track per detection, in the same order
        (new tracks for unmatched detections). Unmatched tracks age and are dropped after max_missed rounds."""
        descriptors = descriptors if descriptors is not None else [None] * len(detections)
        tracks = self.tracks
        score = np.zeros((len(tracks), len(detections)))
        if tracks and detections:
            score = iou_matrix(np.stack([t.predicted_box(frame) for t in tracks]),
                               np.array([d.box for d in detections]))
            for i, t in enumerate(tracks):
                for j, d in enumerate(descriptors):
                    if t.descriptor is not None and d is not None and float(t.descriptor @ d) < self.appearance_min:
                        score[i, j] = 0.0
        out: list[Track | None] = [None] * len(detections)
        for i, j in greedy_match(score, max(self.iou_threshold, 1e-9)):
            t, det = tracks[i], detections[j]
            dt = max(frame - t.frame, 1)
            v = (np.asarray(det.box, np.float64) - np.asarray(t.detection.box, np.float64)) / dt
            t.velocity = v if t.hits == 1 else 0.5 * t.velocity + 0.5 * v
            t.detection, t.frame, t.missed, t.hits = det, frame, 0, t.hits + 1
            d = descriptors[j]
            if d is not None:  # running average of the appearance: steadier than one frame
                t.descriptor = d if t.descriptor is None else _unit(t.descriptor + d)
            out[j] = t
        matched = {id(t) for t in out if t is not None}
        for t in tracks:
            if id(t) not in matched:
                t.missed += 1
        self.tracks = [t for t in tracks if t.missed <= self.max_missed]
        for j, det in enumerate(detections):
            if out[j] is None:
                t = Track(self._next_id, det, frame, descriptor=descriptors[j], window=self.window)
                self._next_id += 1
                self.tracks.append(t)
                out[j] = t
        return [t for t in out if t is not None]
