"""A .safetensors model -> ONNX with no more than the model needs.

The Keras-layout WideResNet ("wrn", e.g. from `import-keras`) is written from its NumPy weights by
`wrn_graph` (numpy + onnx: the 'export' extra); every other architecture goes through
`onnx_export.export_onnx` on PyTorch (torch + onnx: the 'train' extra).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..extras import require
from ..models.config import read_config


def weights_to_onnx(weights: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Export the .safetensors model `weights` to `out` (.onnx, atomically); returns the path."""
    arch = read_config(str(weights)).arch
    if arch == "wrn":
        from ..models.numpy_weights import load_arrays
        from .wrn_graph import save_wrn_onnx

        state, cfg = load_arrays(weights)
        return save_wrn_onnx(state, cfg, out)
    require("torch", f"exporting a {arch!r} model")
    from .onnx_export import export_weights_file

    return export_weights_file(weights, out)
