"""`agegender import-tfjs`: a TF.js face network (graph model or weights manifest) -> our .safetensors or .onnx."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from ..extras import require
from .args import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-tfjs",
                       help="import a TF.js face network: Human's faceres-deep or face-api's age/gender net")
    p.add_argument("model",
                   help="TF.js model.json (graph model) or *-weights_manifest.json, with its .bin files beside it")
    p.add_argument("-o", "--out", required=True, help="output model: .safetensors (NumPy only) or .onnx (needs torch)")
    p.add_argument("--size", type=positive_int,
                   help="input side in pixels for a fully convolutional network (default: its own)")
    p.set_defaults(func=cmd_import_tfjs, extras={"torch": "train", "onnx": "train"})


def cmd_import_tfjs(a: argparse.Namespace) -> int:
    out = Path(a.out)
    if out.suffix not in (".safetensors", ".onnx"):
        raise ValueError(f"{out}: output must end in .safetensors or .onnx")
    if out.suffix == ".onnx":  # checked before any work is done
        require("torch", "import-tfjs -o X.onnx (-o X.safetensors needs only NumPy)")
        require("onnx", "import-tfjs -o X.onnx")
    from ..export.tfjs_import import import_tfjs

    state, cfg = import_tfjs(a.model, a.size)
    if out.suffix == ".onnx":
        from ..export.onnx_export import export_state_onnx

        with warnings.catch_warnings():  # the torch exporter's tracing notes are not for users
            warnings.simplefilter("ignore")
            export_state_onnx(state, cfg, out)
    else:
        from ..models.numpy_weights import save_arrays

        save_arrays(out, state, cfg)
    prep = cfg.preprocessing
    print(f"wrote {out}: {cfg.card.get('summary', cfg.arch)}")
    print(f"  arch {cfg.arch}; input {prep.size}px {prep.color}, crop {prep.crop} margin {prep.margin}; "
          f"gender output {cfg.gender_female_index} = female; ages {prep.age_min}..{prep.age_max}")
    print(f"  licence: {cfg.card.get('licence', 'unknown')}")
    if cfg.card.get("not_for_training"):
        print(f"  note: {cfg.card['not_for_training']}")
    return 0
