"""Age ranges: the pure decoder on distributions whose quantiles are known by hand, the record that carries a
model's calibration (and a rewrite of it that leaves the weights alone), and what the built-in models give
on a real photo in every output. How often the built-in ranges hold the true age is checked on the UTKFace
test split in tests/test_model_goldens.py."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import agegender
from agegender import Predictor
from agegender.models.config import ModelConfig, read_config
from agegender.models.decode import age_quantile, age_range, median_age
from agegender.models.estimator import builtin_models
from agegender.types import Preprocessing

from .conftest import cli

EXAMPLE = Path(agegender.__file__).parent / "assets" / "example.jpg"


def one_hot(age: int, k: int = 100) -> np.ndarray:
    p = np.zeros((1, k))
    p[0, age] = 1.0
    return p


def test_quantiles_of_distributions_known_by_hand():
    # all the mass in the class of age 30, which stands for [29.5, 30.5): quantile q is 29.5 + q
    assert age_range(one_hot(30), 0.8)[0] == pytest.approx([29.6, 30.4], abs=1e-5)
    # the same mass spread evenly over 10..19 (ten classes): the 10% and 90% points are 10.5 and 18.5
    even = np.zeros((1, 100))
    even[0, 10:20] = 0.1
    assert age_range(even, 0.8)[0] == pytest.approx([10.5, 18.5], abs=1e-5)
    assert age_range(even, 0.8, age_min=1)[0] == pytest.approx([11.5, 19.5], abs=1e-5)  # classes from age 1
    assert median_age(even)[0] == pytest.approx(age_quantile(even, 0.5)[0]) == pytest.approx(14.5)
    assert age_range(even * 7, 0.8)[0] == pytest.approx([10.5, 18.5], abs=1e-5)  # rows need not sum to 1


def test_temperature_narrows_and_level_widens_around_the_same_centre():
    ages = np.arange(100)
    bell = np.exp(-0.5 * ((ages - 40) / 6.0) ** 2)[None] / 6.0
    widths = {t: np.diff(age_range(bell, 0.8, t)[0])[0] for t in (0.5, 1.0, 2.0)}
    assert widths[0.5] < widths[1.0] < widths[2.0]
    assert widths[0.5] == pytest.approx(widths[1.0] / np.sqrt(2), rel=0.02)  # a Gaussian's sd scales by sqrt(T)
    lo8, hi8 = age_range(bell, 0.8)[0]
    lo9, hi9 = age_range(bell, 0.9)[0]
    assert lo9 < lo8 < 40 < hi8 < hi9 and (lo8 + hi8) / 2 == pytest.approx(40, abs=0.01)
    for bad in ((0.0, 1.0), (1.0, 1.0), (0.8, 0.0)):
        with pytest.raises(ValueError, match="0 < level < 1"):
            age_range(bell, *bad)


def test_the_record_carries_the_calibration_or_none():
    cal = {"level": 0.8, "temperature": 0.64, "fitted_on": "val"}
    cfg = ModelConfig(arch="resnet", preprocessing=Preprocessing(size=64), age_range=cal)
    assert ModelConfig.from_json(cfg.to_json()).age_range == cal
    plain = ModelConfig(arch="resnet", preprocessing=Preprocessing(size=64))
    assert "age_range" not in json.loads(plain.to_json()) and ModelConfig.from_json(plain.to_json()).age_range is None
    bad = json.loads(cfg.to_json()) | {"age_range": {"level": 80, "temperature": 0.64}}
    with pytest.raises(ValueError, match="x.onnx: age_range needs 0 < level < 1"):
        ModelConfig.from_json(json.dumps(bad), "x.onnx")


def test_rewriting_the_record_keeps_the_weights(tmp_path):
    """write_record on copies of the built-in `fast` files: the new record reads back, and the model's answers
    on a real photo are the same to the last bit (only the range goes with the calibration)."""
    from agegender.export.record import write_record

    photo_answers = {}
    for suffix in (".onnx", ".safetensors"):
        if suffix == ".safetensors":
            pytest.importorskip("torch")
        src = builtin_models()["fast"].with_suffix(suffix)
        copy = tmp_path / f"fast{suffix}"
        shutil.copy(src, copy)
        write_record(copy, replace(read_config(str(copy)), age_range=None))
        assert read_config(str(copy)).age_range is None and read_config(str(src)).age_range
        plain, calibrated = Predictor(str(copy)).predict(EXAMPLE), Predictor(str(src)).predict(EXAMPLE)
        assert [(f.detection.box, f.age, f.gender_probability) for f in plain.faces] == \
            [(f.detection.box, f.age, f.gender_probability) for f in calibrated.faces]
        assert plain.faces[0].age_range is None and calibrated.faces[0].age_range is not None
        photo_answers[suffix] = calibrated.faces[0].age_range
    assert photo_answers[".onnx"] == pytest.approx(photo_answers[".safetensors"], abs=0.05)


@pytest.mark.parametrize("name", sorted(builtin_models()))
def test_builtin_models_give_a_range_around_the_age_in_every_output(name, tmp_path):
    """The photo's face: the range holds the model's own age, is at least a few years wide, and reads the same
    through the Python API, the JSON lines, the CSV and the table."""
    face = Predictor(name).predict(EXAMPLE).faces[0]
    low, high = face.age_range
    assert low < face.age < high and 3 < high - low < 40
    base = ["predict", str(EXAMPLE), "--model", name, "--no-progress"]
    (row,) = [json.loads(line) for line in cli(*base, "--format", "jsonl").stdout.splitlines()]
    assert row["faces"][0]["age_range"] == [round(low, 1), round(high, 1)]
    csv_row = cli(*base, "--format", "csv").stdout.splitlines()[1].split(",")
    assert csv_row[10:12] == [str(round(low, 1)), str(round(high, 1))]
    assert f"range {low:.0f}-{high:.0f}" in cli(*base).stdout
    cal = read_config(str(builtin_models()[name])).age_range
    assert f"age range: central 80% of the distribution tempered by {cal['temperature']:g}" in cli("models").stdout


def test_evaluate_reports_how_often_the_ranges_hold(prepared, tmp_path):
    """`agegender evaluate` on real prepared UTKFace crops: coverage and width overall and by decade, the
    ranges in predictions.csv, and the coverage equals the share of its rows whose true age is in range."""
    import csv

    out = tmp_path / "eval"
    cli("evaluate", "default", str(prepared), "--split", "test", "--mode", "end-to-end", "-o", str(out),
        "--no-progress")
    report = json.loads((out / "report.json").read_text())
    overall = report["overall"]
    assert report["age_range"]["level"] == 0.8 and 0 < overall["age_range_coverage"] <= 1
    assert all("age_range_coverage" in m for m in report["by_decade"].values())
    with open(out / "predictions.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["found"] == "1"]
    held = [float(r["pred_age_low"]) <= float(r["true_age"]) <= float(r["pred_age_high"]) for r in rows]
    assert overall["age_range_coverage"] == pytest.approx(np.mean(held))
    assert "in age range" in (out / "report.md").read_text()


def test_calibration_fits_the_smallest_temperature_that_holds_the_level():
    """scripts/calibrate_age_range.py's fit on faces made here: each face's distribution a bell 8 years wide
    (sd) around a reading 4 years (sd) off its true age, so the untempered 80% ranges hold far more than 80%;
    the fitted temperature's pooled coverage is at least 80%, and 0.002 less falls below it."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "calibrate_age_range.py"
    spec = importlib.util.spec_from_file_location("calibrate_age_range", script)
    calibrate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(calibrate)
    rng = np.random.default_rng(0)
    sets = {}
    for name in calibrate.FIT_SETS:
        true = rng.integers(5, 90, 600).astype(float)
        reading = true + rng.normal(0, 4, len(true))
        probs = np.exp(-0.5 * ((np.arange(100)[None] - reading[:, None]) / 8.0) ** 2)
        sets[name] = (probs / probs.sum(1, keepdims=True), true)
    pooled = tuple(np.concatenate([sets[k][i] for k in calibrate.FIT_SETS]) for i in (0, 1))
    t = calibrate.fit_temperature(sets, 0.8, 0)
    assert t < 0.6  # the bells are twice as wide as the errors: tempering must narrow them
    assert calibrate.coverage(*pooled, 0.8, t, 0)[0] >= 0.8 > calibrate.coverage(*pooled, 0.8, t - 0.002, 0)[0]
    assert calibrate.coverage(*pooled, 0.8, 1.0, 0)[0] > 0.95
