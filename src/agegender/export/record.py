"""Rewrite the agegender record of a weights file in place, leaving its weights as they are.

For records that change after training, such as the age-range calibration (`ModelConfig.age_range`),
fitted on validation faces once a model is built. `.onnx` files need the onnx package (the `export` extra);
`.safetensors` files are rewritten with NumPy (no torch). Each file is written under a temporary name and
renamed, so a failure leaves the old file.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..models.config import METADATA_KEY, ModelConfig


def write_record(path: str | os.PathLike[str], cfg: ModelConfig) -> None:
    """Store `cfg` as the record of the weights file `path` (.onnx or .safetensors); the tensors are kept."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    if p.suffix == ".onnx":
        from ..extras import require

        onnx = require("onnx", "rewriting an ONNX model's record", extra="export")
        model = onnx.load(str(p))
        kept = [m for m in model.metadata_props if m.key != METADATA_KEY]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
        meta = model.metadata_props.add()
        meta.key, meta.value = METADATA_KEY, cfg.to_json()
        onnx.save(model, str(tmp))
    elif p.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.numpy import save_file

        with safe_open(str(p), framework="numpy") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            meta = dict(f.metadata() or {})
        save_file(tensors, str(tmp), metadata=meta | {METADATA_KEY: cfg.to_json()})
    else:
        raise ValueError(f"{p}: not a weights file (.onnx or .safetensors)")
    os.chmod(tmp, p.stat().st_mode)  # the old file's permissions, not the writer's
    os.replace(tmp, p)
