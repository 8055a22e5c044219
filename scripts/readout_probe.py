"""Read one model's age distributions two ways, as the expected value (what every built-in model ships) and as the
median (`decode.median_age`), on the same faces: each set's age MAE and bias, overall and per age band. With
--by-prediction, also the true ages of the faces grouped by the age read (expected value): what a calibration
fitted on those faces would map each reading to.

The weights are not touched; only the readout of the age head's softmax differs, so gender is the same in both.
Validation splits are measured on their prepared crops where the model's cut can be had from them (else end to
end, as `agegender evaluate` decides), FRL end to end (the largest face of each portrait).

    python scripts/readout_probe.py default --val utk_val=data/utk-sq:val --val aaf_val=data/aaf-sq:val \\
        --frl ../shared/datasets/frl_canada [--by-prediction]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agegender import Predictor
from agegender.data.dataset import PreparedDataset
from agegender.evaluation.metrics import DECADES, decade_labels
from agegender.evaluation.report import crops_compatible, predict_crops, predict_end_to_end
from agegender.models import EstimatorOutput, load_estimator
from agegender.models.decode import expected_age, median_age

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_builtin_model import frl_end_to_end, split_spec  # noqa: E402

READOUTS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {"mean": expected_age, "median": median_age}
BANDS = DECADES
READ_BINS = (0, 5, 10, 15, 18, 20, 22, 25, 30, 35, 40, 50, 60, 70, 200)  # edges of the predicted-age groups, years


class ReadAs:
    """An estimator whose ages are read from its age distributions by `readout` (the rest passed through)."""

    def __init__(self, est, readout: Callable[[np.ndarray, int], np.ndarray]) -> None:  # noqa: ANN001
        self.est, self.readout = est, readout

    @property
    def preprocessing(self):  # noqa: ANN201
        return self.est.preprocessing

    @property
    def config(self):  # noqa: ANN201
        return self.est.config

    def estimate(self, crops_rgb: np.ndarray, flip_tta: bool = False) -> EstimatorOutput:
        out = self.est.estimate(crops_rgb, flip_tta=flip_tta)
        return EstimatorOutput(self.readout(out.age_probs, self.preprocessing.age_min), out.p_female, out.age_probs,
                               out.age_ranges)


def set_ages(est, data: str, split: str, frl: bool) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """(predicted ages, true ages), shape (N,) each; NaN where no face was found."""
    if frl:
        ages, _, found, true_age, _ = frl_end_to_end(est, Path(data))
        return np.where(found, ages, np.nan), true_age
    ds = PreparedDataset(data, split)
    if crops_compatible(ds, est):  # as `agegender evaluate` decides: the stored crops, else end to end
        ages, *_ = predict_crops(est, ds, flip_tta=False, progress=False)
    else:
        ages, _, found, _ = predict_end_to_end(Predictor(est), ds.column("source"), False)
        ages = np.where(found, ages, np.nan)
    return ages, ds.ages.astype(np.float64)


def row(name: str, pred: np.ndarray, true: np.ndarray) -> str:
    """A markdown row: overall MAE / bias, then the bias of each age band (years; '-' for an empty band)."""
    err = pred - true
    ok = ~np.isnan(err)
    bands = np.array(decade_labels(true))
    cells = [f"{np.abs(err[ok]).mean():.4f} / {err[ok].mean():+.2f}"]
    for b in BANDS:
        m = ok & (bands == b)
        cells.append(f"{err[m].mean():+.2f}" if m.any() else "-")
    return f"| {name} | " + " | ".join(cells) + " |"


def by_prediction(name: str, pred: np.ndarray, true: np.ndarray) -> list[str]:
    """Markdown rows: for each group of READ_BINS by predicted age (years), n / the group's mean prediction / its
    true ages' median / their mean (faces with no reading left out; empty groups skipped)."""
    ok = ~np.isnan(pred)
    pred, true = pred[ok], true[ok]
    rows = []
    for lo, hi in zip(READ_BINS[:-1], READ_BINS[1:]):
        m = (pred >= lo) & (pred < hi)
        if m.any():
            span = f"{lo}-{hi}" if hi < READ_BINS[-1] else f"{lo}+"
            rows.append(f"| {name} | {span} | {int(m.sum())} | {pred[m].mean():.1f} | {np.median(true[m]):.1f} | "
                        f"{true[m].mean():.1f} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="built-in name or weights file")
    ap.add_argument("--val", action="append", default=[], metavar="KEY=DATA:SPLIT", help="a prepared dataset's split")
    ap.add_argument("--frl", help="the FRL portraits' folder (labels.csv: file, age, gender)")
    ap.add_argument("--by-prediction", action="store_true",
                    help="also each set's true ages grouped by the age read (expected value)")
    a = ap.parse_args(argv)
    sets = [split_spec(v) + (False,) for v in a.val] + ([("frl", a.frl, "", True)] if a.frl else [])
    est = load_estimator(a.model)
    print("| set, readout | age MAE / bias | " + " | ".join(f"bias {b}" for b in BANDS) + " |")
    print("|---|---:|" + "---:|" * len(BANDS))
    means = {r: [] for r in READOUTS}
    grouped: list[str] = []
    for key, data, split, frl in sets:
        for name, readout in READOUTS.items():
            pred, true = set_ages(ReadAs(est, readout), data, split, frl)
            means[name].append(float(np.nanmean(np.abs(pred - true))))
            print(row(f"{key}, {name}", pred, true), flush=True)
            if a.by_prediction and name == "mean":
                grouped += by_prediction(key, pred, true)
    print("\nmean age MAE over the sets: " + ", ".join(f"{r} {np.mean(v):.4f}" for r, v in means.items()))
    if grouped:
        print("\n| set | age read | n | mean reading | true median | true mean |\n|---|---|---:|---:|---:|---:|")
        print("\n".join(grouped))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
