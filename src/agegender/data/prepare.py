"""Turn labelled images into a prepared dataset folder of aligned face crops, incrementally.

Layout of a prepared dataset folder:
    meta.json          source, reader, filters and counts, crop spec, progress
    images/NNNNN/*.jpg face crops, one sub-folder per chunk
    parts/NNNNN.csv    labels of each finished chunk (written atomically when the chunk is done)
    skipped/NNNNN.csv  inputs that were dropped in that chunk, with the reason
    labels.csv         all kept samples (file,age,gender,split,source,det_score,...), merged at the end

Samples are processed in fixed chunks; a chunk whose parts file exists is done, so a killed run resumes
where it stopped without redoing or losing finished chunks. Memory stays flat: a chunk at a time.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..detectors import create_detector
from ..detectors.base import FaceDetector, detect_faces
from ..fileio import atomic_write_json, atomic_write_text
from ..imageio import ImageLoadError, save_image
from ..lazyimage import LazyImage, crop_face_from
from ..types import Detection, Preprocessing
from .records import Sample

DATASET_FORMAT = "agegender-dataset"
DATASET_VERSION = 1
BASE_COLUMNS = ["file", "age", "gender", "split", "source", "det_score"]


@dataclass(frozen=True)
class CropSpec:
    """How faces are cut for a prepared dataset (becomes the trained model's crop settings)."""

    crop: str = "align5"
    margin: float = 0.25
    size: int = 112
    detector: str = "retinaface"
    quality: int = 95

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(crop=self.crop, margin=self.margin, size=self.size, detector=self.detector)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def choose_face(dets: list[Detection], face_box: tuple[float, float, float, float] | None) -> Detection | None:
    """The detection a label belongs to: best overlap with the dataset's own face box (IoU >= 0.3) when
    it gives one, else the largest face."""
    if not dets:
        return None
    if face_box is not None:
        best = max(dets, key=lambda d: box_iou(d.box, face_box))
        return best if box_iou(best.box, face_box) >= 0.3 else None
    return max(dets, key=lambda d: d.area)


def assign_split(path: str, fractions: tuple[float, float, float], seed: int = 0) -> str:
    """Deterministic train/val/test split from a hash of the path (stable across runs and resumes)."""
    h = int(hashlib.sha1(f"{seed}:{path}".encode()).hexdigest()[:12], 16) / float(16**12)
    if h < fractions[0]:
        return "train"
    return "val" if h < fractions[0] + fractions[1] else "test"


def _chunk_rows(
    chunk_id: int, samples: list[Sample], out: Path, spec: CropSpec, detector: FaceDetector
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Process one chunk: returns its label rows and its skipped rows; writes the crops. Each image is
    decoded only as far as detection and its crop need (see agegender.lazyimage)."""
    prep = spec.preprocessing()
    rows, skipped = [], []
    sub = f"{chunk_id:05d}"
    for j, s in enumerate(samples):
        try:
            image = LazyImage.open(s.path)
            face = choose_face(detect_faces(detector, image), s.face_box)
            crop = None if face is None else crop_face_from(image, face, prep)
        except ImageLoadError as exc:
            skipped.append({"source": s.path, "reason": "unreadable", "detail": str(exc)})
            continue
        if face is None or crop is None:  # no face (or none matching the dataset's own box)
            skipped.append({"source": s.path, "reason": "no_face", "detail": ""})
            continue
        rel = f"images/{sub}/{j:04d}.jpg"
        save_image(out / rel, crop, quality=spec.quality)
        row = {
            "file": rel,
            "age": "" if s.age is None else f"{s.age:g}",
            "gender": "" if s.gender is None else s.gender.label,
            "split": s.split or "",
            "source": s.path,
            "det_score": f"{face.score:.4f}",
        }
        row.update(s.extra)
        rows.append(row)
    return rows, skipped


def _csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


_WORKER: dict[str, Any] = {}


def _worker_init(detector: str, kwargs: dict[str, Any]) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _WORKER["detector"] = create_detector(detector, threads=1, **kwargs)


def _worker_run(job: tuple[int, list[Sample], str, CropSpec, list[str]]) -> tuple[int, int, Counter]:
    chunk_id, samples, out, spec, columns = job
    return _finish_chunk(chunk_id, samples, Path(out), spec, _WORKER["detector"], columns)


def _finish_chunk(
    chunk_id: int, samples: list[Sample], out: Path, spec: CropSpec, detector: FaceDetector, columns: list[str]
) -> tuple[int, int, Counter]:
    rows, skipped = _chunk_rows(chunk_id, samples, out, spec, detector)
    atomic_write_text(out / "skipped" / f"{chunk_id:05d}.csv", _csv_text(skipped, ["source", "reason", "detail"]))
    atomic_write_text(out / "parts" / f"{chunk_id:05d}.csv", _csv_text(rows, columns))  # marks the chunk done
    return chunk_id, len(samples), Counter(s["reason"] for s in skipped)


def prepare_dataset(
    samples: list[Sample],
    out_dir: str | os.PathLike[str],
    spec: CropSpec = CropSpec(),
    *,
    source: dict[str, Any] | None = None,
    chunk_size: int = 500,
    workers: int = 1,
    detector_kwargs: dict[str, Any] | None = None,
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    progress: bool = True,
) -> dict[str, Any]:
    """Crop and write every sample into `out_dir`; resumes a previous run of the same inputs.

    Samples without a split get one from a hash of their path (`split_fractions`). Returns the final meta.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for s in samples:
        if s.split is None:
            s.split = assign_split(s.path, split_fractions)
    meta = _start_meta(out, samples, spec, source or {}, chunk_size)

    chunks = [samples[i : i + chunk_size] for i in range(0, len(samples), chunk_size)]
    _crop_chunks(chunks, out, spec, meta["columns"], workers, dict(detector_kwargs or {}), progress)
    return finalize_dataset(out, len(chunks), meta)


def _start_meta(out: Path, samples: list[Sample], spec: CropSpec, source: dict[str, Any],
                chunk_size: int) -> dict[str, Any]:
    """Write meta.json (complete: False) for these inputs; a folder prepared from others is refused (ValueError).

    Temporary files a killed run left behind are removed; finished chunk parts stay, to be resumed from.
    """
    extras = sorted({k for s in samples for k in s.extra})
    meta: dict[str, Any] = {
        "format": DATASET_FORMAT,
        "version": DATASET_VERSION,
        "source": source,
        "crop": asdict(spec),
        "preprocessing": spec.preprocessing().to_dict(),
        "num_inputs": len(samples),
        "chunk_size": chunk_size,
        "fingerprint": hashlib.sha1("\n".join(s.path for s in samples).encode()).hexdigest(),
        "columns": BASE_COLUMNS + [k for k in extras if k not in BASE_COLUMNS],
        "complete": False,
    }
    meta_path = out / "meta.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        for key in ("fingerprint", "chunk_size", "crop"):
            if old.get(key) != meta[key]:
                raise ValueError(
                    f"{out} holds a prepared dataset made from other inputs or settings ({key} differs); "
                    "choose another output folder or delete it"
                )
    atomic_write_json(meta_path, meta)
    for stale in [*out.glob(".*.tmp*"), *out.glob("*/.*.tmp*"), *out.glob("images/*/.*.tmp*")]:
        stale.unlink(missing_ok=True)  # temporary files of a killed run (never under a final name)
    return meta


def _crop_chunks(chunks: list[list[Sample]], out: Path, spec: CropSpec, columns: list[str], workers: int,
                 det_kwargs: dict[str, Any], progress: bool) -> None:
    """Cut every chunk that has no finished part yet (parts/NNNNN.csv), in this process or a spawn pool."""
    from tqdm import tqdm

    todo = [c for c in range(len(chunks)) if not (out / "parts" / f"{c:05d}.csv").exists()]
    done_inputs = sum(len(chunks[c]) for c in range(len(chunks)) if c not in set(todo))
    bar = tqdm(total=sum(map(len, chunks)), initial=done_inputs, unit="img", desc="prepare", disable=not progress)
    if todo and workers <= 1:
        detector = create_detector(spec.detector, **det_kwargs)
        for c in todo:
            _finish_chunk(c, chunks[c], out, spec, detector, columns)
            bar.update(len(chunks[c]))
    elif todo:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        jobs = [(c, chunks[c], str(out), spec, columns) for c in todo]
        with ctx.Pool(workers, initializer=_worker_init, initargs=(spec.detector, det_kwargs)) as pool:
            for _, n, _ in pool.imap_unordered(_worker_run, jobs):
                bar.update(n)
    bar.close()


def finalize_dataset(out: Path, num_chunks: int, meta: dict[str, Any]) -> dict[str, Any]:
    """Merge the chunk parts into labels.csv and record the counts in meta.json."""
    columns = meta["columns"]
    rows: list[dict[str, str]] = []
    skipped: Counter = Counter()
    for c in range(num_chunks):
        with open(out / "parts" / f"{c:05d}.csv", newline="") as f:
            rows.extend(csv.DictReader(f))
        with open(out / "skipped" / f"{c:05d}.csv", newline="") as f:
            skipped.update(r["reason"] for r in csv.DictReader(f))
    atomic_write_text(out / "labels.csv", _csv_text(rows, columns))
    meta["num_samples"] = len(rows)
    meta["skipped"] = dict(skipped)
    meta["splits"] = dict(Counter(r["split"] for r in rows))
    meta["complete"] = True
    atomic_write_json(out / "meta.json", meta)
    return meta


def dataset_age_gender_arrays(rows: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Ages (float, NaN unknown) and genders (0 male, 1 female, -1 unknown) of label rows."""
    ages = np.array([float(r["age"]) if r["age"] else np.nan for r in rows], np.float32)
    genders = np.array([{"male": 0, "female": 1}.get(r["gender"], -1) for r in rows], np.int64)
    return ages, genders
