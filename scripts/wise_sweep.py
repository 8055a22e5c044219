"""Choose a WiSE-FT alpha on validation data: each blend of a run's checkpoint with its start, measured as shipped.

For every alpha, the run's checkpoint is moved that far from its --init (`wise_interpolate`: alpha 1 is the
fine-tuned model, 0 the start), rounded to float16 and exported to ONNX as `make_builtin_model.py` ships it,
then measured on each --val split (prepared crops where the model's cut can be had from them, else end to
end) and, with --frl, end to end on the FRL portraits. It prints one markdown row per alpha: each set's age
MAE and gender accuracy, and the mean of the age MAEs (the built-in models' selection criterion).
With --soup FILE, each blend is also averaged with that file (`soup`: e.g. an earlier built-in model from the
same start) at every --soup-weights share, one row per alpha and share. With --ensemble FILE (repeatable)
each blend is measured as an output ensemble with those files instead (`ensemble`: the first --shared layers,
the run's frozen ones, computed once), one row per alpha.

    python scripts/wise_sweep.py runs/default --init faceres-deep.safetensors --alphas 1,0.9,0.8,0.7,0.6 \\
        --val utk_val=data/utk-sq:val --val aaf_val=data/aaf-sq:val --frl ../shared/datasets/frl_canada
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from agegender.evaluation.report import evaluate_model
from agegender.export.onnx_export import export_onnx
from agegender.training.wise import ensemble, soup, wise_interpolate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_builtin_model import frl_metrics, round_to_half, split_spec  # noqa: E402


def measure(checkpoint: Path, init: str, alpha: float, vals: list[tuple[str, str, str]], frl: str | None,
            tmp: Path, soup_with: str | None = None, soup_weight: float = 0.0, members: list[str] | None = None,
            shared: int = 0) -> dict[str, dict[str, Any]]:
    """{set key: overall metrics} for one alpha (and soup share, or ensemble), measured on the float16 ONNX
    export."""
    model, cfg = wise_interpolate(checkpoint, init, alpha)
    if soup_with:
        model, cfg = soup(model, cfg, soup_with, soup_weight)
    if members:
        model, cfg = ensemble(model, cfg, members, shared)
    round_to_half(model)
    probe = tmp / f"wise-{alpha:g}-{soup_weight:g}.onnx"
    export_onnx(model, cfg, probe, half_weights=True)
    tag = f"{alpha:g}-{soup_weight:g}"
    out = {key: evaluate_model(str(probe), data, split, tmp / f"{key}-{tag}", progress=False)["overall"]
           for key, data, split in vals}
    if frl:
        out["frl"] = frl_metrics(probe, Path(frl))
    probe.unlink()
    return out


def table(rows: dict[Any, dict[str, dict[str, Any]]]) -> str:
    """Markdown: alpha (or 'alpha, soup share') | per set 'MAE / bias / gender %' | mean age MAE."""
    keys = list(next(iter(rows.values())))
    lines = ["| alpha | " + " | ".join(f"{k}: MAE / bias / gender" for k in keys) + " | mean age MAE |",
             "|---:|" + "---|" * len(keys) + "---:|"]
    for alpha, sets in rows.items():
        cells = [f"{m['age_mae']:.2f} / {m['age_bias']:+.2f} / {100 * m['gender_acc']:.1f}%" for m in sets.values()]
        mean = sum(m["age_mae"] for m in sets.values()) / len(sets)
        label = f"{alpha:g}" if isinstance(alpha, float) else ", ".join(f"{x:g}" for x in alpha)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {mean:.3f} |")
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
    print(table(rows))


if __name__ == "__main__":
    main()
