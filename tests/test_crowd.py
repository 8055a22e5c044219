"""Small faces in big photos (a class photo, a crowd): the detector's finer passes, end to end on a real
composite: the 60 UTKFace files of `utk_subset`, each shrunk to 130 px and laid out on a 4000x2400 photo,
so that each face is about 80 px across, 13 px in RetinaFace's default 640 px input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from agegender import Predictor
from agegender.detectors.base import FINEST_SIDE, iou_matrix, merge_passes
from agegender.types import Detection

from .conftest import cli

W, H, COLS, ROWS, TILE = 4000, 2400, 12, 5, 130


@pytest.fixture(scope="module")
def crowd(utk_subset, tmp_path_factory) -> tuple[str, list[tuple[int, int]]]:
    """The composite as a JPEG and the top-left corner of each of its 60 faces' tiles."""
    files = sorted((utk_subset / "images").glob("*.jpg"))[: COLS * ROWS]
    canvas = np.full((H, W, 3), 110, np.uint8)
    corners = []
    for k, f in enumerate(files):
        r, c = divmod(k, COLS)
        x, y = c * (W // COLS) + (W // COLS - TILE) // 2, r * (H // ROWS) + (H // ROWS - TILE) // 2
        canvas[y : y + TILE, x : x + TILE] = np.asarray(Image.open(f).convert("RGB").resize((TILE, TILE)))
        corners.append((x, y))
    path = tmp_path_factory.mktemp("crowd") / "crowd.jpg"
    Image.fromarray(canvas).save(path, quality=92)
    return str(path), corners


def tiles_hit(boxes: list[list[float]], corners: list[tuple[int, int]]) -> list[int]:
    """For each box, the tile its centre lies in (-1: none)."""
    out = []
    for x1, y1, x2, y2 in boxes:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        out.append(next((i for i, (x, y) in enumerate(corners) if x <= cx <= x + TILE and y <= cy <= y + TILE), -1))
    return out


def test_finer_passes_find_the_crowds_faces_and_read_them_as_their_own_tiles(crowd):
    path, corners = crowd
    predictor = Predictor(threads=1)
    one_pass = Predictor(predictor.estimator, refine_small_faces=False, threads=1).predict(path)
    result = predictor.predict(path)
    assert predictor.detector.max_side == 640  # the passes did not change the shared detector
    hit = tiles_hit([list(f.detection.box) for f in result.faces], corners)
    assert len(one_pass.faces) <= 6, "the composite should be too fine for one 640 px pass"
    assert len(set(hit) - {-1}) >= 54 and hit.count(-1) <= 2 and len(hit) - len(set(hit)) <= 2, hit
    # each face read as the same face cut from its tile alone (a 130 px image): boxes and landmarks mapped back
    # to the right pixels give the same ages and genders
    big = np.asarray(Image.open(path).convert("RGB"))
    diffs, same_gender = [], 0
    for f, t in zip(result.faces, hit):
        if t < 0:
            continue
        x, y = corners[t]
        alone = predictor.predict(big[y : y + TILE, x : x + TILE].copy()).faces
        if alone:
            diffs.append(abs(alone[0].age - f.age))
            same_gender += alone[0].gender is f.gender
    assert len(diffs) >= 50 and np.median(diffs) < 2.0 and same_gender >= 0.9 * len(diffs), (np.median(diffs),
                                                                                           same_gender)


def test_cli_max_side_and_single_pass(crowd):
    path, corners = crowd
    counts = {}
    for flags in ((), ("--single-pass",), ("--single-pass", "--max-side", "2000")):
        out = cli("predict", path, "--format", "jsonl", "--no-progress", *flags)
        faces = json.loads(out.stdout.splitlines()[0])["faces"]
        counts[flags] = len(set(tiles_hit([f["box"] for f in faces], corners)) - {-1})
    assert counts[()] >= 54 and counts[("--single-pass",)] <= 6
    assert counts[("--single-pass", "--max-side", "2000")] >= 50, counts
    bad = cli("predict", path, "--max-side", "16", check=False)
    assert bad.returncode != 0 and "--max-side" in bad.stderr and "Traceback" not in bad.stderr


def test_a_photo_without_faces_is_looked_at_up_to_1280_px(monkeypatch, frl_images):
    import agegender.detectors.base as base

    sides = []
    real = base._detect_pass
    monkeypatch.setattr(base, "_detect_pass", lambda d, im, side, *a: sides.append(side) or real(d, im, side, *a))
    rng = np.random.default_rng(0)
    wall = rng.integers(90, 110, (3000, 4000, 3), dtype=np.uint8)
    Predictor(threads=1).predict(wall)
    assert sides == [None, 1280]
    sides.clear()
    Predictor(threads=1, detector_max_side=320).predict(wall)  # as --fast starts
    assert sides == [None, 640, 1280]
    sides.clear()
    Predictor(threads=1).predict(rng.integers(90, 110, (400, 500, 3), dtype=np.uint8))  # no more pixels to see
    assert sides == [None]
    sides.clear()
    assert len(Predictor(threads=1).predict(frl_images[0]).faces) == 1  # a 1350x1800 portrait: its face is large
    assert sides == [None]


def det(x1: float, y1: float, x2: float, y2: float) -> Detection:
    return Detection(box=(x1, y1, x2, y2), score=0.9)


def test_merge_keeps_well_seen_faces_and_replaces_small_ones():
    coarse = [det(300, 300, 700, 700), det(1, 1, 11, 11), det(50, 50, 60, 60)]  # one well seen, two small
    fine = [det(302, 298, 705, 699), det(0, 0, 10, 10), det(100, 100, 112, 112)]
    faces, settled = merge_passes(fine, [True, True, True], coarse, [True, False, False])
    boxes = [d.box for d in faces]
    assert boxes[0] == (300, 300, 700, 700)  # the well-seen face stays as the first pass found it
    assert (0, 0, 10, 10) in boxes and (1, 1, 11, 11) not in boxes  # the small one gives way to the finer pass's
    assert (50, 50, 60, 60) in boxes and (100, 100, 112, 112) in boxes  # each found by one pass only: kept
    assert len(faces) == 4 and settled == [True, True, True, False]  # (0, 0, 10, 10) precedes (50, 50, 60, 60)
    assert [d.area for d in faces] == sorted((d.area for d in faces), reverse=True)
    assert merge_passes([], [], coarse, [True, False, False])[0] == sorted(coarse, key=lambda d: -d.area)
    assert iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[1, 1, 11, 11]]))[0, 0] > 0.3
    assert FINEST_SIDE >= 2 * 640


def test_a_low_resolution_group_photo_is_enlarged_for_its_small_faces(crowd):
    """The class photo at 800x480: faces of about 16 px, too few pixels even at full size; finer passes
    enlarge it (up to MAX_ENLARGE) and find most of them."""
    path, corners = crowd
    small = np.asarray(Image.open(path).convert("RGB").resize((800, 480), Image.LANCZOS))
    one = Predictor(refine_small_faces=False, threads=1).predict(small)
    refined = Predictor(threads=1).predict(small)
    scaled = [(x / 5, y / 5) for x, y in corners]
    hit = set()
    for f in refined.faces:
        x1, y1, x2, y2 = f.detection.box
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        hit |= {i for i, (x, y) in enumerate(scaled) if x <= cx <= x + TILE / 5 and y <= cy <= y + TILE / 5}
    assert len(one.faces) < 30 and len(hit) >= 50, (len(one.faces), len(hit))


def test_face_thumbnails_are_found_by_an_enlarged_pass(utk_subset):
    """UTKFace files shrunk to 32 and 24 px (thumbnails): one pass finds few of their faces; the enlarged pass
    for a tiny photo with no face finds nearly all, and reads them sensibly."""
    files = sorted((utk_subset / "images").glob("*.jpg"))[:30]
    refined, one_pass = Predictor(threads=1), Predictor(refine_small_faces=False, threads=1)
    for size, one_pass_at_most in ((32, 25), (24, 5)):
        thumbs = [np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.LANCZOS)) for f in files]
        one = sum(bool(one_pass.predict(t).faces) for t in thumbs)
        found = [refined.predict(t).faces for t in thumbs]
        assert one <= one_pass_at_most and sum(map(bool, found)) >= 27, (size, one, [len(f) for f in found])
        assert all(0 < fs[0].age < 100 for fs in found if fs)


def test_labels_of_a_crowd_do_not_cover_its_faces(crowd):
    """The annotated class photo: each label sized to its face, not to the 4000 px photo (the old labels,
    sized to the photo, painted 24% of it and 12% of the average face)."""
    from agegender.draw import annotate, label_style

    path, _ = crowd
    image = np.asarray(Image.open(path).convert("RGB"))
    faces = Predictor(threads=1).predict(image).faces
    changed = (annotate(image, faces) != image).any(axis=2)
    inside = [changed[int(f.detection.box[1]) + 3 : int(f.detection.box[3]) - 3,
                      int(f.detection.box[0]) + 3 : int(f.detection.box[2]) - 3].mean() for f in faces]
    assert len(faces) >= 54 and changed.mean() < 0.06 and max(inside) < 0.05, (changed.mean(), max(inside))
    assert label_style(600, (1350, 1800)) == (1.8, 4)  # a portrait's face keeps the photo-sized label
