"""Levelled square crops (`Preprocessing.level`): a tilted head is turned upright about its box centre, by the
roll its 5 landmarks show, before the model sees it; without usable landmarks, or upside down, the square is
cut upright as before."""

from __future__ import annotations

import sys
from dataclasses import replace

import cv2
import numpy as np
import pytest
from PIL import Image

from agegender import Predictor
from agegender.align import crop_face, level_turn, roll_degrees
from agegender.types import Detection, Preprocessing

from .conftest import REPO, cli

sys.path.insert(0, str(REPO / "benchmarks"))
from corruptions import rotate_whole  # noqa: E402  the benchmark's tilt conditions

CENTRE = (100.0, 100.0)
BOX = (60.0, 50.0, 140.0, 150.0)  # centred on CENTRE, so a turn about CENTRE leaves the box's centre in place
FACE = np.array([[85, 90], [115, 90], [100, 105], [88, 125], [112, 125]], np.float64)  # eyes, nose, mouth
LEVEL = Preprocessing(crop="square", margin=0.2, size=64, level=True)


def turn(points: np.ndarray, degrees: float) -> np.ndarray:
    """Points as cv2 turns an image counter-clockwise on screen by `degrees` about CENTRE."""
    m = cv2.getRotationMatrix2D(CENTRE, degrees, 1.0)
    return points @ m[:, :2].T + m[:, 2]


def turned_image(img: np.ndarray, degrees: float) -> np.ndarray:
    m = cv2.getRotationMatrix2D(CENTRE, degrees, 1.0)
    return cv2.warpAffine(img, m, img.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("degrees", [-170, -120, -90, -35, -5, 0, 5, 20, 50, 90, 135, 175])
def test_roll_is_the_turn_of_the_landmarks(degrees):
    roll = roll_degrees(turn(FACE, degrees))
    assert abs((roll - degrees + 180) % 360 - 180) < 1e-6


def test_roll_splits_the_eye_line_and_the_mouth_direction():
    squint = FACE.copy()
    squint[1, 1] -= 30 * np.tan(np.radians(10))  # the right eye higher: the eye line alone reads 10 degrees
    assert 4.0 < roll_degrees(squint) < 6.0


@pytest.fixture(scope="module")
def textured() -> np.ndarray:
    """A 200x200 image with structure at every scale, no symmetry (a turn shows)."""
    rng = np.random.default_rng(0)
    noise = cv2.resize(rng.integers(0, 256, (25, 25, 3), dtype=np.uint8), (200, 200), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


@pytest.mark.parametrize("degrees", [-35, 20, 90])
def test_a_turned_face_is_cut_as_the_upright_one(textured, degrees):
    upright = crop_face(textured, Detection(BOX, 1.0, FACE), LEVEL)
    img = turned_image(textured, degrees)
    levelled = crop_face(img, Detection(BOX, 1.0, turn(FACE, degrees)), LEVEL)
    plain = crop_face(img, Detection(BOX, 1.0, turn(FACE, degrees)), replace(LEVEL, level=False))
    err = np.abs(levelled.astype(float) - upright).mean()
    assert err < 3.0, err  # bilinear resampling twice, nothing else
    if abs(degrees) != 90:  # a quarter turn is undone either way (np.rot90 for upright squares)
        assert np.abs(plain.astype(float) - upright).mean() > 5 * err


def test_slack_leaves_small_rolls_and_part_of_large_ones():
    assert level_turn(35.0) == 35.0 and level_turn(-100.0) == -100.0 and level_turn(130.0) == 0.0
    assert level_turn(35.0, 10.0) == 25.0 and level_turn(-35.0, 10.0) == -25.0
    assert level_turn(8.0, 10.0) == 0.0 and level_turn(-10.0, 10.0) == 0.0 and level_turn(150.0, 10.0) == 0.0


def test_a_face_turned_past_the_slack_is_cut_turned_by_the_slack(textured):
    slack = replace(LEVEL, level_slack=10.0)
    at_slack = crop_face(turned_image(textured, 10), Detection(BOX, 1.0, turn(FACE, 10)), replace(LEVEL, level=False))
    got = crop_face(turned_image(textured, 35), Detection(BOX, 1.0, turn(FACE, 35)), slack)
    assert np.abs(got.astype(float) - at_slack).mean() < 3.0
    small = Detection(BOX, 1.0, turn(FACE, 7))  # within the slack: cut as it stands
    img = turned_image(textured, 7)
    assert np.array_equal(crop_face(img, small, slack), crop_face(img, small, replace(LEVEL, level=False)))


def test_upright_square_without_landmarks_or_upside_down(textured):
    flat = replace(LEVEL, level=False)
    for lms in (None, turn(FACE, 180), np.full((5, 2), 100.0)):
        det = Detection(BOX, 1.0, lms)
        assert np.array_equal(crop_face(textured, det, LEVEL), crop_face(textured, det, flat))
    det = Detection(BOX, 1.0, FACE)  # an upright face is cut alike, up to resampling
    assert np.abs(crop_face(textured, det, LEVEL).astype(float) - crop_face(textured, det, flat)).max() <= 2


def test_the_record_says_level_and_older_readers_refuse_it():
    with pytest.raises(ValueError, match="square"):
        Preprocessing(crop="align5", level=True)
    with pytest.raises(ValueError, match="level_slack"):
        Preprocessing(crop="square", level_slack=10.0)
    with pytest.raises(ValueError, match="level_slack"):
        Preprocessing(crop="square", level=True, level_slack=90.0)
    slack = replace(LEVEL, level_slack=10.0)
    assert Preprocessing.from_dict(slack.to_dict()) == replace(slack, version=3)
    d = LEVEL.to_dict()
    assert d["level"] is True and d["version"] == 3  # agegender before levelling (version 2) refuses to guess
    assert Preprocessing.from_dict(d) == replace(LEVEL, version=3)
    assert Preprocessing.from_dict({**d, "level": False, "version": 2}).level is False
    assert Preprocessing.from_dict({k: v for k, v in d.items() if k not in ("level", "version")}).level is False


def test_the_built_in_models_read_levelled_crops_and_say_so():
    assert Predictor(threads=1).preprocessing.level
    assert Predictor("fast", threads=1).preprocessing.level_slack == 10.0
    listed = cli("models").stdout
    default, fast = listed.split("\nfast: ")[0], listed.split("\nfast: ")[1].split("\n\n")[0]
    assert "crop square levelled (turned by the face's roll)" in default
    assert "crop square levelled (turned by the face's roll beyond 10 degrees)" in fast


@pytest.fixture(scope="module")
def portraits(frl_images) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB").reduce(2)) for p in frl_images[1::4]]  # 10 of the 40


def test_tilted_portraits_read_as_upright_ones(portraits):
    """The real default on 10 FRL portraits turned by 30 degrees either way: levelled crops read them within
    1.5 years of the upright photos on average; the same network on upright squares reads them worse."""
    predictor = Predictor(threads=1)
    flat = Predictor(threads=1)
    flat.estimator.config = replace(flat.estimator.config,
                                    preprocessing=replace(flat.preprocessing, level=False))
    upright = [predictor.predict(im).faces[0] for im in portraits]
    for degrees in (30, -30):
        tilted = [rotate_whole(im, degrees) for im in portraits]  # as the tilt conditions turn them
        lev = [predictor.predict(im).faces[0] for im in tilted]
        old = [flat.predict(im).faces[0] for im in tilted]
        d_lev = np.abs([f.age - u.age for f, u in zip(lev, upright)])
        d_old = np.abs([f.age - u.age for f, u in zip(old, upright)])
        assert d_lev.mean() < 1.5 and d_lev.mean() < d_old.mean(), (degrees, d_lev, d_old)
        assert [f.gender for f in lev] == [u.gender for u in upright]



def test_evaluating_a_levelled_model_on_stored_crops_says_they_are_upright(utk_subset, tmp_path):
    """Prepared datasets store upright squares; `evaluate` in crops mode gives them as stored, and says so."""
    from agegender.evaluation.report import UPRIGHT_CROPS_NOTE, evaluate_model

    prepared = tmp_path / "utk-sq140"  # the 60-file subset cut as the default cuts (upright squares)
    cli("prepare", "utkface", str(utk_subset / "images"), "--split-file", str(utk_subset / "split.csv"), "-o",
        str(prepared), "--crop", "square", "--margin", "0.0", "--size", "140", "--no-progress")

    crops = evaluate_model("default", prepared, "val", tmp_path / "crops", mode="crops", progress=False)
    assert crops["upright_crops_for_a_levelled_model"] is True
    assert UPRIGHT_CROPS_NOTE in (tmp_path / "crops" / "report.md").read_text()
    e2e = evaluate_model("default", prepared, "val", tmp_path / "e2e", mode="end-to-end", progress=False)
    assert e2e["upright_crops_for_a_levelled_model"] is False
    assert UPRIGHT_CROPS_NOTE not in (tmp_path / "e2e" / "report.md").read_text()
