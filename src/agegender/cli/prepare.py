"""`agegender prepare`: dataset readers and the prepare step (the old create_db)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .args import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="crop and label a dataset for training (the old create_db)")
    p.add_argument("kind", choices=["utkface", "aaf", "wiki", "imdb", "csv"])
    p.add_argument("source", help="UTKFace folder; AAF folder (with labels.csv); wiki_crop/imdb_crop folder "
                   "(or its .mat); or a labels CSV")
    p.add_argument("-o", "--out", help="output dataset folder (not needed with --dry-run)")
    p.add_argument("--split-file", help="UTKFace: file,split CSV")
    p.add_argument("--dry-run", action="store_true", help="apply the label filters only and print the counts")
    p.add_argument("--min-score", type=float, default=1.0, help="IMDB-WIKI: minimum face_score")
    p.add_argument("--keep-second-face", action="store_true", help="IMDB-WIKI: keep photos with a second face")
    p.add_argument("--min-age", type=int, default=0)
    p.add_argument("--max-age", type=int, default=100)
    p.add_argument("--crop", choices=["align5", "square", "box"], default="align5")
    p.add_argument("--margin", type=float, default=0.25, help="context around the face, fraction per side")
    p.add_argument("--size", type=positive_int, default=112, help="stored crop side in pixels")
    p.add_argument("--detector", default="retinaface")
    p.add_argument("--workers", type=positive_int, default=1)
    p.add_argument("--chunk-size", type=positive_int, default=500)
    p.add_argument("--split-fractions", default="0.8,0.1,0.1", help="train,val,test for samples without a split")
    p.add_argument("--limit", type=int, default=0, help="only the first N samples (for trials)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_prepare)


def cmd_prepare(a: argparse.Namespace) -> int:
    from ..data import CropSpec, NoiseFilter, prepare_dataset, read_aaf, read_imdb_wiki, read_labels_csv, read_utkface
    from ..data.imdb_wiki import find_mat
    from ..data.summary import write_summary

    source: dict[str, object] = {"reader": a.kind, "path": str(a.source)}
    if a.kind == "utkface":
        samples = read_utkface(a.source, a.split_file)
        source["split_file"] = a.split_file
        print(f"UTKFace: {len(samples)} labelled images")
    elif a.kind == "aaf":
        samples = read_aaf(a.source)
        print(f"All-Age-Faces: {len(samples)} labelled images")
    elif a.kind in ("wiki", "imdb"):
        mat = find_mat(a.source)
        flt = NoiseFilter(a.min_score, not a.keep_second_face, a.min_age, a.max_age)
        src = Path(a.source)
        root = src if src.is_dir() else mat.parent / f"{a.kind}_crop"
        samples, report = read_imdb_wiki(mat, root, flt)
        source |= {"mat": str(mat), "filter": flt.__dict__, "filter_counts": {"total": report.total,
                   "kept": report.kept, **report.dropped}}
        print(f"{mat}:")
        for line in report.lines():
            print(f"  {line}")
    else:
        samples = read_labels_csv(a.source)
        print(f"{a.source}: {len(samples)} labelled images")
    if a.limit:
        samples = samples[: a.limit]
    if a.dry_run:
        return 0
    if not a.out:
        print("error: --out is required (or use --dry-run)", file=sys.stderr)
        return 2
    fractions = tuple(float(v) for v in a.split_fractions.split(","))
    spec = CropSpec(crop=a.crop, margin=a.margin, size=a.size, detector=a.detector)
    meta = prepare_dataset(samples, a.out, spec, source=source, chunk_size=a.chunk_size, workers=a.workers,
                           split_fractions=fractions, progress=not a.no_progress)  # type: ignore[arg-type]
    print(f"prepared {meta['num_samples']} faces into {a.out} (splits: {meta['splits']})")
    for reason, n in sorted(meta["skipped"].items()):
        print(f"  skipped ({reason}): {n}  (listed in {a.out}/skipped/)")
    for line in write_summary(a.out):
        print(line)
    return 0
