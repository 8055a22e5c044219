"""Running the Predictor over many inputs and writing results (table, JSONL, CSV, annotated copies)."""

from __future__ import annotations

import csv
import io
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
from ..extras import require
from ..imageio import STDIN, ImageLoadError, save_image
from ..lazyimage import LazyImage
from ..types import ImageResult
from .partial_results import CSV_COLUMNS, PartialResults
from .predictor import Predictor, expand_inputs, face_predictions
from .settings import FAST_DETECTOR_SIDE, FAST_MODEL, PredictorSpec, predictor_settings, use_fast_detector

__all__ = ["CSV_COLUMNS", "FAST_DETECTOR_SIDE", "FAST_MODEL", "ResultWriter", "predict_stream", "run_predict",
           "use_fast_detector"]

class ResultWriter:
    """Streams ImageResults to a text stream as a table, JSON lines or CSV (one row per face). Each image's
    text is written in one piece and flushed (what a resumed run reads back: `partial_results`). header:
    whether a CSV starts with its header row (not when appending to one)."""

    def __init__(self, stream: IO[str], fmt: str, header: bool = True) -> None:
        if fmt not in ("table", "jsonl", "csv"):
            raise ValueError(f"unknown format {fmt!r}")
        self.stream, self.fmt = stream, fmt
        if fmt == "csv" and header:
            csv.writer(stream, lineterminator="\n").writerow(CSV_COLUMNS)

    def write(self, r: ImageResult) -> None:
        self.stream.write(self.text(r))
        self.stream.flush()

    def text(self, r: ImageResult) -> str:
        """The image's line(s) in this writer's format."""
        if self.fmt == "jsonl":
            return json.dumps(r.to_json()) + "\n"
        if self.fmt == "csv":
            buf = io.StringIO()
            rows = csv.writer(buf, lineterminator="\n")
            if r.error or not r.faces:
                rows.writerow([r.image, r.width, r.height, *[""] * (len(CSV_COLUMNS) - 4), r.error or ""])
            for i, f in enumerate(r.faces):
                j = f.to_json()
                low, high = j.get("age_range", ("", ""))
                rows.writerow([r.image, r.width, r.height, i, *j["box"], j["score"], j["age"], low, high,
                               j["gender"], j["gender_probability"], ""])
            return buf.getvalue()
        if r.error:
            reason = r.error.removeprefix(f"{r.image}: ")  # the message names the file already
            return f"{r.image}: error: {reason}\n"
        lines = [f"{r.image} ({r.width}x{r.height}): {len(r.faces)} face(s){skipped_note(r)}\n"]
        for i, f in enumerate(r.faces):
            x1, y1, x2, y2 = (round(v) for v in f.detection.box)
            span = f"  range {f.age_range[0]:.0f}-{f.age_range[1]:.0f}" if f.age_range else ""
            lines.append(f"  #{i + 1}  age {f.age:5.1f}  {f.gender.label:<6} (p={f.gender_probability:.2f})  "
                         f"box [{x1}, {y1}, {x2}, {y2}]  score {f.detection.score:.2f}{span}\n")
        return "".join(lines)


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
            spans = None
            k = 0
            if crops:
                ages, p_female, spans = predictor.estimate_crops(np.concatenate(crops))
            for result, image, dets, _ in group:
                if dets:
                    part = slice(k, k + len(dets))
                    result.faces = face_predictions(dets, ages[part], p_female[part],
                                                    None if spans is None else spans[part])
                    k += len(dets)
                yield result, image


def annotated_name(path: str, used: set[str]) -> str:
    """A unique output file name for the annotated copy of `path` (JPEG)."""
    stem = "stdin" if path == STDIN else Path(path).stem or "image"
    name, k = f"{stem}.jpg", 1
    while name in used:
        name, k = f"{stem}_{k}.jpg", k + 1
    used.add(name)
    return name


ENGINES = ("local", "ray")


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
    max_side: int | None = None,
    refine_small_faces: bool = True,
    fast: bool = False,
    workers: int = 2,
    device: str = "cpu",
    engine: str = "local",
    address: str | None = None,
    num_workers: int | None = None,
    part_images: int = 1000,
) -> int:
    """Predict every input, streaming results; returns 0 if all inputs were read, 1 if any failed.

    fast: the lighter model and a smaller detector input (see FAST_MODEL). max_side: the detector's input side
    (Predictor's detector_max_side; named, it wins over fast's); refine_small_faces: finer passes where a big
    photo shows small faces or none (see Predictor). workers: decoding and detection
    threads of the folder pipeline (`predict_stream`; per Ray worker with engine "ray": 1). device: cpu or
    cuda[:N] (see Predictor).
    fmt "parquet": `output` is a results folder (`ParquetResults`, `part_images` images per file); images
    already in it are skipped, so rerunning a killed run resumes it; an image named twice runs once.
    engine "ray": the Ray cluster at `address` (None: a local one), `num_workers` actors (see ray_engine).
    """
    paths = expand_inputs(inputs)
    if not paths:
        print("agegender predict: no images found in the given inputs", file=sys.stderr)
        return 1
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if engine == "ray":
        if save_dir or predictor or device != "cpu":
            raise ValueError("--save-dir, --device (and a ready Predictor) work with the local engine only")
        if STDIN in paths:
            raise ValueError("standard input (-) is read by the local engine only")
        require("ray", "--engine ray")  # before anything is loaded: the hint names 'ray', not 'parquet'
    # the pipeline's threads are its parallelism: one onnxruntime thread per session (more only spin)
    spec = PredictorSpec(model, detector, score_threshold=threshold, max_faces=max_faces, min_face=min_face,
                         detector_max_side=max_side, refine_small_faces=refine_small_faces,
                         flip_tta=flip_tta, fast=fast, device=device,
                         threads=1 if workers > 1 else None)
    pred = predictor or spec.build()  # also on the Ray driver: a bad model fails here, and names the results
    if predictor and fast and max_side is None:
        use_fast_detector(pred)  # a ready predictor keeps its own model and flip

    def results(todo: list[str]) -> Iterator[tuple[ImageResult, LazyImage | None]]:
        if engine == "local":
            return predict_stream(pred, todo, workers=workers)
        from .ray_engine import predict_on_ray

        found = predict_on_ray(todo, spec, address=address, num_workers=num_workers, preserve_order=fmt != "parquet")
        return ((r, None) for r in found)

    if fmt == "parquet":
        return _predict_to_parquet(list(dict.fromkeys(paths)), pred, results, output, part_images, progress)
    return _predict_to_stream(paths, pred, results, fmt, output, save_dir, progress)


def _progress(total: int, progress: bool):  # -> tqdm
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="predict", disable=not progress or total < 2, file=sys.stderr)


class _Tally:
    """Failures and skipped-face counts over a run, for the exit code and the closing summary line."""

    def __init__(self) -> None:
        self.failures = 0
        self.skipped: dict[str, int] = {}

    def add(self, result: ImageResult, bar) -> None:
        if result.error:
            self.failures += 1
            bar.write(f"agegender predict: {result.error}", file=sys.stderr)
        for k, n in result.skipped_faces.items():
            self.skipped[k] = self.skipped.get(k, 0) + n

    def summary(self, pred: Predictor) -> None:
        if self.skipped:
            print(f"agegender predict: faces found but not estimated: {skipped_text(self.skipped)} "
                  f"(--min-face {pred.min_face:g} px, --max-faces {pred.max_faces})", file=sys.stderr)


def _predict_to_stream(paths: list[str], pred: Predictor, results, fmt: str, output: str | None,
                       save_dir: str | None, progress: bool) -> int:
    """Table, JSONL or CSV to standard output, or to the file `output` through its partial file: a JSONL or
    CSV run that was killed or interrupted resumes, and `output` appears only when complete (partial_results)."""
    if not output:
        return _write_results(paths, pred, results, ResultWriter(sys.stdout, fmt), save_dir, progress)
    from .result_rows import model_info

    info = model_info(pred.estimator)
    sink = PartialResults(output, fmt, {"model": info.name, "model_version": info.version,
                                        **predictor_settings(pred)})
    try:
        todo = sink.todo(paths)
        if len(todo) < len(paths):
            print(f"agegender predict: resuming {output}: {len(paths) - len(todo)} of {len(paths)} images are "
                  f"in its partial results already; running the other {len(todo)}", file=sys.stderr)
        used: set[str] = set()
        for image, failed in sink.records:  # the annotated copies' names, as the first run gave them
            if not failed:
                annotated_name(image, used)
        code = _write_results(todo, pred, results, ResultWriter(sink.stream, fmt, header=sink.is_new), save_dir,
                              progress, failures=sink.errors, used=used)
        sink.finish()
        return code
    except BaseException:
        sink.close()
        if fmt == "table":  # a table is not read back: nothing to keep
            sink.discard()
        else:
            print(f"agegender predict: stopped; the results written so far are kept in {sink.path}: the same "
                  "command resumes", file=sys.stderr)
        raise


def _write_results(paths: list[str], pred: Predictor, results, writer: ResultWriter, save_dir: str | None,
                   progress: bool, failures: int = 0, used: set[str] | None = None) -> int:
    """Run `results(paths)` into `writer`, each image's annotated copy (with save_dir) before its result: a
    written result says the image is done. failures: those of images done before (a resumed run). Returns the
    exit status: 1 if any image failed."""
    tally, used = _Tally(), set() if used is None else used
    tally.failures = failures
    bar = _progress(len(paths), progress)
    for result, image in results(paths) if paths else ():
        tally.add(result, bar)
        if save_dir and image is not None:
            try:  # drawn on the full-size image (decoded now), never on what the faces were cut from
                save_image(os.path.join(save_dir, annotated_name(result.image, used)),
                           annotate(image.full(), result.faces))
            except ImageLoadError as exc:
                tally.failures += 1
                bar.write(f"agegender predict: annotated copy not written: {exc}", file=sys.stderr)
        writer.write(result)
        bar.update(1)
    bar.close()
    tally.summary(pred)
    return 1 if tally.failures else 0


def _predict_to_parquet(paths: list[str], pred: Predictor, results, output: str | None, part_images: int,
                        progress: bool) -> int:
    """Parquet results in the folder `output`, resuming it: only images not yet in it run."""
    from .parquet_results import ParquetResults
    from .result_rows import model_info

    if not output:
        raise ValueError("--format parquet writes a folder: give it with -o OUT")
    tally = _Tally()
    with ParquetResults(output, model_info(pred.estimator), predictor_settings(pred), part_images) as sink:
        todo = [p for p in paths if p not in sink.done]
        if len(todo) < len(paths):
            print(f"agegender predict: {len(paths) - len(todo)} of {len(paths)} images already in {output}; "
                  f"running the other {len(todo)}", file=sys.stderr)
        bar = _progress(len(todo), progress)
        for result, _ in results(todo):
            tally.add(result, bar)
            sink.add(result)
            bar.update(1)
        bar.close()
    tally.summary(pred)
    return 1 if any(sink.done.get(p) for p in paths) else 0
