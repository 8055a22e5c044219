"""Running the Predictor over many inputs and writing results (table, JSONL, CSV, annotated copies)."""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from ..draw import annotate
from ..imageio import save_image
from ..types import ImageResult
from .predictor import Predictor, expand_inputs

CSV_COLUMNS = ["image", "width", "height", "face", "x1", "y1", "x2", "y2", "score", "age", "gender",
               "gender_probability", "error"]


class ResultWriter:
    """Streams ImageResults to a text stream as a table, JSON lines or CSV (one row per face)."""

    def __init__(self, stream: IO[str], fmt: str) -> None:
        if fmt not in ("table", "jsonl", "csv"):
            raise ValueError(f"unknown format {fmt!r}")
        self.stream, self.fmt = stream, fmt
        self._csv = csv.writer(stream, lineterminator="\n") if fmt == "csv" else None
        if self._csv:
            self._csv.writerow(CSV_COLUMNS)

    def write(self, r: ImageResult) -> None:
        if self.fmt == "jsonl":
            self.stream.write(json.dumps(r.to_json()) + "\n")
        elif self._csv is not None:
            if r.error or not r.faces:
                self._csv.writerow([r.image, r.width, r.height, "", "", "", "", "", "", "", "", "", r.error or ""])
            for i, f in enumerate(r.faces):
                j = f.to_json()
                self._csv.writerow([r.image, r.width, r.height, i, *j["box"], j["score"], j["age"], j["gender"],
                                    j["gender_probability"], ""])
        else:
            if r.error:
                self.stream.write(f"{r.image}: error: {r.error}\n")
                return
            self.stream.write(f"{r.image} ({r.width}x{r.height}): {len(r.faces)} face(s){skipped_note(r)}\n")
            for i, f in enumerate(r.faces):
                x1, y1, x2, y2 = (round(v) for v in f.detection.box)
                self.stream.write(
                    f"  #{i + 1}  age {f.age:5.1f}  {f.gender.label:<6} (p={f.gender_probability:.2f})  "
                    f"box [{x1}, {y1}, {x2}, {y2}]  score {f.detection.score:.2f}\n"
                )
        self.stream.flush()


def skipped_text(counts: dict[str, int]) -> str:
    """'2 too small, 95 over --max-faces' for skipped-face counts."""
    names = {"too_small": "too small", "over_max_faces": "over --max-faces"}
    return ", ".join(f"{n} {names.get(k, k)}" for k, n in counts.items())


def skipped_note(r: ImageResult) -> str:
    """' (2 too small, 95 over --max-faces not estimated)' for a result that skipped faces, else ''."""
    return f" ({skipped_text(r.skipped_faces)} not estimated)" if r.skipped_faces else ""


def annotated_name(path: str, used: set[str]) -> str:
    """A unique output file name for the annotated copy of `path` (JPEG)."""
    stem = Path(path).stem or "image"
    name, k = f"{stem}.jpg", 1
    while name in used:
        name, k = f"{stem}_{k}.jpg", k + 1
    used.add(name)
    return name


def run_predict(
    inputs: Iterable[str],
    *,
    model: str = "default",
    detector: str = "retinaface",
    fmt: str = "table",
    output: str | None = None,
    save_dir: str | None = None,
    max_faces: int | None = None,
    min_face: float = 10.0,
    threshold: float | None = None,
    flip_tta: bool = False,
    progress: bool = True,
    predictor: Predictor | None = None,
) -> int:
    """Predict every input, streaming results; returns 0 if all inputs were read, 1 if any failed."""
    from tqdm import tqdm

    paths = expand_inputs(inputs)
    if not paths:
        print("agegender predict: no images found in the given inputs", file=sys.stderr)
        return 1
    pred = predictor or Predictor(model, detector, score_threshold=threshold, max_faces=max_faces, min_face=min_face,
                                  flip_tta=flip_tta)
    # the results file is written under a temporary name and renamed when complete: a killed run never
    # leaves a half-written file under the name asked for
    tmp_output = Path(output).with_name(f".{Path(output).name}.tmp{os.getpid()}") if output else None
    if tmp_output:
        tmp_output.parent.mkdir(parents=True, exist_ok=True)
    stream: IO[str] = open(tmp_output, "w", encoding="utf-8") if tmp_output else sys.stdout  # noqa: SIM115
    failures = 0
    skipped: dict[str, int] = {}
    used: set[str] = set()
    try:
        writer = ResultWriter(stream, fmt)
        bar = tqdm(total=len(paths), unit="img", desc="predict", disable=not progress or len(paths) < 2,
                   file=sys.stderr)
        for result, image in pred.predict_many(paths):
            if result.error:
                failures += 1
                bar.write(f"agegender predict: {result.error}", file=sys.stderr)
            for k, n in result.skipped_faces.items():
                skipped[k] = skipped.get(k, 0) + n
            writer.write(result)
            if save_dir and image is not None:
                save_image(os.path.join(save_dir, annotated_name(result.image, used)), annotate(image, result.faces))
            bar.update(1)
        bar.close()
        if tmp_output:
            stream.close()
            os.replace(tmp_output, output)  # type: ignore[arg-type]
    finally:
        if tmp_output and not stream.closed:
            stream.close()
            tmp_output.unlink(missing_ok=True)
    if skipped:
        print(f"agegender predict: faces found but not estimated: {skipped_text(skipped)} "
              f"(--min-face {pred.min_face:g} px, --max-faces {pred.max_faces})", file=sys.stderr)
    return 1 if failures else 0
