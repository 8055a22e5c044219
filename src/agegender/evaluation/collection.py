"""The make-up of a photo collection from its `predict` results: who is in it (an age pyramid by gender), how
many faces each image holds, counts per folder, detector scores, and how often the gender call is unsure.

Input: a JSON-lines file of `predict --format jsonl`, or Parquet results (a folder of `--format parquet`,
or one .parquet file). Each statistic is a Table (a header and rows of plain values): the numbers a plot
draws, written as CSV beside it. No model runs here; NumPy only (pyarrow to read Parquet).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..extras import require
from ..inference.result_rows import COLUMNS, json_rows

#: a gender call whose probability is under this is counted as low-confidence (`report --low-confidence`)
LOW_CONFIDENCE = 0.75
#: age groups of the pyramid and of the low-confidence shares: 5 years wide, the last one open
AGE_STEP, AGE_TOP = 5, 90
#: faces per image beyond this are pooled into one "N+" bar
MAX_FACES_BAR = 10


@dataclass
class Table:
    """Numbers behind one plot: column names and rows of plain values (str, int, float)."""

    header: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    def column(self, name: str) -> list[Any]:
        i = self.header.index(name)
        return [r[i] for r in self.rows]

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        import csv

        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(self.header)
            w.writerows(self.rows)
        return Path(path)


@dataclass
class Results:
    """Result rows as columns (result_rows.COLUMNS), each an (R,) array: strings as objects (None where null),
    numbers as float64 (NaN where null)."""

    columns: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __len__(self) -> int:
        return len(self.columns["image"])

    @property
    def face_rows(self) -> np.ndarray:
        """(R,) bool: the rows that are faces (not an image's no-face or error row)."""
        return ~np.isnan(self["face"])

    def images(self) -> dict[str, np.ndarray]:
        """One entry per image (its first row), in order of appearance: image, width, height, faces,
        skipped_faces, error."""
        _, first = np.unique(self["image"].astype(str), return_index=True)
        first = np.sort(first)
        return {k: self[k][first] for k in ("image", "width", "height", "faces", "skipped_faces", "error")}


def is_parquet(path: str | os.PathLike[str]) -> bool:
    """Whether results at `path` are read as Parquet (a folder, or a .parquet file) rather than JSON lines."""
    return Path(path).is_dir() or Path(path).suffix == ".parquet"


def load_results(path: str | os.PathLike[str]) -> Results:
    """Rows of a JSON-lines file, a Parquet file or a Parquet results folder, as Results columns."""
    p = Path(path)
    if is_parquet(p):
        return _load_parquet(p)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such results file or folder")
    rows: list[dict[str, Any]] = []
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows += json_rows(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, IndexError) as exc:
                raise ValueError(f"{p}, line {n}: not a result line of 'predict --format jsonl' ({exc})") from None
    return Results({name: _array([r[name] for r in rows], kind) for name, kind in COLUMNS.items()})


def _load_parquet(path: Path) -> Results:
    pq = require("pyarrow.parquet", "reading Parquet results", extra="parquet")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such results file or folder")
    if path.is_dir() and not any(path.glob("*.parquet")):
        raise FileNotFoundError(f"{path}: no Parquet files in this folder")
    table = pq.read_table(path)
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: not agegender results (no column {', '.join(missing)})")
    return Results({name: _array(table.column(name).to_pylist(), kind) for name, kind in COLUMNS.items()})


def _array(values: list[Any], kind: str) -> np.ndarray:
    if kind == "string":
        return np.array(values, dtype=object)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def age_groups(ages: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Labels '0-4', '5-9', ..., '80+' and each age's group index, (N,) int."""
    edges = list(range(0, AGE_TOP + 1, AGE_STEP))
    labels = [f"{a}-{a + AGE_STEP - 1}" for a in edges[:-1]] + [f"{AGE_TOP}+"]
    return labels, np.clip((ages // AGE_STEP).astype(int), 0, len(labels) - 1)


def age_pyramid(r: Results) -> Table:
    """Faces per age group and gender."""
    faces = r.face_rows
    labels, group = age_groups(r["age"][faces])
    gender = r["gender"][faces]
    t = Table(["age_group", "male", "female"])
    for i, label in enumerate(labels):
        here = group == i
        t.rows.append([label, int((here & (gender == "male")).sum()), int((here & (gender == "female")).sum())])
    return t


def faces_per_image(r: Results) -> Table:
    """Images (read without error) by the number of faces estimated in them; the last bar pools N+."""
    img = r.images()
    counts = img["faces"][np.array([e is None for e in img["error"]], bool)].astype(int)
    t = Table(["faces", "images"])
    for n in range(MAX_FACES_BAR):
        t.rows.append([str(n), int((counts == n).sum())])
    t.rows.append([f"{MAX_FACES_BAR}+", int((counts >= MAX_FACES_BAR).sum())])
    return t


def by_folder(r: Results) -> Table:
    """Per folder (an image's parent folder, as its path was given): images, errors, images without a face,
    faces, female and male faces, mean age; the folders with the most faces first."""
    img = r.images()
    names, of_image = np.unique(_folders(img["image"]), return_inverse=True)
    of_row = np.searchsorted(names, _folders(r["image"]))
    errors = np.array([e is not None for e in img["error"]], bool)
    faces = r.face_rows
    k = len(names)

    def count(index: np.ndarray, mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(index[mask], weights=None if weights is None else weights[mask], minlength=k)

    n_faces = count(of_row, faces)
    age_sum = count(of_row, faces, r["age"])
    columns = [count(of_image, np.ones(len(errors), bool)), count(of_image, errors),
               count(of_image, ~errors & (img["faces"] == 0)), n_faces,
               count(of_row, faces & (r["gender"] == "female")), count(of_row, faces & (r["gender"] == "male"))]
    t = Table(["folder", "images", "errors", "no_face", "faces", "female", "male", "mean_age"])
    for i, name in enumerate(names):
        mean_age = round(float(age_sum[i] / n_faces[i]), 1) if n_faces[i] else None
        t.rows.append([str(name), *(int(c[i]) for c in columns), mean_age])
    t.rows.sort(key=lambda row: (-row[4], -row[1], row[0]))
    return t


def _folders(paths: np.ndarray) -> np.ndarray:
    """(N,) str: each path's parent folder ('.' for a bare file name)."""
    return np.array([os.path.dirname(str(p)) or "." for p in paths], dtype=str)


def detector_scores(r: Results, bins: int = 20) -> Table:
    """Faces per detector-score bin: `bins` equal bins from the lowest score (rounded down to 0.05) to 1."""
    scores = r["score"][r.face_rows]
    low = min(0.95, float(np.floor((scores.min() if len(scores) else 0.5) * 20) / 20))
    edges = np.linspace(low, 1.0, bins + 1)
    counts = np.histogram(scores, bins=edges)[0]  # the last bin includes 1.0
    return Table(["score_from", "score_to", "faces"],
                 [[round(float(a), 4), round(float(b), 4), int(n)] for a, b, n in zip(edges[:-1], edges[1:], counts)])


def gender_confidence(r: Results, threshold: float = LOW_CONFIDENCE) -> Table:
    """Per age group: faces, those whose gender probability is under `threshold`, and their share."""
    faces = r.face_rows
    labels, group = age_groups(r["age"][faces])
    low = r["gender_probability"][faces] < threshold
    t = Table(["age_group", "faces", "low_confidence", "share"])
    for i, label in enumerate(labels):
        n, k = int((group == i).sum()), int((low & (group == i)).sum())
        t.rows.append([label, n, k, round(k / n, 4) if n else None])
    return t


def summary(r: Results, threshold: float = LOW_CONFIDENCE) -> dict[str, Any]:
    """The collection in numbers: images, errors, faces, women's share, median age, low-confidence share..."""
    img = r.images()
    errors = np.array([e is not None for e in img["error"]], bool)
    faces = r.face_rows
    n_faces = int(faces.sum())
    ages, gender, prob = r["age"][faces], r["gender"][faces], r["gender_probability"][faces]
    skipped: dict[str, int] = {}
    for text in r.images()["skipped_faces"]:
        for k, n in json.loads(text or "{}").items():
            skipped[k] = skipped.get(k, 0) + n
    models = sorted({f"{m} {v}" for m, v in zip(r["model"], r["model_version"]) if m is not None})
    return {
        "images": len(img["image"]), "errors": int(errors.sum()),
        "images_with_faces": int((~errors & (img["faces"] > 0)).sum()),
        "images_without_face": int((~errors & (img["faces"] == 0)).sum()),
        "faces": n_faces, "female": int((gender == "female").sum()), "male": int((gender == "male").sum()),
        "female_share": round(float((gender == "female").mean()), 4) if n_faces else None,
        "median_age": round(float(np.median(ages)), 1) if n_faces else None,
        "low_confidence_threshold": threshold,
        "low_confidence": int((prob < threshold).sum()),
        "low_confidence_share": round(float((prob < threshold).mean()), 4) if n_faces else None,
        "skipped_faces": skipped, "models": models,
    }


def error_list(r: Results) -> Table:
    """Every image that could not be read, with its one-line error."""
    img = r.images()
    return Table(["image", "error"], [[str(i), str(e)] for i, e in zip(img["image"], img["error"]) if e is not None])
