"""benchmarks/accuracy.py's age-range and gender-calibration tables, end to end on real portraits: the default
model's ranges and gender probabilities (the largest face of each photo, as the benchmark counts it) against
the same metrics measured here straight from `Predictor.predict`; a system without ranges gets no range row."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from accuracy import evaluate_set  # noqa: E402
from systems import Labelled, OursSystem, frl_samples  # noqa: E402

from agegender.evaluation.metrics import gender_calibration, range_metrics  # noqa: E402


class NoRanges(OursSystem):
    """The default model with its ranges dropped: a system that gives none, as every peer."""

    def faces(self, image: np.ndarray):
        return [(box, age, pf, None) for box, age, pf, _ in super().faces(image)]


@pytest.fixture(scope="module")
def portraits(frl_images) -> list[Labelled]:
    return frl_samples(frl_images[0].parent.parent.parent)[::5]  # 8 of the 40, both genders, their own ages


def test_range_table_counts_the_largest_faces_ranges(portraits):
    from agegender import Predictor

    text, numbers = evaluate_set("FRL", portraits, [OursSystem("default", "default"), NoRanges("plain", "default")],
                                 {})
    ranges = np.array([Predictor("default").predict(s.path).faces[0].age_range for s in portraits])
    want = range_metrics(ranges, np.array([s.age for s in portraits]))
    got = numbers["overall"]["default"]
    assert got["age_range_coverage"] == pytest.approx(want["age_range_coverage"])
    assert got["age_range_width"] == pytest.approx(want["age_range_width"], abs=0.05)  # predict decodes at 1/2
    assert "age_range_coverage" not in numbers["overall"]["plain"]
    table = text.split("Age ranges")[1]
    rows = [line for line in table.splitlines() if line.startswith("| default |")]
    assert len(rows) == 1 and "| plain |" not in table
    assert rows[0].split("|")[2].strip() == f"{100 * want['age_range_coverage']:.1f}%"
    decades = numbers["breakdown"]["age"]["default"]  # one column per age group, each "coverage / width"
    assert table.splitlines()[2].count("|") == rows[0].count("|") == 4 + len(decades)


def test_calibration_table_gives_each_systems_gender_ece(portraits):
    from agegender import Predictor

    text, numbers = evaluate_set("FRL", portraits, [OursSystem("default", "default"), NoRanges("plain", "default")],
                                 {})
    faces = [Predictor("default").predict(s.path).faces[0] for s in portraits]
    p_female = np.array([f.gender_probability if f.gender.label == "female" else 1 - f.gender_probability
                         for f in faces])
    want = gender_calibration(p_female, np.array([s.gender for s in portraits]))["gender_ece"]
    got = numbers["overall"]["default"]["gender_ece"]
    assert got == pytest.approx(want, abs=0.01)  # predict decodes the portraits at 1/2
    assert numbers["overall"]["plain"]["gender_ece"] == got  # the same probabilities, ranges or not
    table = text.split("Gender probability")[1].split("\n\n")[1]
    assert f"| default | {100 * got:.1f} | " in table and f"| plain | {100 * got:.1f} | " in table
