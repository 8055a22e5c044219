"""Turn a training run into a built-in model: src/agegender/weights/NAME.{safetensors,onnx}.

Measures the model with `evaluate_model` on the UTKFace test split of a prepared dataset (prepared crops
and end to end from the source images) and, where given, end to end on further sets (All-Age-Faces val,
the FRL portraits), and writes those numbers into the model card inside both weights files. The weights
are rounded to float16 once, so the .safetensors (float16) and the .onnx (computed in float32; its weights
float16 read through casts, except those float16 cannot hold exactly, e.g. batch norms folded into
convolutions at export, which stay float32) compute from the very same values that were measured.

    python scripts/make_builtin_model.py RUN_DIR --name default --data data/utk --summary "one line"
    python scripts/make_builtin_model.py RUN_DIR --name default --data data/utk-sq140 \\
        --extra aaf_val=data/aaf:val --frl ../shared/datasets/frl_canada \\
        --wise 0.8 --wise-init faceres-deep.safetensors --data-note "..." --licence "..."
    python scripts/make_builtin_model.py RUN_DIR ... --wise 1.0 --wise-init faceres-deep.safetensors \\
        --soup default-before.safetensors --soup-weight 0.5   # averaged with another blend of the same start
    python scripts/make_builtin_model.py RUN_DIR ... --wise 0.8 --wise-init faceres-deep.safetensors \\
        --ensemble other-run-blend.safetensors --shared 7   # one network: both runs' outputs averaged
    python scripts/make_builtin_model.py fast --remeasure --data data/utk-sq140 \\
        --extra aaf_val=data/aaf:val --frl ../shared/datasets/frl_canada   # the same numbers, measured again
                                                            # (--data-note "...": and a corrected data note;
                                                            # --level: read levelled crops from now on)
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from agegender.extras import script_imports

with script_imports():  # without its extra: one line naming it, no traceback
    import torch

    from agegender.evaluation.compare import Predictions
    from agegender.evaluation.metrics import summarize
    from agegender.evaluation.report import evaluate_model, predict_end_to_end
    from agegender.export.onnx_export import export_onnx
    from agegender.inference.predictor import Predictor
    from agegender.models import read_config, resolve_model_path
    from agegender.models.config import ModelConfig
    from agegender.models.torch_weights import load_model
    from agegender.types import Gender

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "src" / "agegender" / "weights"
UTK_NOTE = "UTKFace (Aligned & Cropped), project split: train for training, val for model selection; test measured once"


def save_half(path: Path, model: torch.nn.Module, cfg: ModelConfig) -> None:
    """Safetensors in float16 (half the size; loads into the float32 network unchanged)."""
    from safetensors.torch import save_file

    from agegender.models.config import METADATA_KEY

    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={METADATA_KEY: cfg.to_json()})


def round_to_half(model: torch.nn.Module) -> None:
    """Round every float weight through float16 in place, so the .safetensors we ship (float16) and the .onnx
    (float16 read through casts) hold the very values that are measured."""
    model.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()})


def _init_recipe(train_args: dict) -> dict:
    """When the run started from another run's weights (--init), that run's recipe too, and so on back
    (provenance): `init_recipe` is the run it started from, `init_recipes` the whole chain when longer. A
    start that is a built-in model or a weights file with no run folder around it ends the chain with the
    recipes its own record carries."""
    chain: list[dict] = []
    while (init := train_args.get("init") or "") and len(chain) < 20:
        args = Path(init).parent / "args.json" if init.endswith(".safetensors") else Path(init) / "args.json"
        if not args.is_file():
            chain += _recorded_recipes(init)
            break
        train_args = json.loads(args.read_text())
        chain.append(train_args)
    if not chain:
        return {}
    return {"init_recipe": chain[0], **({"init_recipes": chain} if len(chain) > 1 else {})}


def _recorded_recipes(init: str) -> list[dict]:
    """The recipes stored in the record of `init` (a built-in name or a weights file made by this script):
    its own, then those of the runs it came from; [] when it has none (e.g. an imported network)."""
    try:
        card = read_config(str(resolve_model_path(init))).card
    except (FileNotFoundError, ValueError):
        return []
    if "recipe" not in card:
        return []
    return [card["recipe"], *(card.get("init_recipes") or ([card["init_recipe"]] if "init_recipe" in card else []))]


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def frl_end_to_end(model: Any, root: Path) -> tuple[np.ndarray, ...]:
    """The FRL portraits (frl_canada/labels.csv: file, age, gender) end to end, the largest face counting:
    (ages in years, P(female), found, true ages, true genders), shape (40,) each. `model`: a weights path or
    an estimator object."""
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    predictor = Predictor(model if hasattr(model, "estimate") else str(model))
    ages, pf, found, _ = predict_end_to_end(predictor, [str(root / r["file"]) for r in rows], False)
    true_age = np.array([float(r["age"]) for r in rows])
    true_gender = np.array([int(Gender.parse(r["gender"])) for r in rows])
    return ages, pf, found, true_age, true_gender


def frl_metrics(model_path: Path | str, root: Path, errors: dict[str, np.ndarray] | None = None,
                mistakes: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """frl_end_to_end's summary. With `errors`, also stores each portrait's |age error| in years (shape (40,),
    NaN: no face) as errors["frl"]; with `mistakes`, its gender mistake (1.0 wrong, 0.0 right, NaN: no face)
    as mistakes["frl"]."""
    ages, pf, found, true_age, true_gender = frl_end_to_end(model_path, root)
    answers = Predictions([], true_age, true_gender.astype(np.float64), np.where(found, ages, np.nan),
                          np.where(found, pf, np.nan))
    if errors is not None:
        errors["frl"] = answers.age_error
    if mistakes is not None:
        mistakes["frl"] = answers.gender_mistake
    return _rounded(summarize(ages, pf, true_age, true_gender, found))


def _val_metrics(history: list[dict[str, Any]], checkpoint: str) -> dict[str, Any]:
    """The validation numbers of the epoch shipped: the best by val age MAE, or the last."""
    row = min(history, key=lambda r: r["val_age_mae"]) if checkpoint == "best" else history[-1]
    keep = {k[4:]: round(v, 4) for k, v in row.items() if k.startswith("val_") and k != "val_loss"}
    return {"epoch": row["epoch"], **keep}


def split_spec(spec: str) -> tuple[str, str, str]:
    """'KEY=DATA:SPLIT' (a command-line set) -> (key, prepared dataset folder, split)."""
    key, rest = spec.split("=", 1)
    data, split = rest.rsplit(":", 1)
    return key, data, split


def measure(model: torch.nn.Module, cfg: ModelConfig, args: argparse.Namespace) -> dict[str, Any]:
    """The card's measured numbers: UTKFace test (prepared crops and end to end), each --extra split end to end
    and FRL, all on the float16 ONNX export, as shipped."""
    card: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.onnx"
        export_onnx(model, cfg, probe, half_weights=True)  # measured as shipped
        for mode, key in (("crops", "test_metrics_crops"), ("end-to-end", "test_metrics")):
            rep = evaluate_model(str(probe), args.data, "test", Path(tmp) / mode, mode=mode, progress=False)
            card[key] = _rounded(rep["overall"])
        for key, data, split in map(split_spec, args.extra):
            rep = evaluate_model(str(probe), data, split, Path(tmp) / key, mode="end-to-end", progress=False)
            card[f"{key}_metrics"] = _rounded(rep["overall"])
        if args.frl:
            card["frl_metrics"] = frl_metrics(probe, Path(args.frl))
    return card


def with_level(cfg: ModelConfig, level: bool, slack: float = 0.0) -> ModelConfig:
    """`cfg` reading levelled square crops (`Preprocessing.level`, tilted heads turned upright; `slack` degrees of
    roll left in place) where `level`; the record is measured and shipped that way. Runs train on upright
    squares, so the flag is set here."""
    if not level:
        return cfg
    return replace(cfg, preprocessing=replace(cfg.preprocessing, level=True, level_slack=slack))


def remeasure(args: argparse.Namespace) -> None:
    """Measure a built-in model again (e.g. after its packages changed: OpenCV's resizing, ONNX Runtime's
    kernels) and rewrite only its card's numbers, and its data note where --data-note is given (to correct
    it); weights, recipe and everything else stay as they are."""
    model, cfg = load_model(WEIGHTS_DIR / f"{args.run}.safetensors")
    cfg = with_level(cfg, args.level, args.level_slack)
    before = {k: cfg.card.get(k) for k in ("test_metrics", "test_metrics_crops")}
    cfg.card = {**cfg.card, **measure(model, cfg, args), **({"data": args.data_note} if args.data_note else {})}
    save_half(WEIGHTS_DIR / f"{args.run}.safetensors", model, cfg)
    export_onnx(model, cfg, WEIGHTS_DIR / f"{args.run}.onnx", half_weights=True)
    print(json.dumps({"before": before, "now": {k: cfg.card[k] for k in before}}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="training run folder (best.safetensors, history.json, args.json); with "
                    "--remeasure, the built-in model's name")
    ap.add_argument("--remeasure", action="store_true",
                    help="measure the built-in model RUN again and rewrite only its card's numbers")
    ap.add_argument("--name", default="default")
    ap.add_argument("--data", required=True, help="prepared UTKFace dataset with a test split, cut as the model cuts")
    ap.add_argument("--extra", action="append", default=[], metavar="KEY=DATA:SPLIT",
                    help="also measure end to end on this prepared dataset's split, as card[KEY_metrics]")
    ap.add_argument("--frl", help="frl_canada folder: also measure end to end on its portraits (card frl_metrics)")
    ap.add_argument("--checkpoint", default="best", choices=["best", "last"],
                    help="the run's best epoch by val (default) or its last")
    ap.add_argument("--wise", type=float, help="interpolate towards --wise-init with this alpha (WiSE-FT)")
    ap.add_argument("--wise-init", help="the model the run started from (its --init)")
    ap.add_argument("--soup", help="average with this weights file (same architecture and input: e.g. an earlier "
                    "built-in from the same start), after --wise")
    ap.add_argument("--soup-weight", type=float, default=0.5, help="with --soup: the other file's share (0..1)")
    ap.add_argument("--ensemble", action="append", default=[], metavar="FILE",
                    help="an output ensemble with this weights file (repeatable), after --wise and --soup")
    ap.add_argument("--shared", type=int, default=0,
                    help="with --ensemble: the lower layers the members share and compute once (the --freeze)")
    ap.add_argument("--level", action="store_true", help="the model reads levelled square crops (tilted heads "
                    "turned upright by their landmarks): set in its record before it is measured")
    ap.add_argument("--level-slack", type=float, default=0.0, metavar="DEGREES",
                    help="with --level: leave this much roll in place (faces rolled less are cut as they stand)")
    ap.add_argument("--summary", default="", help="one-line description for `agegender models`")
    ap.add_argument("--data-note", help="what the model was trained and selected on (default: UTKFace alone); "
                    "with --remeasure, a corrected note replaces the card's")
    ap.add_argument("--licence", default="MIT (weights); trained on UTKFace, whose images are for non-commercial "
                    "research only")
    args = ap.parse_args()
    if args.remeasure:
        remeasure(args)
        return
    run = Path(args.run)
    if args.wise is not None:
        from agegender.training.wise import wise_interpolate

        model, cfg = wise_interpolate(run / f"{args.checkpoint}.safetensors", args.wise_init, args.wise)
    else:
        model, cfg = load_model(run / f"{args.checkpoint}.safetensors")
    if args.soup:
        from agegender.training.wise import soup

        model, cfg = soup(model, cfg, args.soup, args.soup_weight)
    if args.ensemble:
        from agegender.training.wise import ensemble

        model, cfg = ensemble(model, cfg, args.ensemble, args.shared)
    ds_size = int(json.loads((Path(args.data) / "meta.json").read_text())["preprocessing"]["size"])
    if cfg.preprocessing.crop_size == 0 and cfg.preprocessing.size != ds_size and cfg.preprocessing.margin == 0.25:
        # runs from before the record had crop_size: they were trained on ds_size crops resized to size
        cfg.preprocessing = replace(cfg.preprocessing, crop_size=ds_size)
        print(f"record: crop_size set to {ds_size} (the dataset's crop size; the run predates the field)")
    cfg = with_level(cfg, args.level, args.level_slack)
    round_to_half(model)
    history = json.loads((run / "history.json").read_text())
    train_args = json.loads((run / "args.json").read_text())
    card = measure(model, cfg, args)
    cfg.card = {
        "name": args.name,
        "summary": args.summary,
        "data": args.data_note or UTK_NOTE,
        "recipe": train_args,
        **_init_recipe(train_args),
        **{k: cfg.card[k] for k in ("wise_alpha", "wise_init", "soup_weight", "soup_with", "ensemble_with")
           if k in cfg.card},
        "checkpoint": args.checkpoint,
        "val_metrics": _val_metrics(history, args.checkpoint),
        **card,
        "licence": args.licence,
    }
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    save_half(WEIGHTS_DIR / f"{args.name}.safetensors", model, cfg)
    export_onnx(model, cfg, WEIGHTS_DIR / f"{args.name}.onnx", half_weights=True)
    print(json.dumps(cfg.card, indent=2))


if __name__ == "__main__":
    main()
