"""All-Age-Faces (AAF) reader: `labels.csv` with file, age, gender, split beside an images/ folder.

AAF (Cheng et al., 2019) gives exact ages 2..80 and gender as the words male/female (from the dataset's id
ranges, converted by whoever packed the folder); paths are relative to the CSV's folder. Its faces are loose,
unaligned crops from the web, mostly East Asian.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..types import Gender
from .records import SPLITS, Sample

AAF_GENDER = {"male": Gender.MALE, "female": Gender.FEMALE}


def read_aaf(folder: str | os.PathLike[str]) -> list[Sample]:
    """Every row of `folder`/labels.csv as a Sample (extra: dataset "aaf"); raises ValueError naming the line
    for an unknown gender word, a bad age or split."""
    folder = Path(folder)
    path = folder / "labels.csv" if folder.is_dir() else folder
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no AAF labels.csv here")
    samples = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not {"file", "age", "gender", "split"} <= set(reader.fieldnames or []):
            raise ValueError(f"{path}: an AAF labels file has the columns file,age,gender,split")
        for line, row in enumerate(reader, start=2):
            gender = AAF_GENDER.get(row["gender"].strip().lower())
            if gender is None:
                raise ValueError(f"{path}:{line}: unknown AAF gender {row['gender']!r} (male or female)")
            try:
                age = float(row["age"])
            except ValueError:
                raise ValueError(f"{path}:{line}: bad age {row['age']!r}") from None
            split = row["split"].strip()
            if split not in SPLITS:
                raise ValueError(f"{path}:{line}: unknown split {split!r}")
            samples.append(Sample(str(path.parent / row["file"]), age, gender, split, extra={"dataset": "aaf"}))
    return samples
