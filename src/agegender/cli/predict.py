"""`agegender predict`: images, folders, globs and @lists in; table, JSONL, CSV or Parquet out; annotated copies;
on this machine or on a Ray cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import positive_int

EXAMPLE_IMAGE = Path(__file__).resolve().parent.parent / "assets" / "example.jpg"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="estimate age and gender of every face in images, folders or globs")
    p.add_argument("inputs", nargs="*", help="image files, folders, glob patterns, @FILE (a text file of inputs, one "
                   "per line) or - (one image piped to standard input) (default: built-in example)")
    p.add_argument("--model", default="default", help="built-in name, weights file or run folder")
    p.add_argument("--detector", default="retinaface", help="retinaface (default) or dlib-hog")
    p.add_argument("--format", choices=["table", "jsonl", "csv", "parquet"], default="table",
                   help="parquet: -o names a folder of Parquet files; rerunning into it skips the images already "
                        "there (resumes a killed run)")
    p.add_argument("-o", "--output", help="write results here instead of standard output (complete files only: "
                   "a killed jsonl or csv run resumes when the same command runs again)")
    p.add_argument("--save-dir", help="write annotated copies of the images into this folder")
    p.add_argument("--max-faces", type=int, help="keep the N largest faces per image")
    p.add_argument("--min-face", type=float, default=10.0,
                   help="skip faces whose shorter side is under this many pixels (default 10; counted)")
    p.add_argument("--threshold", type=float, help="detector score threshold (0..1)")
    p.add_argument("--max-side", type=positive_int, metavar="PIXELS",
                   help="the detector's first look at each image is scaled to at most this on its longer side "
                   "(default 640; --fast 320); where it finds small faces or none in a big photo, it looks "
                   "again at finer scales (crowds, class photos)")
    p.add_argument("--single-pass", action="store_true",
                   help="one detection pass at --max-side: no finer passes (predictable time per photo)")
    p.add_argument("--flip-tta", action="store_true", help="average each face with its mirror image")
    p.add_argument("--fast", action="store_true",
                   help="faster, slightly less accurate: the 'fast' model, a 320 px detector input and each "
                        "face averaged with its mirror image (with --model: only the detector input; see README, "
                        "Benchmarks)")
    p.add_argument("--workers", type=positive_int, default=2, help="decoding and detection threads (default 2)")
    p.add_argument("--device", default="cpu",
                   help="cpu (default), or cuda / cuda:N: onnxruntime's CUDA provider (needs onnxruntime-gpu)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local (default): threads on this machine; ray: Ray Data on a Ray cluster (agegender[ray]; "
                        "docs/ray.md)")
    p.add_argument("--address", help="with --engine ray: the cluster's address HOST:PORT or 'auto' (default: "
                   "$RAY_ADDRESS, else a new local cluster)")
    p.add_argument("--num-workers", type=positive_int,
                   help="with --engine ray: actors, each loading the model once (default: one per cluster CPU)")
    p.add_argument("--part-size", type=positive_int, default=1000,
                   help="with --format parquet: images per Parquet file (default 1000): what a killed run can lose")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_predict)


def cmd_predict(a: argparse.Namespace) -> int:
    from ..inference.batch import run_predict

    inputs = a.inputs or [str(EXAMPLE_IMAGE)]
    return run_predict(
        inputs, model=a.model, detector=a.detector, fmt=a.format, output=a.output, save_dir=a.save_dir,
        max_faces=a.max_faces, min_face=a.min_face, threshold=a.threshold, flip_tta=a.flip_tta, max_side=a.max_side,
        refine_small_faces=not a.single_pass,
        progress=not a.no_progress, fast=a.fast, workers=a.workers, device=a.device, engine=a.engine,
        address=a.address, num_workers=a.num_workers, part_images=a.part_size,
    )
