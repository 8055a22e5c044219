"""Copy some splits of a prepared dataset into a new, smaller one (re-encoded, optionally resized).

Useful to ship training data to another machine (e.g. a GPU box) in a fraction of the space.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import cv2
from tqdm import tqdm

from ..fileio import atomic_write_json, atomic_write_text
from ..imageio import load_image, save_image


def repack_dataset(src: str | os.PathLike[str], dst: str | os.PathLike[str], splits: list[str] | None = None,
                   fmt: str = "webp", quality: int = 90, size: int | None = None, progress: bool = True) -> int:
    """Write the rows of `splits` (all if None) of dataset `src` to `dst`; returns the row count."""
    src, dst = Path(src), Path(dst)
    meta = json.loads((src / "meta.json").read_text())
    with open(src / "labels.csv", newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = [r for r in reader if not splits or r["split"] in splits]
    out_rows = []
    for r in tqdm(rows, desc="repack", unit="img", disable=not progress, mininterval=1.0):
        img = load_image(src / r["file"])
        if size and img.shape[0] != size:
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        rel = str(Path(r["file"]).with_suffix(f".{fmt}"))
        save_image(dst / rel, img, quality=quality)
        out_rows.append(dict(r, file=rel))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(out_rows)
    atomic_write_text(dst / "labels.csv", buf.getvalue())
    if size:
        meta["preprocessing"]["size"] = size
        meta["crop"]["size"] = size
    meta["repacked_from"] = {"path": str(src), "splits": splits, "format": fmt, "quality": quality}
    meta["num_samples"] = len(out_rows)
    atomic_write_json(dst / "meta.json", meta)
    return len(out_rows)
