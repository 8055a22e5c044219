"""Decoding only what the answer needs (agegender.lazyimage), on real photos: reduced JPEG views give the
boxes a full decode gives, EXIF orientations map back, small faces in a large photo are still found and cut
from enough pixels, the decode rules (modes, errors, limits) hold, and the CLI, server and prepare use it."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from agegender import Predictor
from agegender.align import ArraySource, crop_faces, crop_scale
from agegender.detectors import create_detector
from agegender.detectors.base import detect_faces, input_size
from agegender.imageio import ImageLoadError, ImageTooLargeError, decode_image, load_image
from agegender.lazyimage import LazyImage, ViewSource, crop_faces_from, crop_reduction
from agegender.types import Detection, Preprocessing

from .conftest import UTK_DIR, cli, need, need_module

ORIENTATIONS = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
                7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}


def jpeg_bytes(rgb: np.ndarray, orientation: int = 1, quality: int = 92, mode: str = "RGB") -> bytes:
    """`rgb` stored so that a viewer applying EXIF `orientation` shows it upright."""
    img = Image.fromarray(rgb)
    undo = ORIENTATIONS[orientation]
    stored = (img if undo is None else img.transpose(undo)).convert(mode)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=quality, exif=exif.tobytes())
    return buf.getvalue()


def phone_photo(portrait: Path, size: tuple[int, int] = (3000, 4000)) -> tuple[np.ndarray, bytes]:
    """A 12-megapixel phone-style photo from a real portrait: upright pixels and the JPEG stored turned,
    with EXIF orientation 6."""
    upright = cv2.resize(load_image(portrait), size, interpolation=cv2.INTER_CUBIC)
    return upright, jpeg_bytes(upright, 6, quality=90)


def box_gap(a: Detection, b: Detection) -> float:
    return float(np.abs(np.array(a.box) - np.array(b.box)).max())


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor()


def test_reduced_decode_gives_the_same_boxes_and_estimates_on_portraits(predictor, frl_images):
    """A 1350x1800 portrait is decoded at 1/2 for detection and its face cut from that view: the boxes and
    landmarks of a full decode within 2 pixels, the same genders, ages within 1.5 years (0.3 on average)."""
    age_gaps = []
    for path in frl_images[::3]:
        image = LazyImage.open(path)
        lazy = predictor.predict(image).faces
        full = predictor.predict_array(load_image(path)).faces
        assert image.decoded_reductions == [2], path  # never decoded at full size
        assert len(lazy) == len(full) == 1
        (a,), (b,) = lazy, full
        assert box_gap(a.detection, b.detection) <= 2.0, path
        assert np.abs(a.detection.landmarks - b.detection.landmarks).max() <= 2.0, path
        assert a.gender is b.gender and abs(a.gender_probability - b.gender_probability) < 0.05, path
        age_gaps.append(abs(a.age - b.age))
    assert max(age_gaps) <= 1.5 and np.mean(age_gaps) <= 0.3, age_gaps


@pytest.mark.parametrize("max_side, reduction", [(640, 2), (160, 8)])
def test_exif_orientations_map_reduced_views_back(frl_images, max_side, reduction):
    """Every EXIF orientation of a portrait whose sides are not multiples of the reduction: boxes from the
    reduced view within 3 pixels of a full decode's, and the view lies exactly on the full image."""
    rgb = np.ascontiguousarray(load_image(frl_images[3])[:1797, :1349])
    detector = create_detector("retinaface", max_side=max_side, min_face=0)
    for orientation in ORIENTATIONS:
        data = jpeg_bytes(rgb, orientation)
        image = LazyImage.from_bytes(data, f"o{orientation}")
        assert image.size == (1349, 1797)
        (lazy,) = detect_faces(detector, image)
        full = decode_image(data)
        assert full.shape == rgb.shape
        (ref,) = detector.detect(full)
        assert image.decoded_reductions == [reduction]
        assert box_gap(lazy, ref) <= 3.0, (orientation, lazy.box, ref.box)
        # the whole image shrunk 16x from the view and from the full decode: no shift between them
        w, h = 1349 // 16, 1797 // 16
        from_view = ViewSource(image.view_at(reduction)).area(0, 0, 1349, 1797, w, h)
        from_full = ArraySource(full).area(0, 0, 1349, 1797, w, h)
        grey = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float64) for x in (from_full, from_view)]
        (dx, dy), _ = cv2.phaseCorrelate(*grey)
        assert abs(dx) < 0.1 and abs(dy) < 0.1, (orientation, dx, dy)
        assert np.abs(from_view.astype(int) - from_full).mean() < 3, orientation


def _big_photo_with_small_faces(frl_images) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """4000 x 3000: a portrait upscaled to 2250 x 3000 on the left, and on the right six real UTKFace faces
    of 150 to 400 pixels on a plain background. Returns the pixels and the small faces' (x, y, side)."""
    canvas = np.full((3000, 4000, 3), 170, np.uint8)
    canvas[:, :2250] = cv2.resize(load_image(frl_images[5]), (2250, 3000), interpolation=cv2.INTER_CUBIC)
    files = sorted(need(UTK_DIR).glob("*.jpg"))[1000:7000:1000]
    placed = []
    for i, (f, side) in enumerate(zip(files, (150, 180, 260, 300, 340, 400))):
        x, y = 2400 + (i % 2) * 750, 200 + (i // 2) * 950
        canvas[y : y + side, x : x + side] = cv2.resize(load_image(f), (side, side), interpolation=cv2.INTER_AREA)
        placed.append((x, y, side))
    return canvas, placed


def test_small_faces_in_a_large_photo_are_found_and_cut_from_enough_pixels(predictor, frl_images, tmp_path):
    """Small faces would have under 2 real pixels per crop pixel on the detection view: the image is decoded
    again at a finer reduction (or full size) for them, and they are found and estimated as from a full
    decode. With the default detector (640 px input, the 1/8 view) and with a 1600 px one (the 1/2 view),
    which finds the smallest faces too; the large face is still cut from a reduced view."""
    canvas, placed = _big_photo_with_small_faces(frl_images)
    path = tmp_path / "big.jpg"
    path.write_bytes(jpeg_bytes(canvas, quality=95))
    for pred in (predictor, Predictor(predictor.estimator, create_detector("retinaface", max_side=1600, min_face=0))):
        image = LazyImage.open(path)
        lazy = pred.predict(image).faces
        full = pred.predict_array(load_image(path)).faces
        det_reduction = {640: 8, 1600: 2}[pred.detector.max_side]
        assert len(lazy) == len(full)
        small = []
        for x, y, side in placed:
            inside = [f for f in lazy if x < (f.detection.box[0] + f.detection.box[2]) / 2 < x + side
                      and y < (f.detection.box[1] + f.detection.box[3]) / 2 < y + side]
            if not inside:
                continue
            (a,) = inside
            (b,) = [f for f in full if box_gap(f.detection, a.detection) < 10]
            small.append(crop_reduction(a.detection, pred.preprocessing))  # the coarsest view it may be cut from
            assert min(image.decoded_reductions) <= small[-1]
            # within 3 px, or 2% of the face's width for a face a finer detection pass found on another view
            assert box_gap(a.detection, b.detection) <= max(3.0, 0.02 * a.detection.width)
            assert a.gender is b.gender and abs(a.age - b.age) <= 2.0, (a.age, b.age)
        assert len(small) >= {640: 3, 1600: 5}[pred.detector.max_side], small
        assert min(small) < det_reduction and min(image.decoded_reductions) == min(small)  # decoded finer for them
        assert min(small) == 1  # the smallest face found is cut from the full-size decode
        big = max(lazy, key=lambda f: f.detection.area)
        # the portrait's face (1,300 px wide) is cut from a reduced view: the detection view, or 1/4 where the
        # model's tight crop (the default: the box itself at 140 px) needs more than 1/8 gives it
        assert crop_reduction(big.detection, pred.preprocessing) >= min(det_reduction, 4)
        big_full = max(full, key=lambda f: f.detection.area)
        assert big.gender is big_full.gender and abs(big.age - big_full.age) <= 2.0
        assert max(image.decoded_reductions) == det_reduction


def test_phone_photo_boxes_in_displayed_pixels_and_annotated_at_full_size(predictor, frl_images, tmp_path):
    """A 12-megapixel EXIF-6 JPEG: detected on the 1/8 view, reported in the upright 3000 x 4000 image's
    pixels (as a full decode reports them), and `--save-dir` draws on the full-size upright image."""
    from agegender.inference.batch import run_predict

    upright, data = phone_photo(frl_images[0])
    path = tmp_path / "phone.jpg"
    path.write_bytes(data)
    image = LazyImage.open(path)
    (lazy,) = predictor.predict(image).faces
    (full,) = predictor.predict_array(load_image(path)).faces
    assert image.size == (3000, 4000) and image.decoded_reductions == [8]
    assert box_gap(lazy.detection, full.detection) <= 5.0  # one pixel of the detector's 343 x 457 input is 8.75
    assert lazy.gender is full.gender and abs(lazy.age - full.age) <= 1.5
    out = tmp_path / "out.jsonl"
    assert run_predict([str(path)], fmt="jsonl", output=str(out), save_dir=str(tmp_path / "annotated"),
                       progress=False) == 0
    row = json.loads(out.read_text())
    assert (row["width"], row["height"]) == (3000, 4000)
    assert row["faces"][0]["box"] == pytest.approx(list(lazy.detection.box), abs=0.1)
    annotated = load_image(tmp_path / "annotated" / "phone.jpg")
    assert annotated.shape == (4000, 3000, 3)
    assert np.abs(annotated.astype(int) - upright).mean() < 6  # the upright photo with a box drawn on it


def test_other_formats_are_decoded_once_at_full_size(predictor, frl_images, tmp_path):
    """No reduced decoding for PNG: one full-size decode, the very result of the array path."""
    path = tmp_path / "portrait.png"
    Image.open(frl_images[1]).save(path)
    image = LazyImage.open(path)
    assert predictor.predict(image).to_json() == {**predictor.predict_array(load_image(path)).to_json(),
                                                  "image": str(path)}
    assert image.decoded_reductions == [1]


def test_decode_rules_hold_on_reduced_views(predictor, frl_images, tmp_path):
    """CMYK and greyscale JPEGs, truncated files and the pixel limits behave on the reduced path as
    load_image/decode_image do."""
    rgb = load_image(frl_images[2])
    ref = LazyImage.from_bytes(jpeg_bytes(rgb, quality=95)).view_at(2).pixels
    cmyk = LazyImage.from_bytes(jpeg_bytes(rgb, quality=95, mode="CMYK"))
    assert np.abs(cmyk.view_at(2).pixels.astype(int) - ref).mean() < 3 and cmyk.decoded_reductions == [2]
    grey = LazyImage.from_bytes(jpeg_bytes(rgb, mode="L")).view_at(4).pixels
    assert grey.shape == (450, 338, 3) and (grey[..., 0] == grey[..., 2]).all()
    for data in (jpeg_bytes(rgb, mode="CMYK"), jpeg_bytes(rgb, mode="L")):
        assert len(predictor.predict(LazyImage.from_bytes(data)).faces) == 1

    _, phone = phone_photo(frl_images[0])
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(phone[: len(phone) // 2])
    with pytest.raises(ImageLoadError) as reduced:
        predictor.predict(cut)
    with pytest.raises(ImageLoadError) as full:
        load_image(cut)
    assert str(reduced.value) == str(full.value) and "truncated image" in str(reduced.value)

    with pytest.raises(ImageTooLargeError) as lazy_err:
        LazyImage.from_bytes(phone, "phone", max_pixels=10_000_000)  # refused from the header, not decoded
    with pytest.raises(ImageTooLargeError) as eager_err:
        decode_image(phone, "phone", max_pixels=10_000_000)
    assert str(lazy_err.value) == str(eager_err.value)


def test_views_are_read_only_and_arrays_untouched(predictor, frl_images):
    image = LazyImage.open(frl_images[0])
    view = image.view_at(2)
    with pytest.raises(ValueError):
        view.pixels[0, 0] = 0
    rgb = load_image(frl_images[0])
    before = rgb.copy()
    predictor.predict(rgb)
    assert rgb.flags.writeable and np.array_equal(rgb, before)
    assert np.array_equal(np.asarray(LazyImage.from_bytes(Path(frl_images[0]).read_bytes())), rgb)


def test_crops_read_the_models_record(frl_images):
    """How many real pixels a face needs comes from the model's record (crop mode, margin, crop_size or
    size); a crop from a reduced view is close to the full-size crop; from the full-size view, identical."""
    path = frl_images[4]
    (det,) = create_detector("retinaface").detect(load_image(path))
    align112 = Preprocessing(crop="align5", margin=0.25, size=112)
    box160 = Preprocessing(crop="box", margin=0.3, size=128, crop_size=160)  # a box crop cut at 160, fed at 128
    assert crop_scale(det, Preprocessing(crop="box", margin=0.3, size=128)) < crop_scale(det, box160)
    assert crop_scale(det, box160) == pytest.approx(160 / (min(det.width, det.height) * 1.6))
    tiny_face = Detection((0.0, 0.0, 40.0, 40.0), 1.0)
    assert crop_reduction(tiny_face, box160) == 1  # 160 crop pixels from 64 image pixels: full size
    full = load_image(path)
    for prep in (align112, box160):
        exact = crop_faces_from(LazyImage.from_array(full), [det], prep)
        assert np.array_equal(exact, crop_faces(full, [det], prep))
        image = LazyImage.open(path)
        image.view_at(2)
        reduced = crop_faces_from(image, [det], prep)
        assert image.decoded_reductions == [2] and reduced.shape == exact.shape
        assert np.abs(reduced.astype(int) - exact).mean() < 3, prep


class RecordingDetector:
    """The real RetinaFace detector, noting the size of every image it is given."""

    def __init__(self) -> None:
        self.base = create_detector("retinaface", min_face=0)
        self.name, self.score_threshold, self.seen = "retinaface", self.base.score_threshold, []

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        return input_size(self.base, width, height)

    def detect(self, image: np.ndarray, **kwargs) -> list[Detection]:
        self.seen.append(image.shape[:2])
        return self.base.detect(image, **kwargs)


def test_server_uploads_are_decoded_as_far_as_needed(frl_images):
    """The server's inference (bytes in) detects on the 1/8 view of a 12-megapixel upload, gives the same
    JSON as Predictor.predict on it, and draws the annotated copy on the full-size upright image."""
    from agegender.server.service import PredictService

    _, data = phone_photo(frl_images[0])
    detector = RecordingDetector()
    service = PredictService(Predictor(detector=detector))
    try:
        out = service.predict(data, "phone.jpg", with_annotated=True)
    finally:
        service.close()
    assert detector.seen == [(500, 375)]  # 4000 x 3000 / 8, upright
    expected = Predictor(detector=create_detector("retinaface", min_face=0)).predict(LazyImage.from_bytes(data))
    assert {k: v for k, v in out.items() if k != "annotated_jpeg"} == {**expected.to_json(), "image": "phone.jpg"}
    annotated = Image.open(io.BytesIO(base64.b64decode(out["annotated_jpeg"])))
    assert annotated.size == (3000, 4000)


@pytest.mark.slow
def test_server_process_answers_a_phone_upload(frl_images):
    """The same through a real `agegender serve` process and HTTP."""
    need_module("fastapi")
    import httpx

    from agegender.server.process import serve_process

    _, data = phone_photo(frl_images[0])
    expected = Predictor().predict(LazyImage.from_bytes(data, "upload")).to_json()
    with serve_process(["--log-level", "warning"]) as url:
        r = httpx.post(url + "/v1/predict", content=data, headers={"Content-Type": "image/jpeg"}, timeout=120)
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["width"], got["height"]) == (expected["width"], expected["height"]) == (3000, 4000)
    (a,), (b,) = got["faces"], expected["faces"]  # the server runs 1 onnxruntime thread: the last digit may differ
    assert a["box"] == pytest.approx(b["box"], abs=0.15) and a["gender"] == b["gender"]
    assert a["age"] == pytest.approx(b["age"], abs=0.15)


def test_prepare_and_evaluate_read_large_photos_from_reduced_views(frl_images, tmp_path):
    """`agegender prepare` on large photos (2700 x 3600, one with EXIF orientation 6): each stored crop is
    the one cut from the reduced view, byte for byte; `agegender evaluate --mode end-to-end` on them gives
    what Predictor.predict gives."""
    from agegender.data.prepare import CropSpec, choose_face
    from agegender.imageio import save_image

    rows = []
    for i, portrait in enumerate(frl_images[10:13]):
        big = cv2.resize(load_image(portrait), (2700, 3600), interpolation=cv2.INTER_CUBIC)
        (tmp_path / f"p{i}.jpg").write_bytes(jpeg_bytes(big, 6 if i == 1 else 1))
        rows.append({"path": f"p{i}.jpg", "age": 20 + i, "gender": "female", "split": "train"})
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "age", "gender", "split"])
        w.writeheader()
        w.writerows(rows)
    cli("prepare", "csv", str(tmp_path / "labels.csv"), "-o", str(tmp_path / "data"), "--no-progress")
    with open(tmp_path / "data" / "labels.csv", newline="") as f:
        prepared = list(csv.DictReader(f))
    assert len(prepared) == 3
    detector, prep = create_detector("retinaface"), CropSpec().preprocessing()
    for row in prepared:
        image = LazyImage.open(row["source"])
        face = choose_face(detect_faces(detector, image), None)
        assert image.decoded_reductions == [4]  # 3600 / 4 = 900 >= what the detector's 640 input needs
        crop = crop_faces_from(image, [face], prep)[0]
        save_image(tmp_path / "expected.jpg", crop, quality=95)
        assert (tmp_path / "expected.jpg").read_bytes() == (tmp_path / "data" / row["file"]).read_bytes()
    # end-to-end evaluation reads the same files the same way Predictor.predict does (and --fast as predict --fast)
    from agegender.inference.batch import use_fast_detector

    for fast in (False, True):
        out = tmp_path / f"eval-{fast}"
        cli("evaluate", "default", str(tmp_path / "data"), "--split", "train", "--mode", "end-to-end", "-o", str(out),
            "--no-progress", *(["--fast"] if fast else []))
        report = json.loads((out / "report.json").read_text())
        assert report["fast_detector"] is fast and report["overall"]["faces_found"] == 1.0
        predictor = Predictor()
        if fast:
            use_fast_detector(predictor)
        with open(out / "predictions.csv", newline="") as f:
            for row in csv.DictReader(f):
                (face,) = predictor.predict(row["source"]).faces
                assert float(row["pred_age"]) == pytest.approx(face.age, abs=0.01)
