"""Choose a WiSE-FT alpha on validation data: each blend of a run's checkpoint with its start, measured as shipped.

For every alpha, the run's checkpoint is moved that far from its --init (`wise_interpolate`: alpha 1 is the
fine-tuned model, 0 the start), rounded to float16 and exported to ONNX as `make_builtin_model.py` ships it,
then measured on each --val split (prepared crops where the model's cut can be had from them, else end to
end) and, with --frl, end to end on the FRL portraits. It prints one markdown row per alpha: each set's age
MAE and gender accuracy, and the mean of the age MAEs (the built-in models' selection criterion).
With --soup FILE, each blend is also averaged with that file (`soup`: e.g. an earlier built-in model from the
same start) at every --soup-weights share, one row per alpha and share. With --ensemble FILE (repeatable)
each blend is measured as an output ensemble with those files instead (`ensemble`: the first --shared layers,
the run's frozen ones, computed once), one row per alpha. With --baseline MODEL (e.g. `default`) that model
is measured too, and each row gets its mean age MAE minus the baseline's and, per set, its gender accuracy
minus the baseline's (points), each with a 95% bootstrap interval paired face by face
(`agegender.evaluation.uncertainty`): it shows how much of a difference the choice of faces alone could make,
not how much a rerun of training would move it.

    python scripts/wise_sweep.py runs/default --init faceres-deep.safetensors --alphas 1,0.9,0.8,0.7,0.6 \\
        --val utk_val=data/utk-sq:val --val aaf_val=data/aaf-sq:val --frl ../shared/datasets/frl_canada
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from agegender.extras import script_imports

with script_imports():  # without its extra: one line naming it, no traceback
    from agegender.evaluation.compare import load_predictions
    from agegender.evaluation.report import evaluate_model
    from agegender.evaluation.uncertainty import mean_of_differences, paired_difference
    from agegender.export.onnx_export import export_onnx
    from agegender.training.wise import ensemble, soup, wise_interpolate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_builtin_model import frl_metrics, round_to_half, split_spec  # noqa: E402

Sets = dict[str, dict[str, Any]]


@dataclass
class Losses:
    """One model's per-face losses on each set ({set key: shape (N,)}, NaN: no face found or no label): `age`
    the |age error| in years, `gender` the gender mistakes (1.0 wrong, 0.0 right)."""

    age: dict[str, np.ndarray] = field(default_factory=dict)
    gender: dict[str, np.ndarray] = field(default_factory=dict)


def measure_sets(model: str, vals: list[tuple[str, str, str]], frl: str | None, out: Path) -> tuple[Sets, Losses]:
    """({set key: overall metrics}, the per-face losses) of one model file."""
    metrics, losses = {}, Losses()
    for key, data, split in vals:
        metrics[key] = evaluate_model(model, data, split, out / key, progress=False)["overall"]
        answers = load_predictions(out / key)
        losses.age[key], losses.gender[key] = answers.age_error, answers.gender_mistake
    if frl:
        metrics["frl"] = frl_metrics(model, Path(frl), losses.age, losses.gender)
    return metrics, losses


def measure(checkpoint: Path, init: str, alpha: float, vals: list[tuple[str, str, str]], frl: str | None,
            tmp: Path, soup_with: str | None = None, soup_weight: float = 0.0, members: list[str] | None = None,
            shared: int = 0) -> tuple[Sets, Losses]:
    """measure_sets() of one alpha (and soup share, or ensemble), on the float16 ONNX export."""
    model, cfg = wise_interpolate(checkpoint, init, alpha)
    if soup_with:
        model, cfg = soup(model, cfg, soup_with, soup_weight)
    if members:
        model, cfg = ensemble(model, cfg, members, shared)
    round_to_half(model)
    tag = f"{alpha:g}-{soup_weight:g}"
    probe = tmp / f"wise-{tag}.onnx"
    export_onnx(model, cfg, probe, half_weights=True)
    out = measure_sets(str(probe), vals, frl, tmp / tag)
    probe.unlink()
    return out


def against(losses: Losses, base: Losses) -> str:
    """'diff [low, high]' of the mean age MAE over the sets minus the baseline's, paired face by face (95%)."""
    d = mean_of_differences([paired_difference(base.age[k], losses.age[k], seed=i) for i, k in enumerate(losses.age)])
    return f"{d.diff:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"


def gender_against(losses: Losses, base: Losses) -> str:
    """Per set, 'diff [low, high]' of the gender accuracy minus the baseline's in points, paired face by face
    (95%), joined by ' / ' in the sets' order."""
    def points(mistakes: float) -> str:  # a difference of mistakes -> of accuracy, in points (no '-0.0')
        return f"{round(-100 * mistakes, 1) + 0.0:+.1f}"

    parts = []
    for i, k in enumerate(losses.gender):
        d = paired_difference(base.gender[k], losses.gender[k], seed=i)
        parts.append(f"{points(d.diff)} [{points(d.high)}, {points(d.low)}]")
    return " / ".join(parts)


def table(rows: dict[Any, tuple[Sets, Losses]], baseline: tuple[Sets, Losses] | None = None) -> str:
    """Markdown: alpha (or 'alpha, soup share') | per set 'MAE / bias / gender %' | mean age MAE, and with a
    baseline a last row for it and two columns: the mean's difference from it and each set's gender accuracy
    difference (points), with their 95% paired intervals."""
    keys = list(next(iter(rows.values()))[0])
    extra = f" | mean - baseline (95%) | gender - baseline, points (95%): {' / '.join(keys)}" if baseline else ""
    lines = ["| alpha | " + " | ".join(f"{k}: MAE / bias / gender" for k in keys) + f" | mean age MAE{extra} |",
             "|---:|" + "---|" * len(keys) + "---:|" + ("---:|---|" if baseline else "")]
    labelled = [(f"{a:g}" if isinstance(a, float) else ", ".join(f"{x:g}" for x in a), r) for a, r in rows.items()]
    for label, (sets, losses) in labelled + ([("baseline", baseline)] if baseline else []):
        cells = [f"{m['age_mae']:.2f} / {m['age_bias']:+.2f} / {100 * m['gender_acc']:.1f}%" for m in sets.values()]
        mean = sum(m["age_mae"] for m in sets.values()) / len(sets)
        diff = f" | {against(losses, baseline[1])} | {gender_against(losses, baseline[1])}" if baseline else ""
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {mean:.3f}{diff} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="training run folder (best.safetensors / last.safetensors)")
    ap.add_argument("--init", required=True, help="the model the run started from (its --init)")
    ap.add_argument("--checkpoint", default="last", choices=["best", "last"])
    ap.add_argument("--alphas", default="1,0.9,0.8,0.7,0.6", help="comma-separated, each within 0..1")
    ap.add_argument("--val", action="append", default=[], metavar="KEY=DATA:SPLIT", help="a prepared dataset's split")
    ap.add_argument("--soup", help="also average each blend with this weights file (same architecture and input)")
    ap.add_argument("--soup-weights", default="0.5", help="with --soup: comma-separated shares of that file")
    ap.add_argument("--ensemble", action="append", default=[], metavar="FILE",
                    help="measure each blend in an output ensemble with this weights file (repeatable)")
    ap.add_argument("--shared", type=int, default=0,
                    help="with --ensemble: how many lower layers the members share (the run's --freeze)")
    ap.add_argument("--frl", help="frl_canada folder: also measure end to end on its portraits")
    ap.add_argument("--baseline", help="also measure this model (built-in name or file, e.g. default) and give each "
                                       "row's mean age MAE minus its and each set's gender accuracy minus its, "
                                       "with 95%% intervals paired face by face")
    args = ap.parse_args()
    vals = [split_spec(spec) for spec in args.val]
    if not vals and not args.frl:
        ap.error("give at least one --val or --frl")
    alphas = [float(a) for a in args.alphas.split(",")]
    checkpoint = Path(args.run) / f"{args.checkpoint}.safetensors"
    rows = {}
    shares = [float(w) for w in args.soup_weights.split(",")] if args.soup else []
    grid = [(a, w) for a in alphas for w in shares] if shares else alphas
    with tempfile.TemporaryDirectory() as tmp:
        for key in tqdm(grid, desc="wise sweep", unit="blend"):
            alpha, share = key if shares else (key, 0.0)
            rows[key] = measure(checkpoint, args.init, alpha, vals, args.frl, Path(tmp), args.soup, share,
                                args.ensemble, args.shared)
        baseline = measure_sets(args.baseline, vals, args.frl, Path(tmp) / "baseline") if args.baseline else None
    print(table(rows, baseline))


if __name__ == "__main__":
    main()
