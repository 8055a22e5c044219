"""`agegender import-keras`: the original Keras project's .hdf5 weights -> our .safetensors (or .onnx)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-keras", help="import a WideResNet .hdf5 from the original Keras project (needs h5py)")
    p.add_argument("weights", help="Keras weights file, e.g. weights.28-3.73.hdf5")
    p.add_argument("-o", "--out", required=True,
                   help="output model: .safetensors (for torch and `export`) or .onnx (onnxruntime); no torch needed")
    p.set_defaults(func=cmd_import_keras, extras={"h5py": "keras", "onnx": "keras"})


def cmd_import_keras(a: argparse.Namespace) -> int:
    from ..export.keras_import import save_keras_import

    cfg = save_keras_import(a.weights, a.out)
    prep = cfg.preprocessing
    print(f"wrote {a.out}: {cfg.card['summary']}")
    print(f"  preprocessing: {prep.size}px {prep.color} 0..255, crop {prep.crop} margin {prep.margin}, "
          f"gender output {cfg.gender_female_index} = female, age = expectation over {prep.age_min}..{prep.age_max}")
    return 0
