"""A results file that a killed run resumes: `agegender predict --format jsonl|csv -o FILE`.

While a run writes FILE, its results go to `.FILE.partial` in the same folder, one whole image at a time
(an image's line or rows are written and flushed together), and `.FILE.partial.json` records the format, the
model and the settings that decide the results. When every input is done the partial file is renamed to
FILE, so FILE never holds half a run. A run killed or interrupted on the way leaves both files; the same
command run again reads which images the partial file holds, skips them and appends the others, so the
finished FILE is what one uninterrupted run writes. A torn last record (the kill came in the middle of a
write) is cut off and its image done again; for CSV, whose rows of one image cannot tell whether the last
of them was written, the last image in the file is always done again. A rerun with another model or other
settings is refused rather than mixed in, as for Parquet results (`parquet_results`). A table (`--format
table`) is not read back: it is written the same way but starts afresh each time.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_json, lock_or_refuse

#: the formats whose files a rerun resumes (a table is for reading, not for reading back)
RESUMABLE_FORMATS = ("jsonl", "csv")
#: the header of CSV results: one row per face, or one per image without a face or that failed
CSV_COLUMNS = ["image", "width", "height", "face", "x1", "y1", "x2", "y2", "score", "age", "age_low", "age_high",
               "gender", "gender_probability", "error"]


class PartialResults:
    """The partial file of results file `output` in format `fmt`, opened for appending and locked.

    record: the format, model and settings of this run (JSON values); a partial file's record must match it.
    After opening: `records` lists the images already in it as written, each with whether its row is an error;
    `done` counts them by image; `stream` (text) is where this run's results go. `finish()` renames
    the partial file to `output`; closing without it keeps the partial file for a rerun.
    """

    def __init__(self, output: str | os.PathLike[str], fmt: str, record: dict[str, Any]) -> None:
        self.output, self.fmt = Path(output), fmt
        if self.output.is_dir():
            raise IsADirectoryError(f"{self.output}: is a folder; -o takes a file name here "
                                    "(--format parquet writes a folder)")
        self.path = self.output.with_name(f".{self.output.name}.partial")
        self.record_path = self.path.with_name(f"{self.path.name}.json")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.stream = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - closed in close()
        try:
            lock_or_refuse(self.stream, f"{self.output}: another run is writing it")  # held until closed
            self._check_record(record | {"format": fmt})
            self.records = self._read_back()
            self.done = Counter(image for image, _ in self.records)
        except BaseException:
            self.stream.close()
            raise

    @property
    def errors(self) -> int:
        """How many of the images already done are error rows."""
        return sum(failed for _, failed in self.records)

    @property
    def is_new(self) -> bool:
        """Whether the partial file is empty (a CSV header is still to be written)."""
        return self.path.stat().st_size == 0

    def todo(self, paths: list[str]) -> list[str]:
        """`paths` less the images already done (an image named n times is done n times), in their order.
        ValueError if the partial file holds an image `paths` does not name: it was made for other inputs."""
        extra = self.done - Counter(paths)
        if extra:
            raise ValueError(f"{self.output}: a killed run's partial results ({self.path.name}) hold images these "
                             f"inputs do not name ({next(iter(extra))}, ...): rerun with the same inputs to "
                             "resume, or delete it to start afresh")
        left = Counter(self.done)
        out = []
        for p in paths:
            if left[p] > 0:
                left[p] -= 1
            else:
                out.append(p)
        return out

    def finish(self) -> None:
        """All results written: the partial file becomes `output` (its record goes)."""
        self.stream.flush()
        os.fsync(self.stream.fileno())
        os.replace(self.path, self.output)
        self.record_path.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> PartialResults:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # not finished: the partial file stays for a rerun

    def discard(self) -> None:
        """Remove the partial file and its record (after close)."""
        self.path.unlink(missing_ok=True)
        self.record_path.unlink(missing_ok=True)

    def _check_record(self, record: dict[str, Any]) -> None:
        """A new partial file gets this run's record; an old one's record must match (a table starts afresh)."""
        if self.fmt not in RESUMABLE_FORMATS or self.path.stat().st_size == 0:  # start afresh
            self.stream.truncate(0)
            atomic_write_json(self.record_path, record)
            return
        if not self.record_path.exists():
            raise FileExistsError(f"{self.path}: partial results without their record ({self.record_path.name}): "
                                  "move it away to start afresh")
        old = json.loads(self.record_path.read_text())
        changed = sorted(k for k in old.keys() | record.keys() if old.get(k) != record.get(k))
        if changed:
            diff = ", ".join(f"{k} {old.get(k)!r} -> {record.get(k)!r}" for k in changed)
            raise ValueError(f"{self.output}: a killed run's partial results ({self.path.name}) were made with "
                             f"other settings ({diff}): rerun with the same model and settings to resume, or "
                             "delete it to start afresh")

    def _read_back(self) -> list[tuple[str, bool]]:
        """(image, is an error) of the images whole in the partial file, in order; cuts off the rest."""
        data = self.path.read_bytes()
        if not data:
            return []
        records, keep = (_jsonl_records if self.fmt == "jsonl" else _csv_records)(data)
        if keep < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(keep)
        return records


def _jsonl_records(data: bytes) -> tuple[list[tuple[str, bool]], int]:
    """((image, is an error) records, bytes to keep) of JSON lines: every whole line that parses, up to the
    first that does not (a torn last line)."""
    records, keep = [], 0
    for line in data.splitlines(keepends=True):
        try:
            row = json.loads(line) if line.endswith(b"\n") else None
        except ValueError:
            row = None
        if not isinstance(row, dict) or "image" not in row:
            break
        records.append((row["image"], "error" in row))
        keep += len(line)
    return records, keep


def _csv_records(data: bytes) -> tuple[list[tuple[str, bool]], int]:
    """((image, is an error) records, bytes to keep) of CSV rows after the header, grouped by image (an image's rows
    follow each other, its first with face "" or 0); the last image's rows are dropped (they may be short of a
    row), as is everything from a row that does not parse."""
    lines = data.splitlines(keepends=True)
    header = ",".join(CSV_COLUMNS).encode() + b"\n"
    if not lines or lines[0] != header:
        return [], 0
    groups: list[tuple[str, bool, int]] = []  # image, is an error row, byte offset where its rows start
    offset = len(header)
    for line in lines[1:]:
        row = next(csv.reader(io.StringIO(line.decode("utf-8", "replace"))), [])
        if not line.endswith(b"\n") or len(row) != len(CSV_COLUMNS):
            break
        if not groups or groups[-1][0] != row[0] or row[3] in ("", "0"):
            groups.append((row[0], bool(row[-1]), offset))
        offset += len(line)
    if not groups:
        return [], len(header)
    return [(image, failed) for image, failed, _ in groups[:-1]], groups[-1][2]
