"""The benchmark's photo conditions and probes (benchmarks/corruptions.py) on the package's real example photo."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from corruptions import ALL_CONDITIONS, PROBES, corrupt  # noqa: E402

EXAMPLE = ROOT / "src" / "agegender" / "assets" / "example.jpg"


def detail(img: np.ndarray) -> float:
    """Mean absolute difference between horizontally neighbouring pixels (fine detail), grey levels."""
    g = img.astype(np.float32).mean(axis=2)
    return float(np.abs(np.diff(g, axis=1)).mean())


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(Image.open(EXAMPLE).convert("RGB"))


@pytest.mark.parametrize("name", sorted(ALL_CONDITIONS))
def test_each_condition_keeps_shape_and_is_repeatable(photo: np.ndarray, name: str) -> None:
    out = corrupt(name, photo, "example.jpg")
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert not np.array_equal(out, photo)
    assert np.array_equal(out, corrupt(name, photo, "example.jpg"))


def test_soft_probes_remove_more_detail_as_the_factor_grows(photo: np.ndarray) -> None:
    names = ("soft-6", "soft-10", "soft-14")
    levels = [detail(photo)] + [detail(corrupt(name, photo, "example.jpg")) for name in names]
    assert sorted(PROBES) == ["soft-10", "soft-14", "soft-6"]
    assert all(a > b for a, b in zip(levels, levels[1:], strict=False)), levels


def test_unknown_condition_names_the_known_ones(photo: np.ndarray) -> None:
    with pytest.raises(ValueError, match="soft-6"):
        corrupt("sharpen", photo, "example.jpg")
