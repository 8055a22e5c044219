"""Generic labels CSV: `path,age,gender[,split]` (paths relative to the CSV's folder unless absolute)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..types import Gender
from .records import SPLITS, Sample


def read_labels_csv(path: str | os.PathLike[str]) -> list[Sample]:
    """Samples from a CSV with columns path, age, gender and optionally split; other columns are kept.

    Empty age or gender cells mean unknown. Raises ValueError naming the line for a malformed row.
    """
    path = Path(path)
    base = path.parent
    samples = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        if not {"path", "age", "gender"} <= cols:
            raise ValueError(f"{path}: needs the columns path,age,gender[,split]; found {sorted(cols)}")
        for line, row in enumerate(reader, start=2):
            try:
                age = float(row["age"]) if row["age"].strip() else None
                gender = Gender.parse(row["gender"]) if row["gender"].strip() else None
            except ValueError as exc:
                raise ValueError(f"{path}:{line}: {exc}") from None
            split = (row.get("split") or "").strip() or None
            if split is not None and split not in SPLITS:
                raise ValueError(f"{path}:{line}: unknown split {split!r}")
            p = Path(row["path"])
            extra = {k: v for k, v in row.items() if k not in ("path", "age", "gender", "split") and k}
            samples.append(Sample(str(p if p.is_absolute() else base / p), age, gender, split, extra=extra))
    return samples
