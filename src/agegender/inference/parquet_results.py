"""Parquet results: a folder of Parquet files that a rerun into the same folder resumes.

Layout of OUT (a Parquet dataset: `pyarrow.parquet.read_table(OUT)`, `pandas.read_parquet(OUT)` and
`ray.data.read_parquet(OUT)` read it whole):

    OUT/_agegender.json               the model (name, version) and the settings that decide the results
    OUT/part-RUN-NNNNN.parquet        rows of whole images (result_rows.COLUMNS), each file written
                                      under a hidden temporary name and renamed when complete
    OUT/.lock                         held (flock) by the run writing into OUT

Opening a folder again reads the `image` column of its parts: those images are done and are skipped, so
a killed run (its driver or a worker) loses at most the rows not yet in a part, and a rerun writes each
image once. A rerun with another model or other settings is refused rather than mixed in.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from ..extras import require
from ..fileio import atomic_write_json, lock_or_refuse
from ..types import ImageResult
from .result_rows import COLUMNS, ModelInfo, result_rows

RECORD = "_agegender.json"
LOCK = ".lock"
RECORD_FORMAT = 1


def arrow_schema():  # -> pyarrow.Schema
    """The pyarrow schema of result rows (COLUMNS)."""
    pa = require("pyarrow", "Parquet results")
    return pa.schema([(name, getattr(pa, kind)()) for name, kind in COLUMNS.items()])


def rows_table(rows: list[dict[str, Any]]):  # -> pyarrow.Table
    pa = require("pyarrow", "Parquet results")
    return pa.Table.from_pylist(rows, schema=arrow_schema())


def part_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The finished part files of a results folder, sorted by name."""
    return sorted(Path(folder).glob("part-*.parquet"))


class ParquetResults:
    """Writes ImageResults into a results folder, `part_images` images per part file; resumes a folder.

    record: the model and settings of this run (JSON values); the folder's record must match it.
    `done` maps each image already in the folder to whether its row is an error. Use as a context
    manager (or call `close`): the last, partial part is written on close.
    """

    def __init__(self, folder: str | os.PathLike[str], model: ModelInfo, settings: dict[str, Any],
                 part_images: int = 1000) -> None:
        self.pq = require("pyarrow.parquet", "Parquet results", extra="parquet")
        if part_images < 1:
            raise ValueError(f"part_images must be 1 or more, got {part_images}")
        self.folder, self.model, self.part_images = Path(folder), model, part_images
        if self.folder.exists() and not self.folder.is_dir():
            raise FileExistsError(f"{self.folder}: exists and is not a folder (Parquet results are a folder)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = _lock(self.folder / LOCK)
        try:
            self._check_record({"format": RECORD_FORMAT, "model": model.name, "model_version": model.version,
                                **settings})
            for stale in self.folder.glob(".part-*.tmp*"):  # a killed run's unfinished part (we hold the lock)
                stale.unlink()
            self.done = self._read_done()
        except BaseException:
            self._lock.close()
            raise
        self.run = uuid.uuid4().hex[:8]
        self.parts_written = 0
        self._rows: list[dict[str, Any]] = []
        self._images: set[str] = set()

    def _check_record(self, record: dict[str, Any]) -> None:
        path = self.folder / RECORD
        if not path.exists():
            others = [p.name for p in self.folder.iterdir() if not p.name.startswith((".", "_"))]
            if others:
                raise FileExistsError(f"{self.folder}: not an agegender results folder (no {RECORD}; holds "
                                      f"{', '.join(sorted(others)[:3])}): choose a new or empty folder")
            atomic_write_json(path, record)
            return
        old = json.loads(path.read_text())
        changed = sorted(k for k in old.keys() | record.keys() if old.get(k) != record.get(k))
        if changed:
            diff = ", ".join(f"{k} {old.get(k)!r} -> {record.get(k)!r}" for k in changed)
            raise ValueError(f"{self.folder} holds results made with other settings ({diff}): rerun with the "
                             "same model and settings to resume, or write to another folder")

    def _read_done(self) -> dict[str, bool]:
        done: dict[str, bool] = {}
        for part in part_files(self.folder):
            try:
                table = self.pq.read_table(part, columns=["image", "error"])
            except Exception as exc:  # noqa: BLE001 - pyarrow raises its own error types
                raise ValueError(f"{part}: not a readable Parquet part ({exc}); move it away to redo its images") \
                    from None
            for image, error in zip(table.column("image").to_pylist(), table.column("error").to_pylist()):
                done[image] = done.get(image, False) or error is not None
        return done

    def add(self, result: ImageResult) -> bool:
        """Queue an image's rows; False (and nothing queued) if the image is done or already queued."""
        if result.image in self.done or result.image in self._images:
            return False
        self._rows += result_rows(result, self.model)
        self._images.add(result.image)
        if len(self._images) >= self.part_images:
            self.flush()
        return True

    def flush(self) -> None:
        """Write the queued rows as one part file (atomically); nothing if none are queued."""
        if not self._rows:
            return
        name = f"part-{self.run}-{self.parts_written:05d}.parquet"
        tmp = self.folder / f".{name}.tmp{os.getpid()}"
        self.pq.write_table(rows_table(self._rows), tmp, compression="zstd")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.folder / name)
        self.parts_written += 1
        errors = {r["image"] for r in self._rows if r["error"] is not None}
        self.done.update({image: image in errors for image in self._images})
        self._rows, self._images = [], set()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._lock.close()

    def __enter__(self) -> ParquetResults:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:  # an error: what is queued may be incomplete; the finished parts stay, the rest is redone
            self._lock.close()


def _lock(path: Path):  # -> an open file holding an exclusive flock
    f = open(path, "a+")  # noqa: SIM115 - held open for the life of the writer
    try:
        lock_or_refuse(f, f"{path.parent}: another run is writing into this folder")
    except BaseException:
        f.close()
        raise
    return f
