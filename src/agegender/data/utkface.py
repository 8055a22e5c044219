"""UTKFace reader: labels live in the file name `AGE_GENDER_RACE_DATETIME.jpg.chip.jpg`.

UTKFace's gender code: 0 = male, 1 = female. Race: 0 white, 1 black, 2 asian, 3 indian, 4 other
(a few files have no race field; they get race "unknown").
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..imageio import is_image_path
from ..types import Gender
from .records import SPLITS, Sample

UTK_GENDER = {"0": Gender.MALE, "1": Gender.FEMALE}
UTK_RACES = {"0": "white", "1": "black", "2": "asian", "3": "indian", "4": "other"}


def parse_utkface_name(name: str) -> tuple[int, Gender, str]:
    """(age, gender, race) from a UTKFace file name; raises ValueError for a name off the pattern."""
    parts = os.path.basename(name).split("_")
    if len(parts) < 3:
        raise ValueError(f"not a UTKFace file name: {name}")
    age = int(parts[0])
    if parts[1] not in UTK_GENDER:
        raise ValueError(f"bad UTKFace gender code {parts[1]!r} in {name}")
    race = UTK_RACES.get(parts[2], "unknown") if len(parts) >= 4 else "unknown"
    return age, UTK_GENDER[parts[1]], race


def read_split_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """file name -> split from a `file,split` CSV."""
    with open(path, newline="") as f:
        rows = csv.DictReader(f)
        if rows.fieldnames is None or not {"file", "split"} <= set(rows.fieldnames):
            raise ValueError(f"{path}: a split file needs the columns file,split")
        out = {}
        for r in rows:
            if r["split"] not in SPLITS:
                raise ValueError(f"{path}: unknown split {r['split']!r} for {r['file']}")
            out[os.path.basename(r["file"])] = r["split"]
    return out


def read_utkface(folder: str | os.PathLike[str], split_file: str | os.PathLike[str] | None = None) -> list[Sample]:
    """All UTKFace images in `folder`, sorted by name; unparsable names raise. With a split file, files
    not listed in it are left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    splits = read_split_file(split_file) if split_file else None
    samples = []
    for name in sorted(os.listdir(folder)):
        if not is_image_path(name):
            continue
        split = None
        if splits is not None:
            split = splits.get(name)
            if split is None:
                continue
        age, gender, race = parse_utkface_name(name)
        samples.append(Sample(str(folder / name), float(age), gender, split, extra={"race": race}))
    return samples
