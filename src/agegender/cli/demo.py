"""`agegender demo`: live age and gender on a webcam, a video file or stream, or a folder of images."""

from __future__ import annotations

import argparse
import sys

from .args import positive_int

DEMO_MAX_SIDE = 384  # RetinaFace's input side on video: a webcam face is large, and every frame counts


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="live demo: webcam, video or folder with tracked, smoothed age and gender per person",
        description="Shows boxes with 'age, gender #track' labels and the frame rate. Keys: q or Esc quits; "
        "with --dir any other key shows the next image.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", type=int, default=0, help="camera index (default 0)")
    src.add_argument("--video", help="video file or stream URL")
    src.add_argument("--dir", help="folder of images, shown one at a time")
    p.add_argument("--model", default="default", help="built-in name, weights file or run folder")
    p.add_argument("--detector", default="retinaface", help="retinaface (default) or dlib-hog")
    p.add_argument("--detect-every", type=positive_int, default=2, metavar="N",
                   help="run the detector on every N-th frame and track in between (default 2)")
    p.add_argument("--reestimate", action="store_true",
                   help="estimate age and gender on every frame, also between detections (slower)")
    p.add_argument("--max-side", type=positive_int,
                   help="RetinaFace input's longer side in pixels (smaller: faster, misses small faces; default "
                   f"{DEMO_MAX_SIDE})")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="inference threads (default 1: leaves a core for decoding and drawing, and the least "
                   "CPU wasted on a busy machine)")
    p.add_argument("--smooth", type=positive_int, default=10, metavar="K", help="average each person's last K readings")
    p.add_argument("--max-faces", type=int, help="follow at most the N largest faces")
    p.add_argument("--threshold", type=float, help="detector score threshold (0..1)")
    p.add_argument("-o", "--output", help="write the annotated video here (.mp4, .avi, .mov)")
    p.add_argument("--output-fps", type=float, help="frame rate of the written video (default: the source's)")
    p.add_argument("--jsonl", help="write one JSON line per frame (faces with track ids) here")
    p.add_argument("--no-window", action="store_true", help="run headless (no window; for servers and tests)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)


def cmd_demo(a: argparse.Namespace) -> int:
    from ..demo import Tracker, open_source, run_demo
    from ..demo.runner import require_display
    from ..inference.predictor import Predictor

    if a.detect_every < 1 or a.smooth < 1 or a.threads < 1:
        raise ValueError("--detect-every, --smooth and --threads must be >= 1")
    if not a.no_window:
        require_display()
    source = open_source(a.camera, a.video, a.dir)
    side = a.max_side or (DEMO_MAX_SIDE if a.detector == "retinaface" else None)
    predictor = Predictor(a.model, a.detector, score_threshold=a.threshold, max_faces=a.max_faces,
                          detector_max_side=side, refine_small_faces=False, threads=a.threads)
    summary = run_demo(
        source, predictor, detect_every=a.detect_every, reestimate=a.reestimate, tracker=Tracker(window=a.smooth),
        window=not a.no_window, output=a.output, output_fps=a.output_fps, jsonl=a.jsonl,
        progress=not a.no_progress,
    )
    print(f"agegender demo: {summary.frames} frame(s) processed, {summary.skipped} skipped, "
          f"{summary.tracks} track(s), {summary.fps:.1f} fps", file=sys.stderr)
    if a.output and summary.frames:
        print(f"annotated video: {a.output}", file=sys.stderr)
    return 1 if summary.skipped else 0
