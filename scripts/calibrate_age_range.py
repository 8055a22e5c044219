"""Fit the temperature that makes a model's age range hold the true age at the stated rate, on validation faces.

A model's age distribution is read as a range: its central LEVEL interval after tempering
(`agegender.models.decode.age_range`). This runs the model end to end (RetinaFace, the largest face) on
UTKFace val and All-Age-Faces val, takes every face's age distribution once, and finds the smallest
temperature whose ranges hold the true age of at least LEVEL of those faces pooled. It prints, for a grid
of temperatures and the fitted one, each set's coverage and mean width, and FRL Canada's as a check (not
used in the fit). With --write it stores {"level", "temperature", "fitted_on", "coverage"} in the model's
record (`ModelConfig.age_range`; every weights file of a built-in name: .onnx and .safetensors), leaving
the weights as they are. Test splits are not read here: measure them once afterwards (`evaluate`,
`benchmarks/accuracy.py`). With --by-prediction it also prints, at the fitted temperature, each val set's
coverage per decade of *predicted* age, and a check of one temperature per band of predicted age: fitted on one
val set, coverage by decade of true age on the other.

    python scripts/calibrate_age_range.py default --level 0.8 --write
    python scripts/calibrate_age_range.py fast --fast --level 0.8      # as `predict --fast` runs it
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from systems import aaf_samples, frl_samples, utk_samples  # noqa: E402  the benchmarks' readers

from agegender import Predictor  # noqa: E402
from agegender.evaluation.metrics import range_metrics  # noqa: E402
from agegender.extras import require, script_imports  # noqa: E402
from agegender.imageio import ImageLoadError  # noqa: E402
from agegender.inference.settings import use_fast_detector  # noqa: E402
from agegender.lazyimage import LazyImage  # noqa: E402
from agegender.models.decode import age_range  # noqa: E402
from agegender.models.estimator import builtin_models, resolve_model_path  # noqa: E402

FIT_SETS = ("utk_val", "aaf_val")
GRID = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2)


def age_distributions(predictor: Predictor, samples, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(faces, K) age distributions of each image's largest face and (faces,) true ages; images where no
    face is found are left out."""
    probs, ages = [], []
    for s in tqdm(samples, desc=name, unit="img", file=sys.stderr):
        try:
            image = LazyImage.open(s.path)
            dets, _ = predictor.detect(image)
        except ImageLoadError:
            continue
        if dets:
            out = predictor.estimator.estimate(predictor.crop(image, dets[:1]), flip_tta=predictor.flip_tta)
            probs.append(out.age_probs[0])
            ages.append(s.age)
    return np.array(probs), np.array(ages)


def coverage(probs: np.ndarray, ages: np.ndarray, level: float, temperature: float,
             age_min: int) -> tuple[float, float]:
    """(share of faces whose true age lies in its range, mean range width in years)."""
    m = range_metrics(age_range(probs, level, temperature, age_min), ages)
    return m["age_range_coverage"], m["age_range_width"]


def fit_temperature(sets: dict[str, tuple[np.ndarray, np.ndarray]], level: float, age_min: int) -> float:
    """The smallest temperature (to 0.001) whose pooled coverage over FIT_SETS is at least `level`."""
    probs = np.concatenate([sets[k][0] for k in FIT_SETS])
    ages = np.concatenate([sets[k][1] for k in FIT_SETS])
    lo, hi = 0.05, 5.0
    while hi - lo > 1e-3:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if coverage(probs, ages, level, mid, age_min)[0] < level else (lo, mid)
    return math.ceil(hi * 1000 - 1e-9) / 1000  # rounded up: the coverage only grows with the temperature


PREDICTED_BANDS = (13, 25, 40, 55)  # years of predicted age: the edges of the bands --by-prediction fits


def predicted_ages(probs: np.ndarray, age_min: int) -> np.ndarray:
    """(faces,) expected age in years of each (faces, K) age distribution."""
    return age_min + (probs / probs.sum(axis=1, keepdims=True)) @ np.arange(probs.shape[1])


def coverage_by(groups: np.ndarray, probs: np.ndarray, ages: np.ndarray, level: float,
                temperatures: np.ndarray, age_min: int) -> str:
    """"group: coverage% (faces)" per integer group, each face's range read at its own temperature."""
    ranges = np.zeros((len(ages), 2))
    for t in np.unique(temperatures):
        ranges[temperatures == t] = age_range(probs[temperatures == t], level, t, age_min)
    inside = (ranges[:, 0] <= ages) & (ages <= ranges[:, 1])
    return ", ".join(f"{10 * g}s: {100 * inside[groups == g].mean():.1f}% ({(groups == g).sum()})"
                     for g in np.unique(groups))


def print_by_prediction(sets: dict[str, tuple[np.ndarray, np.ndarray]], level: float, temperature: float,
                        age_min: int) -> None:
    """Coverage per decade of predicted age at the fitted temperature; then one temperature per band of
    predicted age (PREDICTED_BANDS) fitted on each val set, read by decade of true age on the other."""
    for k in FIT_SETS:
        p, y = sets[k]
        decade = np.minimum(predicted_ages(p, age_min) // 10, 7).astype(int)
        print(f"{k}, by predicted age, T {temperature:g}: "
              + coverage_by(decade, p, y, level, np.full(len(y), temperature), age_min))
    for fit, check in (FIT_SETS, FIT_SETS[::-1]):
        p, y = sets[fit]
        band = np.digitize(predicted_ages(p, age_min), PREDICTED_BANDS)
        temps = [fit_temperature({k: (p[band == b], y[band == b]) for k in FIT_SETS}, level, age_min)
                 for b in range(len(PREDICTED_BANDS) + 1)]
        p, y = sets[check]
        per_face = np.array(temps)[np.digitize(predicted_ages(p, age_min), PREDICTED_BANDS)]
        true_decade = np.minimum(y // 10, 7).astype(int)
        one = fit_temperature({k: sets[fit] for k in FIT_SETS}, level, age_min)
        print(f"fitted on {fit}, read on {check}, by true age:\n  one temperature {one:g}: "
              + coverage_by(true_decade, p, y, level, np.full(len(y), one), age_min)
              + f"\n  per band {[f'{t:g}' for t in temps]}: "
              + coverage_by(true_decade, p, y, level, per_face, age_min))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="built-in name or weights file")
    ap.add_argument("--level", type=float, default=0.8, help="share of faces the range should hold (0.8)")
    ap.add_argument("--fast", action="store_true", help="as `predict --fast` runs it: 320 px detector input, flip")
    ap.add_argument("--write", action="store_true", help="store the fitted calibration in the model's record")
    ap.add_argument("--by-prediction", action="store_true",
                    help="also: coverage by predicted age; a temperature per band of it, checked across the val sets")
    a = ap.parse_args()
    if a.write:  # before the minutes of measuring: rewriting an .onnx record needs the onnx package
        with script_imports():
            require("onnx", "--write", extra="export")
    predictor = Predictor(a.model, flip_tta=a.fast)
    if a.fast:
        use_fast_detector(predictor)
    age_min = predictor.preprocessing.age_min
    samples = {"utk_val": utk_samples("val"), "aaf_val": aaf_samples("val"), "frl": frl_samples()}
    sets = {k: age_distributions(predictor, v, k) for k, v in samples.items()}
    temperature = fit_temperature(sets, a.level, age_min)
    print(f"| temperature | {' | '.join(f'{k} ({len(v[1])} faces)' for k, v in sets.items())} |")
    print("|---:|" + "---|" * len(sets))
    found = {}
    for t in sorted({*GRID, temperature}):
        cells = {k: coverage(p, y, a.level, t, age_min) for k, (p, y) in sets.items()}
        if t == temperature:
            found = cells
        mark = " (fitted)" if t == temperature else ""
        print(f"| {t:g}{mark} | " + " | ".join(f"{100 * c:.1f}% in range, {w:.1f} years wide" for c, w in
                                                cells.values()) + " |")
    if a.by_prediction:
        print_by_prediction(sets, a.level, temperature, age_min)
    if a.write:
        from agegender.export.record import write_record
        from agegender.models.config import read_config

        calibration = {"level": a.level, "temperature": temperature,
                       "fitted_on": "UTKFace val + All-Age-Faces val, end to end (largest face)"
                                    + (", 320 px detector input, flip" if a.fast else ""),
                       "coverage": {k: round(c, 4) for k, (c, _) in found.items()}}
        name = str(a.model)
        files = [p for p in (builtin_models()[name].with_suffix(s) for s in (".onnx", ".safetensors")) if p.exists()] \
            if name in builtin_models() else [resolve_model_path(name)]
        for path in files:
            write_record(path, replace(read_config(str(path)), age_range=calibration))
            print(f"wrote the calibration into {path}")


if __name__ == "__main__":
    main()
