"""Copy some splits of a prepared dataset into a new, smaller one (re-encoded, optionally cut narrower and
resized), keeping each row's file name apart from its suffix, the row order and the labels.

Useful to ship training data to another machine (e.g. a lent GPU box that takes a few tens of MB per
transfer): WebP at quality 75 of the centre at margin 0.1 is about a tenth of a 224 px, quality 95 JPEG crop
at margin 0.3 (measured on UTKFace and All-Age-Faces crops, 2026-12-06).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from tqdm import tqdm

from ..align import center_cut, margin_cut, resize_square
from ..fileio import atomic_write_json, atomic_write_text
from ..imageio import load_image, save_image
from ..types import Preprocessing


def repacked_geometry(stored: Preprocessing, margin: float | None, size: int | None) -> tuple[float, int, int]:
    """(margin, cut, size) of a repacked crop: its margin (None: the stored one; never wider), the centre of
    a stored crop in pixels that holds it, and its stored side (None: the cut's, so the face keeps the
    pixels it had)."""
    m = stored.margin if margin is None else float(margin)
    cut = margin_cut(stored, m)  # ValueError if wider than the stored margin
    return m, cut, int(size or cut)


def repack_dataset(src: str | os.PathLike[str], dst: str | os.PathLike[str], splits: list[str] | None = None,
                   fmt: str = "webp", quality: int = 90, size: int | None = None, margin: float | None = None,
                   progress: bool = True) -> int:
    """Write the rows of `splits` (all if None) of dataset `src` to `dst`; returns the row count.

    margin: keep only the centre of each crop, at this margin (a fraction of the face per side, no wider
    than the stored one); size: the new crops' side in pixels (None: as many as the cut holds). Files
    already written by an interrupted run are kept (each is written atomically), so rerunning resumes.
    The new meta.json records the new margin and size and where the crops came from.
    """
    src, dst = Path(src), Path(dst)
    meta = json.loads((src / "meta.json").read_text())
    stored = Preprocessing.from_dict(meta["preprocessing"])
    new_margin, cut, new_size = repacked_geometry(stored, margin, size)
    with open(src / "labels.csv", newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = [r for r in reader if not splits or r["split"] in splits]
    out_rows = []
    for r in tqdm(rows, desc="repack", unit="img", disable=not progress, mininterval=1.0):
        rel = str(Path(r["file"]).with_suffix(f".{fmt}"))
        if not (dst / rel).is_file():
            img = center_cut(resize_square(load_image(src / r["file"]), stored.size), cut)  # as training reads it
            save_image(dst / rel, resize_square(img, new_size), quality=quality)
        out_rows.append(dict(r, file=rel))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(out_rows)
    atomic_write_text(dst / "labels.csv", buf.getvalue())
    meta["preprocessing"].update(size=new_size, margin=new_margin)
    if "crop" in meta:
        meta["crop"].update(size=new_size, margin=new_margin, quality=quality)
    meta["repacked_from"] = {"path": str(src), "splits": splits, "format": fmt, "quality": quality,
                             "margin": stored.margin, "size": stored.size}
    meta["num_samples"] = len(out_rows)
    atomic_write_json(dst / "meta.json", meta)
    return len(out_rows)
