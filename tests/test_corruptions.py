"""The benchmark's photo conditions and probes (benchmarks/corruptions.py) on the package's real example photo."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from corruptions import ALL_CONDITIONS, PROBES, TILTS, corrupt, rotate_whole  # noqa: E402

EXAMPLE = ROOT / "src" / "agegender" / "assets" / "example.jpg"


def detail(img: np.ndarray) -> float:
    """Mean absolute difference between horizontally neighbouring pixels (fine detail), grey levels."""
    g = img.astype(np.float32).mean(axis=2)
    return float(np.abs(np.diff(g, axis=1)).mean())


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(Image.open(EXAMPLE).convert("RGB"))


@pytest.mark.parametrize("name", sorted(set(ALL_CONDITIONS) - set(TILTS)))
def test_each_condition_keeps_shape_and_is_repeatable(photo: np.ndarray, name: str) -> None:
    out = corrupt(name, photo, "example.jpg")
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert not np.array_equal(out, photo)
    assert np.array_equal(out, corrupt(name, photo, "example.jpg"))


@pytest.mark.parametrize("name", sorted(TILTS))
def test_tilts_turn_the_whole_photo_either_way_and_repeatably(photo: np.ndarray, name: str) -> None:
    """The photo turned by the named angle on a canvas that holds all of it; the direction drawn per file."""
    degrees = int(name.split("-")[1])
    h, w = photo.shape[:2]
    t = np.radians(degrees)
    outs = {key: corrupt(name, photo, key) for key in (f"{k}.jpg" for k in range(8))}
    for out in outs.values():
        assert abs(out.shape[0] - (h * np.cos(t) + w * np.sin(t))) <= 1 and out.shape[2] == 3
        assert out.dtype == np.uint8
    assert np.array_equal(outs["0.jpg"], corrupt(name, photo, "0.jpg"))
    back = {k: [rotate_whole(o, s * degrees) for s in (-1, 1)] for k, o in outs.items()}
    turned_back = {k: min((np.abs(centre(b, h, w).astype(float) - photo).mean(), s) for b, s in zip(v, (-1, 1)))
                   for k, v in back.items()}
    assert all(err < 12 for err, _ in turned_back.values()), turned_back  # each turned back is the photo again
    assert {s for _, s in turned_back.values()} == {-1, 1}  # both ways among 8 files


def centre(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """The central h x w of a larger image."""
    y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return img[y:y + h, x:x + w]


def test_soft_probes_remove_more_detail_as_the_factor_grows(photo: np.ndarray) -> None:
    names = ("soft-6", "soft-10", "soft-14")
    levels = [detail(photo)] + [detail(corrupt(name, photo, "example.jpg")) for name in names]
    assert sorted(PROBES) == ["soft-10", "soft-14", "soft-6"]
    assert all(a > b for a, b in zip(levels, levels[1:], strict=False)), levels


def test_unknown_condition_names_the_known_ones(photo: np.ndarray) -> None:
    with pytest.raises(ValueError, match="soft-6"):
        corrupt("sharpen", photo, "example.jpg")
