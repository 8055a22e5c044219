"""`agegender import-keras`: the original Keras project's .hdf5 weights -> our .safetensors (or .onnx)."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-keras", help="import a WideResNet .hdf5 from the original Keras project (needs h5py)")
    p.add_argument("weights", help="Keras weights file, e.g. weights.28-3.73.hdf5")
    p.add_argument("-o", "--out", required=True, help="output model: .safetensors (torch) or .onnx (onnxruntime)")
    p.set_defaults(func=cmd_import_keras)


def cmd_import_keras(a: argparse.Namespace) -> int:
    out = Path(a.out)
    if out.suffix not in (".safetensors", ".onnx"):
        raise ValueError(f"{out}: output must end in .safetensors or .onnx")
    from ..export.keras_import import import_keras
    from ..export.onnx_export import export_onnx
    from ..models.torch_weights import save_model

    net, cfg = import_keras(a.weights)
    if out.suffix == ".onnx":
        with warnings.catch_warnings():  # the torch exporter's tracing notes are not for users
            warnings.simplefilter("ignore")
            export_onnx(net, cfg, out)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_model(out, net, cfg)
    prep = cfg.preprocessing
    print(f"wrote {out}: {cfg.card['summary']}")
    print(f"  preprocessing: {prep.size}px {prep.color} 0..255, crop {prep.crop} margin {prep.margin}, "
          f"gender output {cfg.gender_female_index} = female, age = expectation over {prep.age_min}..{prep.age_max}")
    return 0
