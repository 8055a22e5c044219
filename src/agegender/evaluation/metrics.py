"""Pure numpy metrics for age and gender estimates, overall and by group."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def age_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MAE (years), CS@5 (share within 5 years), mean signed error (bias) over entries with a known age."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    ok = ~np.isnan(true) & ~np.isnan(pred)
    if not ok.any():
        return {"age_mae": float("nan"), "cs5": float("nan"), "age_bias": float("nan"), "n_age": 0}
    err = pred[ok] - true[ok]
    return {
        "age_mae": float(np.abs(err).mean()),
        "cs5": float((np.abs(err) <= 5).mean()),
        "age_bias": float(err.mean()),
        "n_age": int(ok.sum()),
    }


def gender_metrics(p_female: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Accuracy of P(female) >= 0.5 against true genders (0 male, 1 female, -1 unknown is skipped)."""
    p_female, true = np.asarray(p_female, np.float64), np.asarray(true)
    ok = (true >= 0) & ~np.isnan(p_female)
    if not ok.any():
        return {"gender_acc": float("nan"), "n_gender": 0}
    return {"gender_acc": float(((p_female[ok] >= 0.5).astype(int) == true[ok]).mean()), "n_gender": int(ok.sum())}


CONFIDENCE_BINS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


def gender_calibration(p_female: np.ndarray, true: np.ndarray,
                       bins: Sequence[float] = CONFIDENCE_BINS) -> dict[str, Any]:
    """How far the stated gender probability is from how often it is right. Each face's confidence is the
    probability of the gender given, max(P(female), 1 - P(female)) in 0.5..1; faces are binned by it
    (`bins`: edges, the last bin closed) and each bin's mean confidence compared with its accuracy.
    gender_ece: the expected calibration error, sum over bins of |accuracy - confidence| x the bin's share of
    faces (0: a stated 0.9 is right 9 times in 10); gender_reliability: per bin (low, high, n, mean
    confidence, accuracy). Unknown genders (-1) and NaN probabilities are left out."""
    p_female, true = np.asarray(p_female, np.float64), np.asarray(true)
    ok = (true >= 0) & ~np.isnan(p_female)
    conf = np.maximum(p_female[ok], 1.0 - p_female[ok])
    right = (p_female[ok] >= 0.5).astype(int) == true[ok]
    edges = np.asarray(bins, np.float64)
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, len(edges) - 2)
    rows, ece = [], 0.0
    for b in range(len(edges) - 1):
        m = which == b
        if not m.any():
            continue
        c, a = float(conf[m].mean()), float(right[m].mean())
        ece += abs(a - c) * m.sum() / len(conf)
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "n": int(m.sum()), "confidence": c,
                     "accuracy": a})
    return {"gender_ece": float(ece) if len(conf) else float("nan"), "gender_reliability": rows}


def range_metrics(ranges: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """How often the (N, 2) age ranges (low, high years) hold the true age (low <= age <= high), and their
    mean width in years, over entries with a known age and a range (NaN rows are left out)."""
    ranges, true = np.asarray(ranges, np.float64), np.asarray(true, np.float64)
    ok = ~np.isnan(true) & ~np.isnan(ranges).any(axis=1)
    if not ok.any():
        return {"age_range_coverage": float("nan"), "age_range_width": float("nan")}
    low, high, t = ranges[ok, 0], ranges[ok, 1], true[ok]
    return {"age_range_coverage": float(((low <= t) & (t <= high)).mean()),
            "age_range_width": float((high - low).mean())}


DECADES = ("0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")  # decade_labels' bands, in order


def decade_labels(ages: np.ndarray) -> list[str]:
    """One of DECADES ('0-9', '10-19', ..., '70+') for each age in years (NaN -> 'unknown')."""
    out = []
    for a in ages:
        if np.isnan(a):
            out.append("unknown")
        elif a >= 70:
            out.append("70+")
        else:
            d = int(a // 10) * 10
            out.append(f"{d}-{d + 9}")
    return out


def summarize(pred_age: np.ndarray, p_female: np.ndarray, true_age: np.ndarray, true_gender: np.ndarray,
              found: np.ndarray | None = None, ranges: np.ndarray | None = None) -> dict[str, Any]:
    """All metrics for one set; `found` marks entries where a face was found (others count as misses
    in faces_found and are left out of the error metrics); with (N, 2) age `ranges`, also range_metrics."""
    n = len(true_age)
    found = np.ones(n, bool) if found is None else np.asarray(found, bool)
    out: dict[str, Any] = {"n": n, "faces_found": float(found.mean()) if n else float("nan")}
    out |= age_metrics(np.where(found, pred_age, np.nan), true_age)
    out |= gender_metrics(np.where(found, p_female, np.nan), true_gender)
    if ranges is not None:
        out |= range_metrics(np.where(found[:, None], ranges, np.nan), true_age)
    return out


def breakdown(groups: Sequence[str], pred_age: np.ndarray, p_female: np.ndarray, true_age: np.ndarray,
              true_gender: np.ndarray, found: np.ndarray | None = None,
              ranges: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
    """summarize() for each distinct group label, in sorted order."""
    groups_arr = np.asarray(groups)
    found = np.ones(len(groups_arr), bool) if found is None else np.asarray(found, bool)

    def key(g: str) -> tuple[int, str]:
        head = g.split("-")[0].rstrip("+")
        return (int(head), g) if head.isdigit() else (10**6, g)

    out = {}
    for g in sorted(set(groups_arr.tolist()), key=key):
        m = groups_arr == g
        out[g] = summarize(pred_age[m], p_female[m], true_age[m], true_gender[m], found[m],
                           None if ranges is None else ranges[m])
    return out
