"""benchmarks/gender_mix.py's arithmetic: the logit mixture, the per-face mistakes and the table's paired
differences, on hand-made answers whose results are known."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from gender_mix import grid, logit, mistakes, mix, table  # noqa: E402


def test_mix_of_one_system_is_that_system():
    p = {"default": np.array([0.1, 0.5, 0.93]), "dlib": np.array([0.9, 0.2, 0.4])}
    np.testing.assert_allclose(mix(p, {"default": 1.0, "dlib": 0.0}), p["default"], atol=1e-9)
    np.testing.assert_allclose(mix(p, {"default": 0.0, "dlib": 1.0}), p["dlib"], atol=1e-9)


def test_mix_averages_logits_not_probabilities():
    p = {"a": np.array([0.9]), "b": np.array([0.2])}
    half = mix(p, {"a": 0.5, "b": 0.5})
    expected = 1 / (1 + np.exp(-(logit(p["a"]) + logit(p["b"])) / 2))
    np.testing.assert_allclose(half, expected)
    assert half[0] != pytest.approx(0.55)  # the mean of the probabilities would be 0.55
    assert 0.5 < half[0] < 0.9  # the confident 0.9 outweighs the less confident 0.2


def test_mix_rejects_weights_that_do_not_sum_to_one():
    p = {"a": np.array([0.9]), "b": np.array([0.2])}
    with pytest.raises(ValueError, match="sum to 1"):
        mix(p, {"a": 0.5, "b": 0.6})
    with pytest.raises(ValueError, match=">= 0"):
        mix(p, {"a": 1.5, "b": -0.5})


def test_mistakes_mark_wrong_decisions_and_keep_missing_faces_missing():
    wrong = mistakes(np.array([0.8, 0.3, np.nan, 0.6]), np.array([1, 1, 0, 0]))
    np.testing.assert_array_equal(wrong[[0, 1, 3]], [0.0, 1.0, 1.0])
    assert np.isnan(wrong[2])


def test_grid_gives_the_default_the_rest():
    rows = grid(0.1, 0.2)
    assert len(rows) == 9
    assert rows[0] == {"dlib": 0.0, "faceres-deep": 0.0, "default": 1.0}
    assert all(abs(sum(r.values()) - 1) < 1e-9 for r in rows)
    assert {"dlib": 0.2, "faceres-deep": 0.1, "default": 0.7} in rows


def test_table_reads_a_second_system_that_fixes_ten_of_a_hundred_faces():
    female = np.array([1.0] * 50 + [0.0] * 50)
    default = np.where(female == 1, 0.9, 0.1)
    default[:10] = 0.45  # ten women the default gets wrong, unsure
    dlib = np.where(female == 1, 0.95, 0.05)  # right and sure everywhere
    sets = {"made up": {"female": female, "default": default, "dlib": dlib, "faceres-deep": default.copy()}}
    lines = table(sets, [{"dlib": 0.0, "faceres-deep": 0.0, "default": 1.0},
                         {"dlib": 0.3, "faceres-deep": 0.0, "default": 0.7}]).splitlines()
    assert lines[2] == "| 0.0 / 0.0 | 90.0% +0.0 [+0.0, +0.0] |"
    assert lines[3].startswith("| 0.3 / 0.0 | 100.0% +10.0 [+")  # every face right now, ten points gained
    low = float(lines[3].split("[")[1].split(",")[0])
    assert 3.0 < low < 10.0  # paired resampling: the interval lies above zero, below the gain
