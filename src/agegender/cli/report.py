"""`agegender report`: the make-up of a photo collection from `predict` results, as an HTML page, PNGs and CSV."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="age pyramid, faces per image, folders, scores of a collection's results "
                                      "(HTML page, PNG, CSV)")
    p.add_argument("results", help="predict's results: a .jsonl file (--format jsonl) or Parquet (--format parquet "
                                   "folder, or a .parquet file)")
    p.add_argument("-o", "--out", default="report", help="report folder (default: ./report)")
    p.add_argument("--low-confidence", type=float, default=0.75,
                   help="a gender probability under this counts as low-confidence (default 0.75)")
    p.set_defaults(func=cmd_report)


def cmd_report(a: argparse.Namespace) -> int:
    from ..evaluation.collection_report import write_report

    if not 0.5 <= a.low_confidence <= 1.0:
        raise ValueError(f"--low-confidence must be between 0.5 and 1, got {a.low_confidence}")
    page = write_report(a.results, a.out, a.low_confidence)
    print(f"report written to {page} (PNG plots, the CSV behind each, summary.json)")
    return 0
