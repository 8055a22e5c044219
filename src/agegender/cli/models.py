"""`agegender export` (ONNX) and `agegender models` (list with card summaries)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model to ONNX (decoding inside, preprocessing in metadata)")
    p.add_argument("model", help="weights file (.safetensors) or run folder")
    p.add_argument("-o", "--out", required=True, help="output .onnx path")
    p.set_defaults(func=cmd_export)


def cmd_export(a: argparse.Namespace) -> int:
    from ..export.onnx_export import export_weights_file
    from ..models.estimator import resolve_model_path

    src = resolve_model_path(a.model)
    if src.suffix != ".safetensors":
        print(f"error: {src} is not a .safetensors model", file=sys.stderr)
        return 2
    path = export_weights_file(src, a.out)
    print(f"wrote {path}")
    return 0


def add_models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models at hand with their card summary")
    p.add_argument("paths", nargs="*", help="extra weights files or run folders to describe")
    p.set_defaults(func=cmd_models)


def cmd_models(a: argparse.Namespace) -> int:
    from ..models import builtin_models, read_config, resolve_model_path

    entries = [(name, path) for name, path in builtin_models().items()]
    entries += [(p, resolve_model_path(p)) for p in a.paths]
    for name, path in entries:
        cfg = read_config(str(path))
        prep = cfg.preprocessing
        metrics = cfg.card.get("test_metrics") or cfg.card.get("val_metrics") or {}
        shown = ", ".join(f"{k} {v}" for k, v in metrics.items() if k in ("age_mae", "gender_acc", "cs5"))
        print(f"{name}: {path}")
        print(f"  arch {cfg.arch} {cfg.arch_kwargs or ''}; input {prep.size}px {prep.color}, crop {prep.crop} "
              f"margin {prep.margin}; ages {prep.age_min}..{prep.age_max}")
        if cfg.card.get("summary"):
            print(f"  {cfg.card['summary']}")
        if shown:
            print(f"  {shown}")
    return 0
