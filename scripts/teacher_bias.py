"""How a run's teacher reads the training faces it taught on, per labelled age band (years): its expected value's
error (and the distributions' mean sd), its mode's error, and the expected value's error once sharpened or
flattened at each --temperature (as `train --teacher-temperature` would hand it to the student).

Reads the run's `args.json` (which data, which split) and `teacher.npz` (the teacher's age distributions over
the student's age classes, one row per training face, in the order training reads them).

    python scripts/teacher_bias.py runs/default --temperature 0.5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from agegender.extras import script_imports

with script_imports():  # without its extra: one line naming it, no traceback
    import torch

    from agegender.evaluation.metrics import DECADES, decade_labels
    from agegender.training.config import TrainConfig
    from agegender.training.distill import sharpen
    from agegender.training.splits import load_train_data


def teacher_table(run: Path, temperatures: tuple[float, ...] = ()) -> list[str]:
    """Markdown rows (header first): per band, the teacher's mean error in years, as described above."""
    cfg = TrainConfig.from_dict(json.loads((run / "args.json").read_text()))
    data = load_train_data(cfg)
    true = data.train.ages.numpy().astype(np.float64)
    with np.load(run / "teacher.npz") as z:
        dist = torch.from_numpy(z["ages"]).double()
    if len(dist) != len(true):
        raise ValueError(f"{run}/teacher.npz holds {len(dist)} rows, the run's training data {len(true)} faces")
    grid = torch.arange(data.prep.age_min, data.prep.age_min + dist.shape[1], dtype=torch.float64)
    known = ~np.isnan(true)
    bands = np.array(decade_labels(true))

    def row(name: str, read: np.ndarray, sd: np.ndarray | None = None) -> str:
        cells = []
        for b in DECADES:
            m = known & (bands == b)
            cell = f"{(read[m] - true[m]).mean():+.2f}" if m.any() else "-"
            cells.append(cell + (f" ({sd[m].mean():.1f})" if sd is not None and m.any() else ""))
        return f"| {name} | " + " | ".join(cells) + " |"

    mean = (dist @ grid).numpy()
    sd = np.sqrt(np.maximum((dist @ grid**2).numpy() - mean**2, 0))
    rows = ["| teacher's reading | " + " | ".join(DECADES) + " |", "|---|" + "---:|" * len(DECADES),
            row("expected value (sd)", mean, sd), row("mode", grid[dist.argmax(1)].numpy())]
    rows += [row(f"expected value at temperature {t:g}", (sharpen(dist, t) @ grid).numpy()) for t in temperatures]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a run folder trained with --teacher (args.json, teacher.npz)")
    ap.add_argument("--temperature", type=float, action="append", default=[], help="also sharpened at this T")
    a = ap.parse_args(argv)
    print("\n".join(teacher_table(a.run, tuple(a.temperature))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
