"""`compare`: is model B better than model A on the same faces, or is the difference within sampling noise?

Reads two `evaluate` outputs (predictions.csv) of the same split, pairs them by file and reports each
model's age MAE and gender accuracy with 95% bootstrap intervals, and B minus A with its paired interval
(agegender.evaluation.uncertainty).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..types import Gender
from .uncertainty import Difference, interval, paired_difference


@dataclass(frozen=True)
class Predictions:
    """One model's answers on one split, as `evaluate` writes them; arrays of shape (N,), NaN where unknown
    (true_gender: 0 male, 1 female, NaN unknown; pred_age and p_female NaN where no face was found)."""

    files: list[str]
    true_age: np.ndarray
    true_gender: np.ndarray
    pred_age: np.ndarray
    p_female: np.ndarray

    @property
    def age_error(self) -> np.ndarray:
        """|predicted - true| in years, NaN where either is missing."""
        return np.abs(self.pred_age - self.true_age)

    @property
    def gender_mistake(self) -> np.ndarray:
        """1.0 where P(female) >= 0.5 disagrees with the true gender, 0.0 where it agrees, NaN where unknown."""
        said = (self.p_female >= 0.5).astype(np.float64)
        return np.where(np.isnan(self.p_female) | np.isnan(self.true_gender), np.nan, said != self.true_gender)


def load_predictions(path: str | os.PathLike[str]) -> Predictions:
    """An `evaluate` report folder or its predictions.csv."""
    path = Path(path)
    csv_path = path / "predictions.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise FileNotFoundError(f"{path}: no predictions.csv (write one with `agegender evaluate`)")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"file", "true_age", "true_gender", "pred_age", "p_female"} - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{csv_path}: not an `evaluate` predictions file (missing {', '.join(sorted(missing))})")

    def num(key: str) -> np.ndarray:
        return np.array([float(r[key]) if r[key] else np.nan for r in rows], np.float64)

    genders = np.array([_gender_code(r["true_gender"]) for r in rows], np.float64)
    return Predictions([r["file"] for r in rows], num("true_age"), genders, num("pred_age"), num("p_female"))


def _gender_code(value: str) -> float:
    """Gender's code (0 male, 1 female) of a written label; NaN when unknown ('', 'unknown', -1)."""
    try:
        return float(Gender.parse(value))
    except ValueError:
        return float("nan")


def pair(a: Predictions, b: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """Row indices into a and b of the files both hold, in a's order; ValueError when they share none or
    disagree on a face's labels (then they are not the same split)."""
    where_b = {f: i for i, f in enumerate(b.files)}
    ia = np.array([i for i, f in enumerate(a.files) if f in where_b], int)
    if len(ia) == 0:
        raise ValueError("the two prediction files share no face: compare two evaluations of the same split")
    ib = np.array([where_b[a.files[i]] for i in ia], int)
    same = np.allclose(a.true_age[ia], b.true_age[ib], equal_nan=True) and np.allclose(
        a.true_gender[ia], b.true_gender[ib], equal_nan=True)
    if not same:
        raise ValueError("the two prediction files label the same files differently: not the same split")
    return ia, ib


def compare(a: Predictions, b: Predictions, level: float = 0.95) -> dict[str, Any]:
    """{'n_paired', 'level', 'age_mae': {...}, 'gender_error': {...}}: for each, A's and B's value with its interval,
    and B - A (negative: B better) with the paired interval, the share of resamples where B was better and
    whether the interval leaves out zero."""
    ia, ib = pair(a, b)
    out: dict[str, Any] = {"n_paired": len(ia), "level": level}
    for key, loss in (("age_mae", "age_error"), ("gender_error", "gender_mistake")):
        la, lb = getattr(a, loss)[ia], getattr(b, loss)[ib]
        if np.isnan(la).all() or np.isnan(lb).all():
            continue
        d = paired_difference(la, lb, level)
        out[key] = {"a": float(np.nanmean(la)), "a_interval": interval(la, level),
                    "b": float(np.nanmean(lb)), "b_interval": interval(lb, level, seed=1), **_difference(d)}
    return out


def _difference(d: Difference) -> dict[str, Any]:
    return {"b_minus_a": d.diff, "interval": (d.low, d.high), "p_b_better": d.p_b_better, "n": d.n,
            "clear": d.clear}


def markdown(result: dict[str, Any], name_a: str = "A", name_b: str = "B") -> str:
    """The comparison as a markdown table (each value with its interval) and one sentence per metric."""
    head = f"{name_b} - {name_a} (paired {result['level']:.0%})"
    lines = [f"| metric | {name_a} | {name_b} | {head} | {name_b} better in |", "|---|---:|---:|---:|---:|"]
    verdicts = []
    for key, (label, fmt) in _SHOWN.items():
        if key not in result:
            continue
        m, signed = result[key], fmt.replace("{:", "{:+")
        lines.append(f"| {label} | {_cell(fmt, m['a'], m['a_interval'])} | {_cell(fmt, m['b'], m['b_interval'])} | "
                     f"{_cell(signed, m['b_minus_a'], m['interval'])} | {100 * m['p_b_better']:.0f}% of resamples |")
        better = name_b if m["b_minus_a"] < 0 else name_a
        verdicts.append(f"{label}: {better} is better on these {m['n']} faces" if m["clear"] else
                        f"{label}: the difference is within the sampling noise of {m['n']} faces")
    return "\n".join(lines + [""] + verdicts)


#: metric key -> (label, format of its value); shares (gender errors) are shown in percent
_SHOWN = {"age_mae": ("age MAE (years)", "{:.2f}"), "gender_error": ("gender errors", "{:.1%}")}


def _cell(fmt: str, value: float, bounds: tuple[float, float]) -> str:
    return f"{fmt.format(value)} [{fmt.format(bounds[0])}, {fmt.format(bounds[1])}]"
