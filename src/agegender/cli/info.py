"""`agegender info`: versions, models, detectors, onnxruntime providers and extras: paste into a bug report."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="versions, models, detectors, providers and extras at hand (for bug reports)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=cmd_info)


def cmd_info(a: argparse.Namespace) -> int:
    from ..environment import environment_report, report_lines

    report = environment_report()
    print(json.dumps(report, indent=2) if a.json else "\n".join(report_lines(report)))
    return 0
