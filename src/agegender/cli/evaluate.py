"""`agegender evaluate`: metrics report of a model on a prepared dataset split; `agegender compare`: two such
reports of one split, paired face by face."""

from __future__ import annotations

import argparse
import json
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


def add_compare_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="is model B better than A on the same faces? two `evaluate` reports, "
                                       "paired, with bootstrap intervals")
    p.add_argument("a", help="`evaluate` report folder (or its predictions.csv) of model A")
    p.add_argument("b", help="the same for model B, on the same split")
    p.add_argument("--names", default="A,B", help="two comma-separated names for the table (default: A,B)")
    p.add_argument("--level", type=float, default=0.95, help="interval coverage (default 0.95)")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON instead of a table")
    p.set_defaults(func=cmd_compare)


def cmd_compare(a: argparse.Namespace) -> int:
    from ..evaluation.compare import compare, load_predictions, markdown

    names = a.names.split(",")
    if len(names) != 2:
        raise ValueError(f"--names takes two comma-separated names, got {a.names!r}")
    result = compare(load_predictions(a.a), load_predictions(a.b), a.level)
    print(json.dumps(result, indent=2) if a.json else markdown(result, *names))
    return 0
