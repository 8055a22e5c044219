"""The real detector and the Predictor on real photos (the 40 whole portraits, the built-in example)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from agegender import Gender, Predictor
from agegender.detectors import create_detector
from agegender.imageio import ImageLoadError, load_image


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor()


def test_retinaface_one_face_per_portrait(frl_images):
    det = create_detector("retinaface")
    assert len(frl_images) == 40
    for p in frl_images:
        img = load_image(p)
        faces = det.detect(img)
        assert len(faces) == 1, p
        x1, y1, x2, y2 = faces[0].box
        assert 0 <= x1 < x2 <= img.shape[1] and 0 <= y1 < y2 <= img.shape[0]
        assert faces[0].landmarks.shape == (5, 2)
        # eyes above the mouth, in the box
        lm = faces[0].landmarks
        assert lm[:2, 1].max() < lm[3:, 1].min()


def test_no_face_in_blank_or_noise():
    det = create_detector("retinaface")
    assert det.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    rng = np.random.default_rng(0)
    assert det.detect(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)) == []


def test_predictor_never_draws_on_its_input(predictor, frl_images):
    img = load_image(frl_images[0])
    before = img.copy()
    r = predictor.predict(img)
    assert np.array_equal(img, before)
    assert len(r.faces) == 1 and 0 <= r.faces[0].age <= 100
    assert 0.5 <= r.faces[0].gender_probability <= 1.0


def test_portrait_genders_mostly_right(predictor, frl_images):
    import csv

    with open(frl_images[0].parent.parent / "labels.csv") as f:
        labels = {row["file"].split("/")[-1]: row for row in csv.DictReader(f)}
    right = 0
    for p in frl_images:
        f = predictor.predict(p).faces[0]
        right += f.gender is Gender.parse(labels[p.name]["gender"])
    assert right >= 30  # 40 young adults; the measured figure is in the README's benchmark


def test_bad_inputs_are_reported_and_batch_goes_on(predictor, tmp_path, frl_images):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not an image")
    with pytest.raises(ImageLoadError, match="not an image"):
        predictor.predict(bad)
    results = [r for r, _ in predictor.predict_many([bad, frl_images[0], tmp_path / "missing.png"])]
    assert [bool(r.error) for r in results] == [True, False, True]
    assert len(results[1].faces) == 1


def test_cli_predict_jsonl_contract_and_save_dir(frl_images, tmp_path):
    paths = [str(p) for p in frl_images[:6]]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = subprocess.run(
        [sys.executable, "-m", "agegender.cli", "predict", *paths, str(bad), "--format", "jsonl",
         "--save-dir", str(tmp_path / "annotated"), "--no-progress"],
        capture_output=True, text=True,
    )
    assert out.returncode == 1  # one input failed; the rest ran
    assert "broken.jpg" in out.stderr and "Traceback" not in out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 7
    for obj, path in zip(lines, paths):
        assert obj["image"] == path and obj["width"] == 1350 and obj["height"] == 1800
        (face,) = obj["faces"]
        assert set(face) == {"box", "score", "age", "age_range", "gender", "gender_probability"}
        assert face["gender"] in ("male", "female") and 0.5 <= face["gender_probability"] <= 1
        assert face["age_range"][0] < face["age"] < face["age_range"][1]
        assert len(face["box"]) == 4
    assert "error" in lines[-1]
    assert sorted(p.name for p in (tmp_path / "annotated").iterdir()) == sorted(p.name for p in frl_images[:6])
    annotated = load_image(tmp_path / "annotated" / frl_images[0].name)
    assert not np.array_equal(annotated, load_image(frl_images[0]))


def test_cli_predict_builtin_example():
    out = subprocess.run([sys.executable, "-m", "agegender.cli", "predict"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "1 face(s)" in out.stdout and "female" in out.stdout


def test_import_does_not_pull_torch():
    code = (
        "import sys, numpy, agegender; agegender.Predictor().predict(numpy.zeros((64, 64, 3), 'uint8'));"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_threshold_applies_to_any_detector_and_out_of_range_settings_are_refused(predictor):
    """--threshold with dlib's HOG detector (which takes none itself) keeps the faces it scores above the
    threshold, the same boxes and answers as without it (the example photo: its face at 0.77, and a false
    one at 0.53); a threshold outside 0..1 or a negative face setting is refused in one line."""
    from agegender.server.service import EXAMPLE_IMAGE, PredictService

    from .conftest import need_module

    need_module("dlib", "the dev extra has dlib-bin")
    photo = load_image(EXAMPLE_IMAGE)
    every = Predictor(detector="dlib-hog").predict(photo).faces
    kept = Predictor(detector="dlib-hog", score_threshold=0.6).predict(photo).faces
    assert len(kept) < len(every)  # the threshold takes something away here
    assert [(f.detection.box, f.age) for f in kept] == \
        [(f.detection.box, f.age) for f in every if f.detection.score > 0.6]
    assert PredictService(Predictor(detector="dlib-hog", score_threshold=0.3)).min_threshold == 0.3
    for bad, flag in (({"score_threshold": 1.5}, "--threshold"), ({"score_threshold": -0.1}, "--threshold"),
                      ({"min_face": -1}, "--min-face"), ({"max_faces": -1}, "--max-faces")):
        with pytest.raises(ValueError, match=flag):
            Predictor(**bad)
    out = subprocess.run([sys.executable, "-m", "agegender.cli", "predict", "--threshold", "2", "--no-progress"],
                         capture_output=True, text=True)
    assert out.returncode == 1 and out.stderr.strip() == \
        "agegender predict: error: score_threshold (--threshold) is a detector score within 0..1, got 2"
