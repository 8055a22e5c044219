"""Reading a prepared dataset folder (see `prepare.py`) lazily: labels in memory, images on demand."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..imageio import load_image
from ..types import Preprocessing
from .prepare import DATASET_FORMAT, dataset_age_gender_arrays


class PreparedDataset:
    """A prepared dataset, optionally restricted to one or more splits.

    ages: (N,) float32 years (NaN unknown); genders: (N,) int64, 0 male, 1 female, -1 unknown.
    `image(i)` reads the i-th crop as an (S, S, 3) uint8 RGB array.
    """

    def __init__(self, root: str | os.PathLike[str], splits: str | list[str] | None = None) -> None:
        self.root = Path(root)
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.root}: not a prepared dataset (no meta.json); run 'agegender prepare'")
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        if self.meta.get("format") != DATASET_FORMAT:
            raise ValueError(f"{meta_path}: not an agegender dataset")
        if not self.meta.get("complete") or not (self.root / "labels.csv").is_file():
            raise ValueError(f"{self.root}: preparation has not finished; rerun 'agegender prepare' to complete it")
        with open(self.root / "labels.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        if isinstance(splits, str):
            splits = [splits]
        if splits:
            rows = [r for r in rows if r["split"] in splits]
        self.rows = rows
        self.splits = splits
        self.ages, self.genders = dataset_age_gender_arrays(rows)

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_dict(self.meta["preprocessing"])

    def __len__(self) -> int:
        return len(self.rows)

    def path(self, i: int) -> Path:
        return self.root / self.rows[i]["file"]

    def image(self, i: int) -> np.ndarray:
        return load_image(self.path(i))

    def column(self, name: str) -> list[str]:
        return [r.get(name, "") for r in self.rows]
