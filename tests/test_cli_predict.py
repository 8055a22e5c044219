"""`agegender predict` as the README describes it, against its JSON-lines contract: `--format csv` (the same
results, one row per face), glob inputs, `--flip-tta`. Real portraits and UTKFace photos."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agegender.detectors import create_detector
from agegender.detectors.base import detect_faces
from agegender.imageio import save_image
from agegender.inference.batch import CSV_COLUMNS
from agegender.lazyimage import LazyImage, crop_faces_from
from agegender.models import load_estimator

from .conftest import UTK_DIR, cli, need


@pytest.fixture(scope="module")
def photos(frl_images, tmp_path_factory) -> Path:
    """A folder: 3 portraits and 2 UTKFace photos at the top, 1 portrait in a sub-folder, a text file."""
    d = tmp_path_factory.mktemp("photos")
    (d / "sub").mkdir()
    for p in frl_images[:3]:
        shutil.copy(p, d / p.name)
    for p in sorted(need(UTK_DIR).glob("*.jpg"))[::5000][:2]:
        shutil.copy(p, d / p.name)
    shutil.copy(frl_images[3], d / "sub" / frl_images[3].name)
    (d / "notes.txt").write_text("not a photo\n")
    return d


def jsonl(*args: str, check: bool = True) -> list[dict]:
    out = cli("predict", *args, "--format", "jsonl", "--no-progress", check=check)
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_csv_has_the_jsonl_results_one_row_per_face(photos, tmp_path):
    bad = tmp_path / "truncated.jpg"
    data = next(photos.glob("*.jpg")).read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    blank = tmp_path / "blank.png"  # a good image with no face in it
    save_image(blank, np.full((240, 320, 3), 128, np.uint8))
    inputs = [*sorted(map(str, photos.glob("*.jpg"))), str(bad), str(blank)]
    expected = jsonl(*inputs, check=False)
    out = cli("predict", *inputs, "--format", "csv", "--no-progress", check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr  # the bad file failed, the rest ran
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert rows[0] == CSV_COLUMNS
    got = [dict(zip(CSV_COLUMNS, r)) for r in rows[1:]]
    want = []
    for obj in expected:
        base = {"image": obj["image"], "width": str(obj["width"]), "height": str(obj["height"])}
        if obj.get("error") or not obj["faces"]:
            want.append(base | {k: "" for k in CSV_COLUMNS[3:-1]} | {"error": obj.get("error", "")})
        for i, f in enumerate(obj["faces"]):
            want.append(base | {"face": str(i), **dict(zip(("x1", "y1", "x2", "y2"), map(str, f["box"]))),
                                "score": str(f["score"]), "age": str(f["age"]), "age_low": str(f["age_range"][0]),
                                "age_high": str(f["age_range"][1]), "gender": f["gender"],
                                "gender_probability": str(f["gender_probability"]), "error": ""})
    assert got == want
    assert sum(r["face"] != "" for r in got) >= 5  # faces in every photo
    assert [r["image"] for r in got if r["error"]] == [str(bad)] and "truncated" in got[-2]["error"]
    assert got[-1]["image"] == str(blank) and got[-1]["face"] == "" and got[-1]["error"] == ""


def test_glob_inputs_expand_to_the_matching_image_files(photos, frl_images):
    top = jsonl(str(photos / "*.jpg"))
    assert [o["image"] for o in top] == sorted(str(p) for p in photos.glob("*.jpg"))
    assert len(top) == 5 and all(o["faces"] for o in top)
    deep = jsonl(str(photos / "**" / "*.jpg"))  # recursive
    sub = str(photos / "sub" / frl_images[3].name)
    assert [o["image"] for o in deep] == sorted([*map(str, photos.glob("*.jpg")), sub])
    assert [o for o in deep if o["image"] in {x["image"] for x in top}] == top  # the same answers
    # a glob and a file together keep their order; a glob that matches nothing is an error
    mixed = jsonl(sub, str(photos / "*.jpg"))
    assert [o["image"] for o in mixed] == [sub, *[o["image"] for o in top]]
    out = cli("predict", str(photos / "*.png"), "--no-progress", check=False)
    assert out.returncode == 1 and "no images found" in out.stderr


def test_flip_tta_is_the_mean_of_the_face_and_its_mirror_image(frl_images):
    """--flip-tta: each face's age and gender probability are the model's mean over the face crop and the
    crop mirrored; the boxes are those of the plain run."""
    paths = [str(p) for p in frl_images[4:8]]
    plain, tta = jsonl(*paths), jsonl(*paths, "--flip-tta")
    est, det = load_estimator("default"), create_detector("retinaface")
    changed = 0
    for path, p, t in zip(paths, plain, tta):
        assert [f["box"] for f in t["faces"]] == [f["box"] for f in p["faces"]] and len(t["faces"]) == 1
        image = LazyImage.open(path)  # decoded as `predict` decodes a file (agegender.lazyimage)
        crops = crop_faces_from(image, detect_faces(det, image)[:1], est.preprocessing)
        a, b = est.estimate(crops), est.estimate(np.ascontiguousarray(crops[:, :, ::-1]))
        age, p_female = (a.ages[0] + b.ages[0]) / 2, (a.p_female[0] + b.p_female[0]) / 2
        face = t["faces"][0]
        assert abs(face["age"] - age) <= 0.051, (path, face, age)  # JSON ages have one decimal
        shown = face["gender_probability"] if face["gender"] == "female" else 1 - face["gender_probability"]
        assert abs(shown - p_female) <= 1e-4 + 1e-6, (path, face, p_female)
        changed += abs(face["age"] - p["faces"][0]["age"]) >= 0.1
    assert changed >= 1  # the flag reaches the model


@pytest.mark.parametrize("argv", [["predict", "--workers", "0"], ["predict", "--part-size", "-5"],
                                  ["serve", "--workers", "0"],
                                  ["prepare", "utkface", "x", "-o", "y", "--chunk-size", "0"],
                                  ["train", "x", "-o", "y", "--batch-size", "two"]])
def test_counts_out_of_range_are_refused_before_anything_runs(argv):
    """Counts that must be 1 or more (workers, images per file, batch sizes, ...) are refused by the parser in
    one line naming the flag, with argparse's exit status 2, before a model or dataset is touched."""
    out = subprocess.run([sys.executable, "-m", "agegender.cli", *argv], capture_output=True, text=True)
    flag, value = argv[-2], argv[-1]
    reason = f"expected a whole number, got '{value}'" if value == "two" else f"must be 1 or more, got {int(value)}"
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1] == \
        f"agegender {argv[0]}: error: argument {flag}: {reason}", out.stderr


def test_an_image_piped_to_standard_input(tmp_path):
    """`agegender predict -` reads one image from standard input, like a file named "-" (its annotated copy is
    stdin.jpg); nothing piped in is an error line for "-" and exit 1, the other inputs still run."""
    import agegender

    example = Path(agegender.__file__).parent / "assets" / "example.jpg"
    with open(example, "rb") as f:
        out = subprocess.run([sys.executable, "-m", "agegender.cli", "predict", "-", "--format", "jsonl",
                              "--save-dir", str(tmp_path / "drawn"), "--no-progress"], stdin=f, capture_output=True)
    assert out.returncode == 0, out.stderr
    (row,) = [json.loads(line) for line in out.stdout.splitlines()]
    file_row = json.loads(cli("predict", str(example), "--format", "jsonl", "--no-progress").stdout)
    assert row == file_row | {"image": "-"} and len(row["faces"]) == 1
    assert [p.name for p in (tmp_path / "drawn").iterdir()] == ["stdin.jpg"]
    empty = subprocess.run([sys.executable, "-m", "agegender.cli", "predict", "-", str(example), "--no-progress"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert empty.returncode == 1 and "agegender predict: -: empty file" in empty.stderr
    assert "1 face(s)" in empty.stdout
