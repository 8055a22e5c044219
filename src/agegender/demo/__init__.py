"""Live demo: camera, video file or folder in; tracked, smoothed age and gender per person out."""

from .runner import DemoRunner, DemoSummary, FrameResult, TrackedFace, run_demo
from .tracking import Track, Tracker, iou_matrix
from .video import FolderSource, Frame, VideoError, VideoSource, VideoWriter, open_source

__all__ = ["DemoRunner", "DemoSummary", "FolderSource", "Frame", "FrameResult", "Track", "TrackedFace", "Tracker",
           "VideoError", "VideoSource", "VideoWriter", "iou_matrix", "open_source", "run_demo"]
