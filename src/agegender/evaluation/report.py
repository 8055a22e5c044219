"""`evaluate`: measure a model on a prepared dataset split; write report.json, report.md, predictions.csv
and PNG plots."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..align import from_stored_crop
from ..data.dataset import PreparedDataset
from ..detectors.base import detect_faces
from ..extras import MissingExtra
from ..fileio import atomic_write_json, atomic_write_text
from ..imageio import ImageLoadError
from ..inference.batch import use_fast_detector
from ..inference.predictor import Predictor
from ..lazyimage import LazyImage
from ..models.estimator import Estimator, load_estimator
from .metrics import breakdown, decade_labels, gender_calibration, summarize

#: report.md's line when a model that levels faces (`Preprocessing.level`) is measured on stored crops
UPRIGHT_CROPS_NOTE = ("The model reads levelled crops (tilted heads turned upright) when it finds faces itself; "
                      "these are the dataset's stored crops, upright squares as prepared. `--mode end-to-end` "
                      "measures it as it runs.")


def crops_compatible(ds: PreparedDataset, est: Estimator) -> bool:
    """True when the model's crops can be had from the dataset's stored ones: the same crop mode and a margin
    no wider (a narrower one is their centre, as training cuts it). Stored squares are upright: a model that
    reads levelled squares (`Preprocessing.level`) is given them as they are, as it was trained."""
    dp, mp = ds.preprocessing, est.preprocessing
    return dp.crop == mp.crop and mp.margin <= dp.margin + 1e-9


def _calibration(est: Estimator) -> dict[str, Any] | None:
    """The age-range calibration in the model's record (None: none, or a wrapper that carries no record)."""
    return getattr(getattr(est, "config", None), "age_range", None)


def _range_array(est: Estimator, n: int) -> np.ndarray | None:
    """(n, 2) NaNs to fill with age ranges, or None when the model's record calibrates none."""
    return np.full((n, 2), np.nan, np.float32) if _calibration(est) else None


def predict_crops(est: Estimator, ds: PreparedDataset, flip_tta: bool, progress: bool, batch: int = 256):
    """Ages, P(female), found (all True) and (N, 2) age ranges (None without a calibration) for every stored
    crop (its centre at the model's margin, resized to its input)."""
    stored, prep = ds.preprocessing, est.preprocessing
    ages, pf = np.full(len(ds), np.nan, np.float32), np.full(len(ds), np.nan, np.float32)
    ranges = _range_array(est, len(ds))
    for i in tqdm(range(0, len(ds), batch), desc="evaluate", unit="batch", disable=not progress):
        idx = range(i, min(i + batch, len(ds)))
        out = est.estimate(np.stack([from_stored_crop(ds.image(j), stored, prep) for j in idx]), flip_tta=flip_tta)
        ages[i : i + len(idx)], pf[i : i + len(idx)] = out.ages, out.p_female
        if ranges is not None:
            ranges[i : i + len(idx)] = out.age_ranges
    return ages, pf, np.ones(len(ds), bool), ranges


def predict_end_to_end(predictor: Predictor, sources: list[str], progress: bool):
    """Detect and estimate on the source images; the largest face counts. Returns ages, P(female), found and
    (N, 2) age ranges (None without a calibration)."""
    n = len(sources)
    ages, pf, found = np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32), np.zeros(n, bool)
    ranges = _range_array(predictor.estimator, n)
    for i, src in enumerate(tqdm(sources, desc="evaluate end-to-end", unit="img", disable=not progress)):
        try:  # decoded as far as `predict` decodes it (agegender.lazyimage)
            image = LazyImage.open(src)
            dets = detect_faces(predictor.detector, image, refine=predictor.refine_small_faces)[:1]
            if not dets:
                continue
            f = predictor.estimate_faces(image, dets)[0]
        except ImageLoadError:
            continue
        ages[i] = f.age
        pf[i] = f.gender_probability if f.gender.value == 1 else 1 - f.gender_probability
        found[i] = True
        if ranges is not None and f.age_range is not None:
            ranges[i] = f.age_range
    return ages, pf, found, ranges


def markdown_table(rows: dict[str, dict[str, Any]], first: str) -> str:
    spans = any("age_range_coverage" in m for m in rows.values())
    head = f"| {first} | n | faces found | age MAE | CS@5 | gender acc |"
    lines = [head + (" in age range | range width |" if spans else ""),
             "|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if spans else "")]
    for name, m in rows.items():
        row = (f"| {name} | {m['n']} | {100 * m['faces_found']:.1f}% | {m['age_mae']:.2f} | {100 * m['cs5']:.1f}% | "
               f"{100 * m['gender_acc']:.1f}% |")
        if spans:
            row += f" {100 * m['age_range_coverage']:.1f}% | {m['age_range_width']:.1f} |"
        lines.append(row)
    return "\n".join(lines)


def evaluate_model(model: str | os.PathLike[str] | Estimator, data: str | os.PathLike[str], split: str,
                   out: str | os.PathLike[str], mode: str = "auto", flip_tta: bool = False,
                   progress: bool = True, detector: str = "retinaface", fast_detector: bool = False) -> dict[str, Any]:
    """Evaluate and write the report into `out`; returns the report dict. `detector`: end-to-end only;
    fast_detector: its input at `predict --fast`'s size (end-to-end only).

    The PNG plots need matplotlib (the 'plots' extra); without it the report is written all the same and
    report["plots_skipped"] says what to install.
    """
    est = model if hasattr(model, "estimate") else load_estimator(model)  # type: ignore[arg-type]
    ds = PreparedDataset(data, split)
    if len(ds) == 0:
        raise ValueError(f"{data}: split {split!r} is empty")
    mode, (ages, pf, found, ranges) = _predict(est, ds, data, mode, flip_tta, progress, detector, fast_detector)
    true_age, true_gender = ds.ages, ds.genders
    report: dict[str, Any] = {
        "model": str(getattr(est, "path", model)),
        "data": str(data),
        "split": split,
        "mode": mode,
        "detector": detector if mode == "end-to-end" else None,
        "fast_detector": fast_detector if mode == "end-to-end" else None,
        "flip_tta": flip_tta,
        "upright_crops_for_a_levelled_model": mode == "crops" and est.preprocessing.level,
        "age_range": _calibration(est),
        "overall": summarize(ages, pf, true_age, true_gender, found, ranges),
        "gender_calibration": gender_calibration(np.where(found, pf, np.nan), true_gender),
        "by_decade": breakdown(decade_labels(true_age), ages, pf, true_age, true_gender, found, ranges),
        "by_gender": breakdown(
            [{0: "male", 1: "female"}.get(int(g), "unknown") for g in true_gender], ages, pf, true_age, true_gender,
            found),
    }
    if any(ds.column("race")):
        report["by_race"] = breakdown(ds.column("race"), ages, pf, true_age, true_gender, found)
    _write_report(Path(out), report, ds, (ages, pf, found, ranges))
    return report


def _predict(est: Estimator, ds: PreparedDataset, data: str | os.PathLike[str], mode: str, flip_tta: bool,
             progress: bool, detector: str, fast_detector: bool
             ) -> tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]:
    """(mode used, (ages in years, P(female), found, age ranges (N, 2) or None)) for every face of ds:
    from the prepared crops ("crops") or from the source images through the detector ("end-to-end")."""
    if mode == "auto":
        mode = "crops" if crops_compatible(ds, est) else "end-to-end"
    if mode == "crops":
        if not crops_compatible(ds, est):
            raise ValueError(
                f"{data} was cropped with {ds.preprocessing.crop}/margin {ds.preprocessing.margin}, the model expects "
                f"{est.preprocessing.crop}/margin {est.preprocessing.margin}; use --mode end-to-end"
            )
        return mode, predict_crops(est, ds, flip_tta, progress)
    predictor = Predictor(est, detector, flip_tta=flip_tta)
    if fast_detector:
        use_fast_detector(predictor)
    return mode, predict_end_to_end(predictor, ds.column("source"), progress)


def _write_report(out: Path, report: dict[str, Any], ds: PreparedDataset,
                  predictions: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]) -> None:
    """report.json, report.md, predictions.csv and the plots (when matplotlib is there) into out."""
    ages, pf, found, ranges = predictions
    out.mkdir(parents=True, exist_ok=True)
    try:
        report["plots"] = [p.name for p in write_plots(ages, ds.ages, report["by_decade"], out, report["split"],
                                                       report["gender_calibration"])]
    except MissingExtra as exc:
        report["plots"], report["plots_skipped"] = [], str(exc)
    atomic_write_json(out / "report.json", report)
    md = [f"# Evaluation: {report['model']} on {report['data']} ({report['split']}, {report['mode']})", ""]
    if report["upright_crops_for_a_levelled_model"]:
        md += [UPRIGHT_CROPS_NOTE, ""]
    md += [markdown_table({"all": report["overall"]}, "set"), "", "## By age decade", "",
          markdown_table(report["by_decade"], "age"), "", "## By gender", "",
          markdown_table(report["by_gender"], "gender")]
    if "by_race" in report:
        md += ["", "## By race label", "", markdown_table(report["by_race"], "race")]
    md += ["", "## Gender probability calibration", "", reliability_table(report["gender_calibration"])]
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "source", "true_age", "true_gender", "found", "pred_age", "p_female"]
               + (["pred_age_low", "pred_age_high"] if ranges is not None else []))
    for i in range(len(ds)):
        span = [] if ranges is None else ["" if np.isnan(v) else f"{v:.2f}" for v in ranges[i]]
        w.writerow([ds.rows[i]["file"], ds.rows[i]["source"], ds.rows[i]["age"], ds.rows[i]["gender"], int(found[i]),
                    "" if np.isnan(ages[i]) else f"{ages[i]:.2f}", "" if np.isnan(pf[i]) else f"{pf[i]:.4f}", *span])
    atomic_write_text(out / "predictions.csv", buf.getvalue())


def reliability_table(cal: dict[str, Any]) -> str:
    """Markdown: each confidence bin's faces, mean stated probability and accuracy, and the ECE under it."""
    lines = ["| stated probability | faces | mean stated | right |", "|---|---:|---:|---:|"]
    for r in cal["gender_reliability"]:
        lines.append(f"| {r['low']:.2f}-{r['high']:.2f} | {r['n']} | {100 * r['confidence']:.1f}% | "
                     f"{100 * r['accuracy']:.1f}% |")
    return "\n".join(lines) + f"\n\nExpected calibration error: {100 * cal['gender_ece']:.1f} points."


def write_plots(ages: np.ndarray, true_age: np.ndarray, by_decade: dict[str, dict[str, Any]], out: Path,
                split: str, calibration: dict[str, Any] | None = None) -> list[Path]:
    """predicted_vs_true.png, error_by_age.png and (given the gender calibration) gender_reliability.png into
    `out`; MissingExtra without matplotlib."""
    from .plots import plot_error_by_group, plot_predicted_vs_true, plot_reliability

    paths = [plot_predicted_vs_true(ages, true_age, out / "predicted_vs_true.png", f"{split}: predicted vs true age"),
             plot_error_by_group(by_decade, out / "error_by_age.png", f"{split}: age MAE by decade")]
    if calibration is not None:
        paths.append(plot_reliability(calibration["gender_reliability"], out / "gender_reliability.png",
                                      f"{split}: gender probability, ECE {100 * calibration['gender_ece']:.1f} pts"))
    return paths
