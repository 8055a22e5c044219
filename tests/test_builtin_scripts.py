"""scripts/make_builtin_model.py's provenance chain and scripts/wise_sweep.py, on the built-in weights and
real UTKFace crops."""

from __future__ import annotations

import importlib
import sys
from dataclasses import replace

import numpy as np
import pytest

from agegender.evaluation.report import evaluate_model
from agegender.models import builtin_models, load_estimator, read_config
from agegender.models.decode import expected_age, median_age

from .conftest import REPO, cli, need_module

need_module("torch")
sys.path.insert(0, str(REPO / "scripts"))
make_builtin_model = importlib.import_module("make_builtin_model")
wise_sweep = importlib.import_module("wise_sweep")


def card(name: str) -> dict:
    return read_config(str(builtin_models()[name])).card


def test_a_run_started_from_a_builtin_keeps_the_builtins_recipes():
    fast = card("fast")
    chain = make_builtin_model._init_recipe({"init": "fast", "epochs": 3})
    assert chain["init_recipe"] == fast["recipe"]
    assert chain["init_recipes"] == [fast["recipe"], *fast["init_recipes"]]


def test_an_imported_start_with_no_recipe_ends_the_chain(tmp_path):
    assert make_builtin_model._init_recipe({"init": str(tmp_path / "absent.safetensors")}) == {}


def test_wise_sweep_gender_difference_is_paired_and_in_points():
    """Each set's gender accuracy minus the baseline's, in points, its interval from the faces resampled in
    pairs: B gets 2 more of 8 faces wrong on one set (-25 points) and the same ones on the other (0)."""
    base = wise_sweep.Losses(gender={"a": np.array([0, 0, 0, 0, 1, 1, 0, 0.]), "b": np.array([1, 0, 0, 0.])})
    b = wise_sweep.Losses(gender={"a": np.array([0, 1, 1, 0, 1, 1, 0, 0.]), "b": np.array([1, 0, 0, 0.])})
    a_cell, b_cell = wise_sweep.gender_against(b, base).split(" / ")
    diff, low, high = (float(x) for x in a_cell.replace("[", "").replace(",", "").replace("]", "").split())
    assert diff == -25.0 and low < diff < high <= 0.0, a_cell
    assert b_cell == "+0.0 [+0.0, +0.0]"


@pytest.mark.slow
def test_wise_sweep_measures_each_blend_as_shipped(prepared, tmp_path):
    """A run whose checkpoint is its own start: every alpha is the shipped default itself, so each row must
    give the numbers of evaluating default.onnx directly (the weights are float16 already), and against
    `--baseline default` a difference of zero."""
    weights = builtin_models()["default"].with_suffix(".safetensors")
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.safetensors").write_bytes(weights.read_bytes())
    vals = [("utk_val", str(prepared), "val")]
    rows = {a: wise_sweep.measure(run / "last.safetensors", str(weights), a, vals, None, tmp_path) for a in (1.0, 0.5)}
    want = evaluate_model("default", prepared, "val", tmp_path / "direct", progress=False)["overall"]
    for alpha, (sets, losses) in rows.items():
        got = sets["utk_val"]
        assert got["n"] == want["n"] == 20 and losses.age["utk_val"].shape == losses.gender["utk_val"].shape == (20,)
        assert got["age_mae"] == pytest.approx(want["age_mae"], abs=1e-3), alpha
        assert losses.age["utk_val"].mean() == pytest.approx(got["age_mae"], abs=0.005)  # predictions.csv: 2 decimals
        assert got["gender_acc"] == pytest.approx(want["gender_acc"]), alpha
        assert 1 - losses.gender["utk_val"].mean() == pytest.approx(got["gender_acc"]), alpha
    text = wise_sweep.table(rows)
    assert text.count("\n") == 3 and f"{want['age_mae']:.3f}" in text.splitlines()[2]
    baseline = wise_sweep.measure_sets("default", vals, None, tmp_path / "baseline")
    lines = wise_sweep.table(rows, baseline).splitlines()
    assert len(lines) == 5 and lines[-1].startswith("| baseline |") and "mean - baseline (95%)" in lines[0]
    assert "gender - baseline, points (95%): utk_val" in lines[0]
    for line in lines[2:]:
        age_cell, gender_cell = line.rsplit("|", 3)[1:3]
        diff, low, high = (float(x) for x in age_cell.replace("[", "").replace(",", "").replace("]", "").split())
        assert abs(diff) <= 1e-3 and low <= diff <= high and high - low <= 2e-3, line
        assert gender_cell.strip() == "+0.0 [+0.0, +0.0]", line


@pytest.mark.slow
def test_remeasure_rewrites_the_numbers_and_a_corrected_data_note_not_the_weights(utk_subset, tmp_path, monkeypatch):
    """`make_builtin_model.py NAME --remeasure [--data-note ...] [--level]` on a copy of the built-in `fast`: the
    card's test numbers come from the given split (the 60-file subset, cut as fast cuts), the note changes only
    when one is given, the record reads levelled crops once --level is given, the weights never change."""
    from argparse import Namespace

    from safetensors.numpy import load_file

    prepared = tmp_path / "utk-sq140"
    cli("prepare", "utkface", str(utk_subset / "images"), "--split-file", str(utk_subset / "split.csv"), "-o",
        str(prepared), "--crop", "square", "--margin", "0.0", "--size", "140", "--no-progress")
    source = builtin_models()["fast"].with_suffix(".safetensors")
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "fast.safetensors").write_bytes(source.read_bytes())
    monkeypatch.setattr(make_builtin_model, "WEIGHTS_DIR", weights)
    before = read_config(str(source)).card
    before_prep = read_config(str(source)).preprocessing
    for note, level in ((None, False), ("corrected note", True)):
        make_builtin_model.remeasure(Namespace(run="fast", data=str(prepared), extra=[], frl=None, data_note=note,
                                               level=level, level_slack=5.0))
        got = read_config(str(weights / "fast.onnx")).card
        assert got == read_config(str(weights / "fast.safetensors")).card
        prep = read_config(str(weights / "fast.onnx")).preprocessing  # without --level: the record's cut as it was
        assert prep == (replace(before_prep, level=True, level_slack=5.0, version=3) if level else before_prep)
        assert got["data"] == (note or before["data"])
        assert got["recipe"] == before["recipe"] and got["init_recipes"] == before["init_recipes"]
        assert got["test_metrics_crops"]["n"] == got["test_metrics"]["n"] < 100  # the small split given, not the card's
    old, new = load_file(str(source)), load_file(str(weights / "fast.safetensors"))
    assert old.keys() == new.keys() and all((old[k] == new[k]).all() for k in old)


def test_readout_probe_reads_the_default_as_it_ships_and_as_a_median(prepared, tmp_path):
    """Read through the probe's wrapper with the expected value, the default's ages are its own (as evaluated
    directly); read as the median, they differ, though not by much (one distribution, two readouts)."""
    readout_probe = importlib.import_module("readout_probe")
    est = load_estimator("default")
    mean_ages, true = readout_probe.set_ages(readout_probe.ReadAs(est, expected_age), str(prepared), "val", False)
    median_ages, true2 = readout_probe.set_ages(readout_probe.ReadAs(est, median_age), str(prepared), "val", False)
    want = evaluate_model("default", prepared, "val", tmp_path, progress=False)["overall"]
    assert len(mean_ages) == want["n"] == 20 and np.array_equal(true, true2)
    assert np.nanmean(np.abs(mean_ages - true)) == pytest.approx(want["age_mae"], abs=1e-4)
    gap = np.abs(mean_ages - median_ages)
    assert np.nanmax(gap) > 0.1 and np.nanmean(gap) < 2.0  # readouts of one distribution: apart, but not far
    line = readout_probe.row("utk, median", median_ages, true)
    assert line.startswith("| utk, median | ") and line.count("|") == 2 + 1 + len(readout_probe.BANDS)
    groups = readout_probe.by_prediction("utk", mean_ages, true)  # every face with a reading in exactly one group
    counts = [int(g.split("|")[3]) for g in groups]
    assert sum(counts) == int((~np.isnan(mean_ages)).sum()) and all(c > 0 for c in counts)
    for g in groups:  # each group's mean reading lies inside the group's span
        span, mean_read = g.split("|")[2].strip(), float(g.split("|")[4])
        lo, hi = (float(span[:-1]), 1e9) if span.endswith("+") else map(float, span.split("-"))
        assert lo <= mean_read < hi
