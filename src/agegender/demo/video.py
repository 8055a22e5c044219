"""Frame sources (camera, video file or stream URL, folder of images) and an annotated-video writer.

Every failure is reported as a one-line VideoError (or a Frame with .error for one bad frame), never a
traceback. Frames are (H, W, 3) uint8 RGB arrays.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..imageio import ImageLoadError, load_image
from ..inference.predictor import expand_inputs

#: consecutive undecodable frames after which a video is given up as ended
MAX_BAD_FRAMES = 25

#: output suffix -> FourCC the bundled FFmpeg can write (checked: mp4v in .mp4/.mov, MJPG/XVID in .avi)
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


class VideoError(RuntimeError):
    """A source or output that cannot be opened; the message says why in one line."""


@dataclass
class Frame:
    """One input frame: index from 0, time in seconds, RGB image (None when it failed, with .error)."""

    index: int
    time: float
    image: np.ndarray | None
    name: str = ""
    error: str | None = None


@contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log (not FFmpeg's) for the duration; our error says what went wrong."""
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is None:
        yield
        return
    level = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        log.setLogLevel(level)


class VideoSource:
    """A camera (int index), video file or stream URL read with OpenCV. `live`: camera or stream."""

    def __init__(self, target: int | str) -> None:
        self.target = target
        self.live = isinstance(target, int) or "://" in str(target)
        self.still = False
        if isinstance(target, int):
            with quiet_opencv():  # OpenCV logs a page of backend errors for a missing camera
                cap = cv2.VideoCapture(target)
            if cap.isOpened():
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep latency low: always the newest frame
            what = f"camera {target}"
            why = "no such camera, or it is in use by another program"
        else:
            if "://" not in target and not Path(target).exists():
                raise VideoError(f"{target}: no such file")
            if "://" not in target and Path(target).is_dir():
                raise VideoError(f"{target}: is a folder (use --dir for a folder of images)")
            cap = cv2.VideoCapture(target)
            what = target
            why = "not a video OpenCV can decode, or the stream is unreachable"
        if not cap.isOpened():
            raise VideoError(f"cannot open {what}: {why}")
        self.cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else 0.0
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = n if n > 0 and not self.live else None
        self.name = what

    def __iter__(self) -> Iterator[Frame]:
        index, bad, t0 = 0, 0, time.monotonic()
        try:
            while True:
                ok, bgr = self.cap.read()
                if ok and bgr is not None and bgr.ndim == 3 and bgr.shape[2] == 3:
                    bad = 0
                    if self.live:  # seconds since the start, by the clock
                        t = time.monotonic() - t0
                    else:  # position in the file
                        t = index / self.fps if self.fps else self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1e3
                    yield Frame(index, float(t), np.ascontiguousarray(bgr[..., ::-1]), self.name)
                    index += 1
                    continue
                more = self.live or (self.frame_count is not None and index < self.frame_count)
                if not more:
                    return
                bad += 1
                if bad > MAX_BAD_FRAMES:
                    yield Frame(index, 0.0, None, self.name,
                                f"{self.name}: stopped after {MAX_BAD_FRAMES} frames in a row failed to decode")
                    return
                yield Frame(index, 0.0, None, self.name, f"{self.name}: frame {index} could not be decoded; skipped")
                index += 1
        finally:
            self.cap.release()


class FolderSource:
    """The images of a folder (recursively, sorted), one frame each; an unreadable file is a failed frame."""

    live = False
    fps = 0.0
    still = True  # each frame is its own picture: no tracking between them

    def __init__(self, folder: str) -> None:
        p = Path(folder)
        if not p.is_dir():
            raise VideoError(f"{folder}: no such folder")
        self.paths = expand_inputs([folder])
        if not self.paths:
            raise VideoError(f"{folder}: no images in this folder")
        self.frame_count = len(self.paths)
        self.name = folder

    def __iter__(self) -> Iterator[Frame]:
        for i, path in enumerate(self.paths):
            try:
                yield Frame(i, float(i), load_image(path), path)
            except ImageLoadError as exc:
                yield Frame(i, float(i), None, path, str(exc))


class Prefetch:
    """Reads up to `depth` frames ahead of a source in a background thread (decoding overlaps inference:
    OpenCV and onnxruntime release the GIL). For files and folders; a live source would only gain latency."""

    _END = object()

    def __init__(self, source, depth: int = 4) -> None:
        self.source = source
        self.depth = depth
        for attr in ("live", "still", "fps", "frame_count", "name"):
            setattr(self, attr, getattr(source, attr, None))

    def __iter__(self) -> Iterator[Frame]:
        import queue
        import threading

        q: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()

        def put(item: object) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work() -> None:
            try:
                for frame in self.source:
                    if not put(frame):
                        return
                put(self._END)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                put(exc)

        t = threading.Thread(target=work, name="agegender-prefetch", daemon=True)
        t.start()
        try:
            while True:
                item = q.get()
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            t.join(timeout=5)


def open_source(camera: int | None = 0, video: str | None = None, folder: str | None = None):
    """The one source asked for: a folder, else a video/URL, else the camera. -> VideoSource | FolderSource."""
    if folder is not None:
        return FolderSource(folder)
    if video is not None:
        return VideoSource(video)
    return VideoSource(int(camera or 0))


def letterbox(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Fit an image into width x height (aspect kept, black bars); returned as is when it already fits."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    s = min(width / w, height / h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    out = np.zeros((height, width, 3), np.uint8)
    x, y = (width - nw) // 2, (height - nh) // 2
    out[y : y + nh, x : x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


class VideoWriter:
    """Writes RGB frames to a video file (.mp4/.mov: MPEG-4 Part 2, .avi: Motion JPEG).

    The frame size is fixed by the first frame (later frames of another size are letterboxed). The video is
    written under a temporary name and renamed into place by close(), so a file at `path` is always whole.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, background: bool = False) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in FOURCC:
            raise VideoError(f"{path}: unsupported video type {suffix or '(none)'}; use one of {', '.join(FOURCC)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fourcc = FOURCC[suffix]
        self.fps = fps if fps and fps > 0 else 25.0
        self.tmp = self.path.with_name(f".{self.path.stem}.tmp{os.getpid()}{suffix}")
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self._w: cv2.VideoWriter | None = None
        self.background = background
        self._queue = None
        self._thread = None
        self._error: BaseException | None = None

    def write(self, rgb: np.ndarray) -> None:
        """Add one (H, W, 3) uint8 RGB frame. With background=True, encoding runs in a thread (the frame
        must not be modified afterwards)."""
        if self._error is not None:
            raise self._error
        if self._w is None:
            self._open(rgb)
        if self._queue is not None:
            self._queue.put(rgb)
        else:
            self._encode(rgb)
        self.frames += 1

    def _open(self, rgb: np.ndarray) -> None:
        h, w = rgb.shape[:2]
        self.size = (w + w % 2, h + h % 2)  # encoders want even sizes
        self._w = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, self.size)
        if not self._w.isOpened():
            self._w = None
            raise VideoError(f"{self.path}: OpenCV cannot write {self.fourcc} video here; try an .avi name")
        if self.background:
            import queue
            import threading

            self._queue = queue.Queue(maxsize=8)
            self._thread = threading.Thread(target=self._work, name="agegender-writer", daemon=True)
            self._thread.start()

    def _encode(self, rgb: np.ndarray) -> None:
        assert self._w is not None and self.size is not None
        self._w.write(np.ascontiguousarray(letterbox(rgb, *self.size)[..., ::-1]))

    def _work(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self._encode(item)
                except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                    self._error = exc

    def close(self) -> None:
        """Finish the file and move it into place (nothing is written if no frame came)."""
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = self._queue = None
        if self._w is not None:
            self._w.release()
            self._w = None
            os.replace(self.tmp, self.path)
        if self._error is not None:
            raise self._error

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
