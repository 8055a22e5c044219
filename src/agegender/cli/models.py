"""`agegender export` (ONNX) and `agegender models` (list with card summaries)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..extras import require
from .args import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model to ONNX (decoding inside, preprocessing in metadata)")
    p.add_argument("model", help="built-in name (its ONNX file is copied), weights file (.safetensors) or run folder")
    p.add_argument("-o", "--out", required=True, help="output .onnx path")
    p.add_argument("--int8", action="store_true",
                   help="quantize to int8 (static; needs --calibration); MODEL may then also be an .onnx model")
    p.add_argument("--calibration", help="--int8: prepared dataset whose crops calibrate the activation ranges")
    p.add_argument("--calibration-split", default="train", help="--int8: split to draw crops from (train)")
    p.add_argument("--calibration-size", type=positive_int, default=512, help="--int8: number of crops (512)")
    p.add_argument("--full-range", action="store_true",
                   help="--int8: weights on all 8 bits, for CPUs with VNNI (or ARM) only; the default 7 bits keep "
                        "x86 CPUs without VNNI (AVX2 only) from saturating")
    p.set_defaults(func=cmd_export)


def cmd_export(a: argparse.Namespace) -> int:
    from ..models.estimator import builtin_models, resolve_model_path

    src = resolve_model_path(a.model)
    if a.int8:
        return _export_int8(a, src)
    if src.suffix == ".onnx" and a.model in builtin_models():
        return _copy_builtin_onnx(a.model, src, Path(a.out))
    if src.suffix != ".safetensors":
        print(f"agegender export: {src} is already an ONNX model: use it as it is (--model {a.model}), or add "
              "--int8 --calibration DATA for an int8 copy", file=sys.stderr)
        return 2
    from ..export.convert import weights_to_onnx

    path = weights_to_onnx(src, a.out)
    print(f"wrote {path}")
    return 0


def _copy_builtin_onnx(name: str, src: Path, out: Path) -> int:
    """A built-in model ships as ONNX already (the export of its .safetensors): copy it, torch not needed."""
    import shutil

    if out.suffix != ".onnx":
        raise ValueError(f"{out}: output must end in .onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(out)
    print(f"wrote {out}: the built-in {name!r} model's own ONNX file ({src}), copied")
    return 0


def _export_int8(a: argparse.Namespace, src: Path) -> int:
    import tempfile

    from ..export.quantize import calibration_crops, quantize_onnx
    from ..models import read_config

    if not a.calibration:
        print("agegender export: --int8 needs --calibration DATA (a prepared dataset)", file=sys.stderr)
        return 2
    if src.suffix not in (".onnx", ".safetensors"):
        print(f"agegender export: {src} is neither an .onnx nor a .safetensors model", file=sys.stderr)
        return 2
    require("onnx", "--int8")
    prep = read_config(str(src)).preprocessing
    crops = calibration_crops(a.calibration, a.calibration_split, a.calibration_size, prep)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_src = src
        if src.suffix == ".safetensors":
            from ..export.convert import weights_to_onnx

            onnx_src = weights_to_onnx(src, Path(tmp) / "float.onnx")
        path = quantize_onnx(onnx_src, a.out, crops, full_range=a.full_range)
    print(f"wrote {path} (int8, calibrated on {len(crops)} crops of {a.calibration} {a.calibration_split})")
    return 0


def add_models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models at hand with their card summary")
    p.add_argument("paths", nargs="*", help="extra weights files or run folders to describe")
    p.set_defaults(func=cmd_models)


#: card keys of measured sets, in the order `models` shows them, with their names there
MEASURED_SETS = {"test_metrics": "UTKFace test, end to end", "test_metrics_crops": "UTKFace test, crops",
                 "aaf_val_metrics": "All-Age-Faces val, end to end", "frl_metrics": "FRL Canada, end to end",
                 "val_metrics": "validation (the run's own)"}


def cmd_models(a: argparse.Namespace) -> int:
    from ..models import builtin_models, read_config, resolve_model_path

    entries = dict(builtin_models())
    for p in a.paths:
        path = resolve_model_path(p)
        if path not in entries.values():
            entries[p] = path
    for name, path in entries.items():
        cfg = read_config(str(path))
        prep = cfg.preprocessing
        print(f"{name}: {path}")
        cut = f" (cut at {prep.crop_size}px, then resized)" if prep.crop_size else ""
        slack = f" beyond {prep.level_slack:g} degrees" if prep.level_slack else ""
        level = f" levelled (turned by the face's roll{slack})" if prep.level else ""
        print(f"  arch {_arch(cfg.arch, cfg.arch_kwargs)}; input {prep.size}px {prep.color}{cut}, "
              f"crop {prep.crop}{level} margin {prep.margin}; ages {prep.age_min}..{prep.age_max}")
        for key in ("summary", "data", "licence"):
            if cfg.card.get(key):
                print(f"  {'' if key == 'summary' else key + ': '}{cfg.card[key]}")
        for line in _measured(cfg.card):
            print(f"  {line}")
        if cfg.age_range:
            print(f"  {_range_line(cfg.age_range)}")
    return 0


def _range_line(cal: dict) -> str:
    """The age-range calibration in a line: its level and temperature and where the ranges held the age."""
    held = ", ".join(f"{k} {100 * v:.1f}%" for k, v in (cal.get("coverage") or {}).items())
    return (f"age range: central {100 * cal['level']:g}% of the distribution tempered by {cal['temperature']:g}"
            + (f"; held the true age: {held}" if held else ""))


def _measured(card: dict) -> list[str]:
    """One line per measured set in the card: age MAE (years), CS@5, gender accuracy, mean signed error."""
    lines = []
    for key, label in MEASURED_SETS.items():
        m = card.get(key) or {}
        shown = ", ".join(f"{k} {m[k]}" for k in ("age_mae", "cs5", "gender_acc", "age_bias") if k in m)
        if shown and (key != "val_metrics" or "test_metrics" not in card):
            lines.append(f"{label}: {shown}")
    return lines


def _arch(arch: str, kwargs: dict) -> str:
    """The architecture in a line: its name and options; an ensemble as its members' base and what they share."""
    if arch == "ensemble":
        return (f"ensemble of {kwargs.get('members')} x {kwargs.get('base')} {kwargs.get('base_kwargs') or ''} "
                f"(first {kwargs.get('shared')} layers shared, probabilities averaged)")
    return f"{arch} {kwargs or ''}"
