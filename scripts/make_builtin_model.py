"""Turn a training run into a built-in model: src/agegender/weights/NAME.{safetensors,onnx,md}.

Measures the model on the test split of a prepared dataset with `evaluate` (prepared crops and end to
end from the source images) and writes those numbers into the model card inside both weights files.

    python scripts/make_builtin_model.py RUN_DIR --name default --data data/utk --summary "one line"
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from agegender.evaluation.report import evaluate_model
from agegender.export.onnx_export import export_onnx
from agegender.models.config import ModelConfig
from agegender.models.torch_weights import load_model, save_model

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "src" / "agegender" / "weights"


def save_half(path: Path, model: torch.nn.Module, cfg: ModelConfig) -> None:
    """Safetensors in float16 (half the size; loads into the float32 network unchanged)."""
    from safetensors.torch import save_file

    from agegender.models.config import METADATA_KEY

    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={METADATA_KEY: cfg.to_json()})


def _init_recipe(train_args: dict) -> dict:
    """When the run started from another run's weights (--init), that run's recipe too (provenance)."""
    init = train_args.get("init") or ""
    args = Path(init).parent / "args.json" if init.endswith(".safetensors") else Path(init) / "args.json"
    if not init or not args.is_file():
        return {}
    return {"init_recipe": json.loads(args.read_text())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", help="training run folder (best.safetensors, history.json, args.json)")
    ap.add_argument("--name", default="default")
    ap.add_argument("--data", required=True, help="prepared dataset with a test split")
    ap.add_argument("--summary", default="", help="one-line description for `agegender models`")
    ap.add_argument("--licence", default="MIT (weights); trained on UTKFace, whose images are for non-commercial "
                    "research only")
    args = ap.parse_args()
    run = Path(args.run)
    model, cfg = load_model(run / "best.safetensors")
    ds_size = int(json.loads((Path(args.data) / "meta.json").read_text())["preprocessing"]["size"])
    if cfg.preprocessing.crop_size == 0 and cfg.preprocessing.size != ds_size:
        # runs from before the record had crop_size: they were trained on ds_size crops resized to size
        cfg.preprocessing = replace(cfg.preprocessing, crop_size=ds_size)
        print(f"record: crop_size set to {ds_size} (the dataset's crop size; the run predates the field)")
    # round through float16 first, so the .safetensors we ship and the .onnx hold the very same values
    model.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()})
    history = json.loads((run / "history.json").read_text())
    train_args = json.loads((run / "args.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.safetensors"
        save_model(probe, model, cfg)
        results = {}
        for mode in ("crops", "end-to-end"):
            rep = evaluate_model(str(probe), args.data, "test", Path(tmp) / mode, mode=mode, progress=False)
            results[mode] = {k: round(v, 4) if isinstance(v, float) else v for k, v in rep["overall"].items()}
    best = min(history, key=lambda r: r["val_age_mae"])
    cfg.card = {
        "name": args.name,
        "summary": args.summary,
        "data": "UTKFace (Aligned & Cropped), project split: train for training, val for model selection; "
                "test measured once",
        "recipe": train_args,
        **_init_recipe(train_args),
        "val_metrics": {"epoch": best["epoch"], "age_mae": round(best["val_age_mae"], 4),
                        "gender_acc": round(best["val_gender_acc"], 4), "cs5": round(best["val_cs5"], 4)},
        "test_metrics": results["end-to-end"],
        "test_metrics_crops": results["crops"],
        "licence": args.licence,
    }
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    save_half(WEIGHTS_DIR / f"{args.name}.safetensors", model, cfg)
    export_onnx(model, cfg, WEIGHTS_DIR / f"{args.name}.onnx")
    print(json.dumps(cfg.card, indent=2))


if __name__ == "__main__":
    main()
