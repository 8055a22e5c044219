"""Running the Predictor over many inputs and writing results (table, JSONL, CSV, annotated copies)."""

from __future__ import annotations

import csv
import itertools
import json
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

from ..draw import annotate
from ..imageio import ImageLoadError, save_image
from ..lazyimage import LazyImage
from ..types import ImageResult
from .predictor import Predictor, expand_inputs, face_predictions

#: what `predict --fast` runs: the built-in "fast" model (instead of "default") and RetinaFace on the image
#: scaled so its longer side (with the detector's padding) is at most this many pixels (instead of 640)
FAST_MODEL, FAST_DETECTOR_SIDE = "fast", 320

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
                reason = r.error.removeprefix(f"{r.image}: ")  # the message names the file already
                self.stream.write(f"{r.image}: error: {reason}\n")
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


def predict_stream(predictor: Predictor, paths: Iterable[str], *, workers: int = 2,
                   batch_images: int = 8) -> Iterator[tuple[ImageResult, LazyImage | None]]:
    """Like `Predictor.predict_many` (same results, same order, bad files yield an error result and image
    None), faster on folders: `workers` threads decode, detect and crop ahead (Pillow, OpenCV and
    onnxruntime release the GIL) while this thread estimates the faces of up to `batch_images` ready images
    in one batch. Each image is decoded only as far as its answer needs (see `Predictor.predict_image`); the
    LazyImage yielded decodes it at full size on demand (`image.full()`). At most 2 * workers + batch_images
    images are held at once, so memory stays flat on any folder.
    """
    from concurrent.futures import ThreadPoolExecutor

    def front(path: str) -> tuple[ImageResult, LazyImage | None, list, np.ndarray | None]:
        try:
            image = LazyImage.open(path)
            dets, skipped = predictor.detect(image)
            crops = predictor.crop(image, dets)
        except (ImageLoadError, ValueError) as exc:
            return ImageResult(str(path), 0, 0, [], error=str(exc)), None, [], None
        return ImageResult(str(path), image.width, image.height, [], skipped_faces=skipped), image, dets, crops

    todo = iter(paths)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="agegender-predict") as pool:
        pending: deque = deque(pool.submit(front, p) for p in itertools.islice(todo, 2 * workers + batch_images))
        while pending:
            group = [pending.popleft().result()]  # in input order; then whatever is already done behind it
            while pending and len(group) < batch_images and pending[0].done():
                group.append(pending.popleft().result())
            pending.extend(pool.submit(front, p) for p in itertools.islice(todo, len(group)))
            crops = [g[3] for g in group if g[3] is not None and len(g[3])]
            ages = p_female = np.zeros(0, np.float32)
            k = 0
            if crops:
                ages, p_female = predictor.estimate_crops(np.concatenate(crops))
            for result, image, dets, _ in group:
                if dets:
                    result.faces = face_predictions(dets, ages[k : k + len(dets)], p_female[k : k + len(dets)])
                    k += len(dets)
                yield result, image


def use_fast_detector(predictor: Predictor) -> None:
    """Cap the predictor's RetinaFace input side at FAST_DETECTOR_SIDE (other detectors are left as they are)."""
    if hasattr(predictor.detector, "max_side"):
        predictor.detector.max_side = min(predictor.detector.max_side, FAST_DETECTOR_SIDE)  # type: ignore[attr-defined]


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
    fast: bool = False,
    workers: int = 2,
    device: str = "cpu",
) -> int:
    """Predict every input, streaming results; returns 0 if all inputs were read, 1 if any failed.

    fast: the lighter model and a smaller detector input (see FAST_MODEL). workers: decoding and detection
    threads of the folder pipeline (`predict_stream`). device: cpu or cuda[:N] (see Predictor)."""
    from tqdm import tqdm

    paths = expand_inputs(inputs)
    if not paths:
        print("agegender predict: no images found in the given inputs", file=sys.stderr)
        return 1
    if fast and model == "default":
        model = FAST_MODEL
    # the pipeline's threads are its parallelism: one onnxruntime thread per session (more only spin)
    pred = predictor or Predictor(model, detector, score_threshold=threshold, max_faces=max_faces, min_face=min_face,
                                  flip_tta=flip_tta, device=device, threads=1 if workers > 1 else None)
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
        if fast:
            use_fast_detector(pred)
        for result, image in predict_stream(pred, paths, workers=workers):
            if result.error:
                failures += 1
                bar.write(f"agegender predict: {result.error}", file=sys.stderr)
            for k, n in result.skipped_faces.items():
                skipped[k] = skipped.get(k, 0) + n
            writer.write(result)
            if save_dir and image is not None:
                try:  # drawn on the full-size image (decoded now), never on what the faces were cut from
                    save_image(os.path.join(save_dir, annotated_name(result.image, used)),
                               annotate(image.full(), result.faces))
                except ImageLoadError as exc:
                    failures += 1
                    bar.write(f"agegender predict: annotated copy not written: {exc}", file=sys.stderr)
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
