import numpy as np

from agegender.evaluation.metrics import (
    age_metrics,
    breakdown,
    decade_labels,
    gender_calibration,
    gender_metrics,
    summarize,
)
from agegender.models.decode import expected_age, female_probability, median_age, softmax


def test_age_and_gender_metrics_on_known_values():
    m = age_metrics(np.array([10.0, 20.0, 36.0]), np.array([12.0, 20.0, 30.0]))
    assert np.isclose(m["age_mae"], (2 + 0 + 6) / 3)
    assert np.isclose(m["cs5"], 2 / 3)
    g = gender_metrics(np.array([0.9, 0.2, 0.6, 0.5]), np.array([1, 0, 0, -1]))
    assert g["n_gender"] == 3 and np.isclose(g["gender_acc"], 2 / 3)


def test_summarize_counts_missed_faces_and_groups():
    pred = np.array([10.0, 50.0, np.nan])
    s = summarize(pred, np.array([0.9, 0.1, np.nan]), np.array([12.0, 45.0, 70.0]), np.array([1, 0, 1]),
                  found=np.array([True, True, False]))
    assert np.isclose(s["faces_found"], 2 / 3) and s["n_age"] == 2
    assert decade_labels(np.array([3.0, 19.9, 85.0, np.nan])) == ["0-9", "10-19", "70+", "unknown"]
    b = breakdown(["0-9", "40-49", "70+"], pred, np.array([0.9, 0.1, 0.5]), np.array([12.0, 45.0, 70.0]),
                  np.array([1, 0, 1]))
    assert list(b) == ["0-9", "40-49", "70+"]


def test_decoders():
    p = softmax(np.array([[0.0, 0.0, 0.0, 0.0]]))
    assert np.allclose(p, 0.25)
    assert np.isclose(expected_age(p, age_min=10)[0], 11.5)
    one_hot = np.zeros((1, 101))
    one_hot[0, 42] = 1
    assert expected_age(one_hot)[0] == 42
    assert female_probability(np.array([[0.3, 0.7]]), female_index=0)[0] == np.float32(0.3)


def test_median_age_on_known_distributions():
    one_hot = np.zeros((1, 101))
    one_hot[0, 42] = 1
    assert np.isclose(median_age(one_hot)[0], 42.0)  # the middle of the year-wide class
    flat = np.full((1, 4), 0.25)  # ages 10..13: the median is the edge between 11 and 12
    assert np.isclose(median_age(flat, age_min=10)[0], 11.5)
    assert np.isclose(median_age(flat * 3, age_min=10)[0], 11.5)  # rows are normalised first
    two = np.array([[0.0, 0.6, 0.4]])  # 60% in class 1 (0.5..1.5): the median is 5/6 of the way into it
    assert np.isclose(median_age(two)[0], 0.5 + 0.5 / 0.6)


def test_median_reads_a_skewed_distribution_nearer_its_bulk_than_the_mean():
    """A young face's distribution with a long tail towards older ages: the mean is pulled up by the tail,
    the median less so; mirrored for an old face. Both readouts agree on a symmetric one."""
    ages = np.arange(101)
    young = np.exp(-0.5 * ((ages - 18) / 2.0) ** 2) + 0.02 * (ages > 18) * np.exp(-(ages - 18) / 15.0)
    young = young[None] / young.sum()
    old = young[:, ::-1]
    assert expected_age(young)[0] > median_age(young)[0] > 18.0
    assert expected_age(old)[0] < median_age(old)[0] < 82.0
    sym = np.exp(-0.5 * ((ages - 40) / 3.0) ** 2)[None]
    sym /= sym.sum()
    assert np.isclose(median_age(sym)[0], expected_age(sym)[0], atol=0.01)


def test_gender_calibration_of_stated_probabilities_known_by_hand():
    # 10 faces stated at 0.9 (P(female) 0.9 or 0.1), 9 of them right: calibrated; 4 at 0.6, all right: 0.4 under
    p = np.array([0.9] * 5 + [0.1] * 5 + [0.6, 0.4, 0.6, 0.4])
    true = np.array([1, 1, 1, 1, 0] + [0] * 5 + [1, 0, 1, 0])
    cal = gender_calibration(p, true)
    rows = {(r["low"], r["high"]): r for r in cal["gender_reliability"]}
    assert rows[(0.9, 0.95)]["n"] == 10 and rows[(0.9, 0.95)]["accuracy"] == 0.9
    assert np.isclose(rows[(0.9, 0.95)]["confidence"], 0.9)
    assert rows[(0.6, 0.7)]["n"] == 4 and rows[(0.6, 0.7)]["accuracy"] == 1.0
    assert np.isclose(cal["gender_ece"], 4 / 14 * 0.4)  # the 0.9 bin adds nothing


def test_gender_calibration_bins_the_edges_and_skips_unknowns():
    cal = gender_calibration(np.array([0.5, 1.0, 0.0, np.nan, 0.97]), np.array([1, 1, 1, 0, -1]))
    rows = cal["gender_reliability"]
    assert [(r["low"], r["n"]) for r in rows] == [(0.5, 1), (0.99, 2)]  # 1.0 and 0.0 in the closed last bin
    assert rows[1]["accuracy"] == 0.5 and np.isclose(cal["gender_ece"], (0.5 * 1 + 0.5 * 2) / 3)
    assert np.isnan(gender_calibration(np.array([np.nan]), np.array([1]))["gender_ece"])
