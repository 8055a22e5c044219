"""Export a trained model to ONNX with its decoding inside the graph and its record in the metadata.

Graph: input (N, 3, S, S) float32 (normalised per the preprocessing record) -> gender_probs (N, 2),
age_probs (N, K), age (N,) expected years. Metadata key "agegender": the ModelConfig JSON.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..models.config import METADATA_KEY, ModelConfig
from ..models.nets import AgeGenderNet, DecodedNet
from ..models.onnx_graph import constant_folded, fold_pads_into_convs, store_weights_half
from ..models.torch_weights import load_model


def export_onnx(model: AgeGenderNet, cfg: ModelConfig, out: str | os.PathLike[str], opset: int = 17,
                half_weights: bool = False) -> Path:
    """Write `model` to `out` as ONNX (dynamic batch), atomically; returns the path. half_weights: store the
    large weights that float16 holds exactly as float16 (up to half the file; computed in float32 on the same
    values; see `store_weights_half`)."""
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = cfg.preprocessing.size
    wrapped = DecodedNet(model.float().eval().cpu(), cfg.preprocessing.age_min).eval()
    dummy = torch.zeros(2, 3, size, size)
    tmp = out.with_name(f".{out.name}.tmp")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing notes (e.g. TF 'SAME' pads fixed per input size) are expected
        torch.onnx.export(
            wrapped, (dummy,), str(tmp), input_names=["input"], output_names=["gender_probs", "age_probs", "age"],
            dynamic_axes={"input": {0: "batch"}, "gender_probs": {0: "batch"}, "age_probs": {0: "batch"},
                          "age": {0: "batch"}},
            opset_version=opset, dynamo=False,
        )
    proto = constant_folded(str(tmp))
    fold_pads_into_convs(proto)
    if half_weights:
        store_weights_half(proto)
    meta = proto.metadata_props.add()
    meta.key, meta.value = METADATA_KEY, cfg.to_json()
    proto.producer_name = "agegender"
    onnx.save(proto, str(tmp))
    os.replace(tmp, out)
    return out


def export_state_onnx(state: dict[str, np.ndarray], cfg: ModelConfig, out: str | os.PathLike[str]) -> Path:
    """Build the network `cfg` describes, load a NumPy state dict into it (strict) and export it to ONNX."""
    from ..models.torch_weights import build_from_config

    net = build_from_config(cfg)
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, strict=True)
    return export_onnx(net.eval(), cfg, out)


def export_weights_file(weights: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Load a .safetensors model and export it to ONNX."""
    model, cfg = load_model(weights)
    return export_onnx(model, cfg, out)


def parity_check(
    weights: str | os.PathLike[str], onnx_path: str | os.PathLike[str], crops_rgb: np.ndarray
) -> dict[str, float]:
    """Max absolute differences between the torch and ONNX estimators on the same (N, S, S, 3) crops."""
    from ..models.estimator import OnnxEstimator, TorchEstimator

    t = TorchEstimator(weights).estimate(crops_rgb)
    o = OnnxEstimator(onnx_path).estimate(crops_rgb)
    return {
        "age_years": float(np.abs(t.ages - o.ages).max()) if len(crops_rgb) else 0.0,
        "p_female": float(np.abs(t.p_female - o.p_female).max()) if len(crops_rgb) else 0.0,
        "age_probs": float(np.abs(t.age_probs - o.age_probs).max()) if len(crops_rgb) else 0.0,
    }
