"""Bootstrap intervals and paired differences (agegender.evaluation.uncertainty), and `agegender compare` on two
real evaluations of the same real faces."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agegender.evaluation.compare import compare, load_predictions
from agegender.evaluation.uncertainty import interval, mean_of_differences, paired_difference

from .conftest import cli


def test_the_95_interval_covers_the_true_mean_about_95_times_in_100():
    """Coverage on skewed losses like age errors (exponential, true mean 4 years) over 300 samples of 40."""
    rng = np.random.default_rng(7)
    hits = 0
    for seed in range(300):
        low, high = interval(rng.exponential(4.0, 40), seed=seed)
        hits += low <= 4.0 <= high
    assert 0.88 <= hits / 300 <= 0.99


def test_an_interval_narrows_with_more_faces_and_ignores_missing_ones():
    rng = np.random.default_rng(0)
    loss = rng.exponential(4.0, 4000)
    w_small = np.subtract(*interval(loss[:40])[::-1])
    w_large = np.subtract(*interval(loss)[::-1])
    assert w_large < w_small / 5  # ~ 1/sqrt(100)
    with_gaps = np.concatenate([loss[:40], [np.nan] * 10])
    assert interval(with_gaps) == interval(loss[:40])
    assert interval(np.full(30, 2.5)) == (2.5, 2.5)


def test_pairing_sees_a_small_steady_gain_that_unpaired_intervals_hide():
    """B is 0.3 years better on every face while faces differ by years: B's and A's own intervals overlap,
    the paired difference is clear and exact."""
    rng = np.random.default_rng(1)
    a = rng.exponential(4.0, 200)
    b = a - 0.3
    ia, ib = interval(a), interval(b)
    assert ib[1] > ia[0]  # the two intervals overlap
    d = paired_difference(a, b)
    assert d.diff == pytest.approx(-0.3) and d.low == pytest.approx(-0.3) and d.high == pytest.approx(-0.3)
    assert d.clear and d.p_b_better == 1.0 and d.n == 200


def test_two_models_of_the_same_quality_are_within_noise():
    rng = np.random.default_rng(2)
    a, b = rng.exponential(4.0, 40), rng.exponential(4.0, 40)
    d = paired_difference(a, b)
    assert d.low < d.diff < d.high
    assert d.low < 0 < d.high and not d.clear
    assert 0.0 < d.p_b_better < 1.0


def test_pairs_with_a_missing_face_on_either_side_are_left_out_and_shapes_must_match():
    a = np.array([1.0, 2.0, np.nan, 4.0])
    b = np.array([0.5, np.nan, 3.0, 3.0])
    d = paired_difference(a, b)
    assert d.n == 2 and d.diff == pytest.approx(-0.75)
    with pytest.raises(ValueError, match="one entry per face"):
        paired_difference(a, b[:3])
    with pytest.raises(ValueError, match="level"):
        interval(a, level=95)


def test_the_mean_over_sets_is_steadier_than_its_parts():
    rng = np.random.default_rng(3)
    parts = [paired_difference(rng.exponential(4, n), rng.exponential(4, n), seed=i)
             for i, n in enumerate((40, 60, 80))]
    m = mean_of_differences(parts)
    assert m.diff == pytest.approx(np.mean([p.diff for p in parts])) and m.n == 180
    assert m.high - m.low < np.mean([p.high - p.low for p in parts])
    with pytest.raises(ValueError):
        mean_of_differences([])


@pytest.fixture(scope="module")
def evaluations(prepared, tmp_path_factory):
    """`agegender evaluate` of the built-in default and fast on the 20 val faces of the real UTKFace subset,
    and of default on its 20 test faces."""
    out = tmp_path_factory.mktemp("compare")
    for model, split in (("default", "val"), ("fast", "val"), ("default", "test")):
        cli("evaluate", model, str(prepared), "--split", split, "-o", str(out / f"{model}-{split}"), "--no-progress")
    return out


def test_compare_pairs_two_evaluations_and_agrees_with_their_reports(evaluations):
    a, b = evaluations / "default-val", evaluations / "fast-val"
    result = compare(load_predictions(a), load_predictions(b))
    report_a, report_b = (json.loads((p / "report.json").read_text())["overall"] for p in (a, b))
    assert result["n_paired"] == 20
    age = result["age_mae"]
    assert age["a"] == pytest.approx(report_a["age_mae"], abs=0.01)  # predictions.csv holds 2 decimals
    assert age["b"] == pytest.approx(report_b["age_mae"], abs=0.01)
    assert age["b_minus_a"] == pytest.approx(age["b"] - age["a"])
    assert age["a_interval"][0] <= age["a"] <= age["a_interval"][1]
    assert age["interval"][0] <= age["b_minus_a"] <= age["interval"][1]
    assert result["gender_error"]["a"] == pytest.approx(1 - report_a["gender_acc"])
    same = compare(load_predictions(a), load_predictions(a / "predictions.csv"))["age_mae"]
    assert same["b_minus_a"] == 0 and same["interval"] == (0.0, 0.0) and not same["clear"]


def test_compare_cli_prints_a_table_or_json_and_refuses_different_splits(evaluations, tmp_path):
    a, b = str(evaluations / "default-val"), str(evaluations / "fast-val")
    text = cli("compare", a, b, "--names", "default,fast").stdout
    assert "| age MAE (years) |" in text and "fast - default (paired 95%)" in text
    assert "age MAE (years): " in text and "gender errors: " in text
    numbers = json.loads(cli("compare", a, b, "--json", "--level", "0.9").stdout)
    assert numbers["level"] == 0.9 and numbers["n_paired"] == 20
    wrong = cli("compare", a, str(evaluations / "default-test"), check=False)
    assert wrong.returncode == 1 and "share no face" in wrong.stderr
    (tmp_path / "other.csv").write_text("name,age\nx,3\n")
    bad = cli("compare", a, str(tmp_path / "other.csv"), check=False)
    assert bad.returncode == 1 and "not an `evaluate` predictions file" in bad.stderr
    absent = cli("compare", a, str(tmp_path), check=False)
    assert absent.returncode == 1 and "no predictions.csv" in absent.stderr
