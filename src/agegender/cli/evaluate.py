"""`agegender evaluate`: metrics report of a model on a prepared dataset split."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="measure a model on a prepared dataset split (JSON, Markdown, PNG)")
    p.add_argument("model", help="built-in name, weights file or run folder")
    p.add_argument("data", help="prepared dataset folder")
    p.add_argument("--split", default="test")
    p.add_argument("-o", "--out", help="report folder (default: MODEL_RUN/eval-SPLIT or ./eval-SPLIT)")
    p.add_argument("--mode", choices=["auto", "crops", "end-to-end"], default="auto",
                   help="crops: the prepared crops; end-to-end: detect faces in the source images")
    p.add_argument("--detector", default="retinaface", help="end-to-end mode: retinaface (default) or dlib-hog")
    p.add_argument("--fast", action="store_true",
                   help="end-to-end mode: the detector input `predict --fast` uses (320 px)")
    p.add_argument("--flip-tta", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(a: argparse.Namespace) -> int:
    from ..evaluation.report import evaluate_model

    out = a.out
    if out is None:
        base = Path(a.model) if Path(a.model).is_dir() else Path(".")
        out = str(base / f"eval-{a.split}")
    report = evaluate_model(a.model, a.data, a.split, out, mode=a.mode, flip_tta=a.flip_tta,
                            progress=not a.no_progress, detector=a.detector, fast_detector=a.fast)
    print((Path(out) / "report.md").read_text())
    plots = ", ".join(report["plots"]) or "no plots"
    print(f"report written to {out}/ (report.json, report.md, predictions.csv, {plots})")
    if report.get("plots_skipped"):
        print(f"agegender evaluate: plots skipped: {report['plots_skipped']}", file=sys.stderr)
    return 0 if report else 1
