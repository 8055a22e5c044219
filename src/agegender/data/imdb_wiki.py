"""IMDB-WIKI reader: the `imdb.mat` / `wiki.mat` metadata and the classic noise filter.

Quirks handled here, once: `dob` is a MATLAB datenum; age = year the photo was taken - birth year, minus
one when born in July or later (the photo is taken to be mid-year); gender 1.0 = male, 0.0 = female,
NaN = unknown; face_score -inf = no face; second_face_score NaN = no second face.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from ..extras import require
from ..types import Gender
from .records import Sample


@dataclass(frozen=True)
class NoiseFilter:
    """The classic IMDB-WIKI cleaning thresholds (the original create_db defaults)."""

    min_score: float = 1.0
    drop_second_face: bool = True
    min_age: int = 0
    max_age: int = 100


@dataclass
class FilterReport:
    total: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)

    def lines(self) -> list[str]:
        out = [f"entries: {self.total}", f"kept: {self.kept}"]
        out += [f"dropped ({reason}): {n}" for reason, n in sorted(self.dropped.items())]
        return out


def matlab_datenum_to_date(datenum: float) -> date:
    """MATLAB datenum (days since year 0, day 1 = 0000-01-01) -> date; raises ValueError if invalid."""
    n = int(datenum)
    if n < 367:
        raise ValueError(f"datenum {datenum} is before year 1")
    return date.fromordinal(n - 366)


def age_at_photo(dob_datenum: float, photo_taken: int) -> int:
    """Age in whole years when the photo was taken (taken to be mid-year)."""
    born = matlab_datenum_to_date(dob_datenum)
    return int(photo_taken) - born.year - (1 if born.month >= 7 else 0)


def load_mat(mat_path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read imdb.mat or wiki.mat into flat arrays (one entry per face)."""
    loadmat = require("scipy.io", f"reading {Path(mat_path).name}").loadmat
    mat = loadmat(str(mat_path))
    key = "imdb" if "imdb" in mat else "wiki" if "wiki" in mat else None
    if key is None:
        raise ValueError(f"{mat_path}: neither an 'imdb' nor a 'wiki' struct inside")
    s = mat[key][0, 0]
    out = {
        "dob": s["dob"][0].astype(np.float64),
        "photo_taken": s["photo_taken"][0].astype(np.int64),
        "full_path": np.array([str(p[0]) for p in s["full_path"][0]]),
        "gender": s["gender"][0].astype(np.float64),
        "face_score": s["face_score"][0].astype(np.float64),
        "second_face_score": s["second_face_score"][0].astype(np.float64),
        "face_location": np.array([np.asarray(b, np.float64).reshape(-1)[:4] for b in s["face_location"][0]]),
    }
    out["source"] = np.array([key] * len(out["dob"]))
    return out


def find_mat(folder: str | os.PathLike[str]) -> Path:
    """The .mat file for an `imdb_crop/` or `wiki_crop/` folder: inside it, or beside it."""
    folder = Path(folder)
    if folder.is_file() and folder.suffix == ".mat":
        return folder
    for cand in ("wiki.mat", "imdb.mat"):
        for p in (folder / cand, folder.parent / cand):
            if p.is_file():
                return p
    raise FileNotFoundError(f"no imdb.mat or wiki.mat in {folder} or beside it")


def read_imdb_wiki(
    mat_path: str | os.PathLike[str], image_root: str | os.PathLike[str] | None = None, flt: NoiseFilter = NoiseFilter()
) -> tuple[list[Sample], FilterReport]:
    """Apply the noise filter to the labels alone; returns kept samples (paths under image_root) and counts.

    Each entry is dropped for the first reason that applies, in this order: no_face (score -inf),
    low_face_score, second_face, unknown_gender, invalid_dob, age_out_of_range.
    """
    m = load_mat(mat_path)
    root = Path(image_root) if image_root is not None else Path(mat_path).parent
    report = FilterReport(total=len(m["dob"]))
    samples: list[Sample] = []
    for i in range(report.total):
        score = m["face_score"][i]
        if np.isneginf(score):
            report.dropped["no_face"] += 1
            continue
        if not score >= flt.min_score:
            report.dropped["low_face_score"] += 1
            continue
        if flt.drop_second_face and not np.isnan(m["second_face_score"][i]):
            report.dropped["second_face"] += 1
            continue
        g = m["gender"][i]
        if np.isnan(g):
            report.dropped["unknown_gender"] += 1
            continue
        try:
            age = age_at_photo(m["dob"][i], m["photo_taken"][i])
        except (ValueError, OverflowError):
            report.dropped["invalid_dob"] += 1
            continue
        if not flt.min_age <= age <= flt.max_age:
            report.dropped["age_out_of_range"] += 1
            continue
        gender = Gender.MALE if g == 1.0 else Gender.FEMALE
        x1, y1, x2, y2 = (float(v) for v in m["face_location"][i])
        samples.append(
            Sample(
                str(root / m["full_path"][i]), float(age), gender, None,
                face_box=(x1, y1, x2, y2), extra={"source": str(m["source"][i])},
            )
        )
    report.kept = len(samples)
    return samples, report
