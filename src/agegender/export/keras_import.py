"""Import the original Keras project's WideResNet weights (.hdf5 from its train.py) into our "wrn" model.

Read with h5py only (no TensorFlow). The file's layers are matched to ours in creation order (the number
Keras appends to each layer name): in each residual block Keras creates BN, conv, BN, conv, then the 1x1
shortcut conv, the same order as `WideBasic`'s modules. Depth, width, input size, pooling size and BN
epsilon come from the file (its model_config when present, else the weight shapes).

Tensor layouts: Keras conv kernel (kh, kw, cin, cout) -> torch (cout, cin, kh, kw); Dense kernel
(F, out) -> torch (out, F) with F flattened in NHWC order, as `WideResNet` flattens.

`read_keras` needs only h5py and numpy: it gives the weights under our torch state_dict names, which
`save_keras_import` writes as .safetensors (numpy) or as ONNX (`wrn_graph`, numpy + onnx) without torch;
`import_keras` loads them into the torch network.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..extras import require
from ..fileio import sha256_of
from ..models.config import ModelConfig
from ..types import Preprocessing
from .wrn_graph import check_wrn_state, wrn_layout

if TYPE_CHECKING:
    from ..models.nets import AgeGenderNet

#: the original demo's preprocessing: dlib HOG box + 0.4 margin, BGR 0..255 unnormalised
KERAS_PREPROCESSING = dict(crop="box", margin=0.4, color="BGR", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                           age_min=0, detector="dlib-hog")


def _open_h5(path: str):  # -> h5py.File
    h5py = require("h5py", "importing Keras weights")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not an HDF5 file ({exc})") from None


def _text(v: Any) -> str:
    return v.decode("utf8") if isinstance(v, bytes) else str(v)


def _creation_index(name: str) -> int:
    """Keras' per-type counter: 'conv2d' -> 0, 'conv2d_7' -> 7 (Keras 3 names start without a suffix)."""
    m = re.search(r"_(\d+)$", name)
    return int(m.group(1)) if m else 0


def read_keras_layers(f) -> dict[str, dict[str, np.ndarray]]:  # f: h5py.File
    """{layer name: {weight name ('kernel', 'gamma', ...): array}} for layers that have weights.

    Works for full models (weights under 'model_weights') and save_weights_only files (at the root).
    """
    group = f["model_weights"] if "model_weights" in f else f
    if "layer_names" not in group.attrs:
        raise ValueError("no Keras 'layer_names' record: not a Keras weights file")
    layers: dict[str, dict[str, np.ndarray]] = {}
    for lname in (_text(n) for n in group.attrs["layer_names"]):
        g = group[lname]
        names = [_text(n) for n in g.attrs.get("weight_names", [])]
        if names:
            layers[lname] = {n.rsplit("/", 1)[-1].split(":")[0]: np.asarray(g[n], np.float32) for n in names}
    return layers


def _model_config(f) -> dict[str, Any]:  # f: h5py.File
    """{layer name: (class_name, config)} from the file's model_config, or {} for weights-only files."""
    raw = f.attrs.get("model_config")
    if raw is None:
        return {}
    cfg = json.loads(_text(raw))
    return {layer["config"].get("name", layer.get("name")): (layer["class_name"], layer["config"])
            for layer in cfg.get("config", {}).get("layers", [])}


def _input_size(config: dict[str, Any], feat: int, channels: int) -> int:
    for cls, c in config.values():
        shape = c.get("batch_input_shape") or c.get("batch_shape")
        if cls == "InputLayer" and shape:
            if shape[1] != shape[2] or shape[3] != 3:
                raise ValueError(f"expected a square (S, S, 3) channels-last input, got {shape[1:]}")
            return int(shape[1])
    side = int(round((feat / channels) ** 0.5))
    if side * side * channels != feat:
        raise ValueError(f"dense input size {feat} is not side^2 x {channels}")
    return side * 4


def _check_layer_options(config: dict[str, Any]) -> tuple[int, float]:
    """Pool size and BN epsilon from the model_config (defaults 8 and 1e-3); rejects what we cannot mirror."""
    pool, eps = 8, 1e-3
    for cls, c in config.values():
        if cls == "AveragePooling2D":
            p = c.get("pool_size", [8, 8])
            if p[0] != p[1] or tuple(c.get("strides") or (1, 1)) != (1, 1) or c.get("padding") != "same":
                raise ValueError(f"unsupported pooling {c}")
            pool = int(p[0])
        elif cls == "BatchNormalization":
            eps = float(c.get("epsilon", eps))
            if eps != 1e-3:
                raise ValueError(f"BatchNormalization epsilon {eps} differs from the 1e-3 our WideResNet uses")
        elif cls == "Conv2D" and (c.get("padding") != "same" or c.get("use_bias")):
            raise ValueError(f"{c.get('name')}: expected padding='same' without bias")
        elif cls == "Dense" and c.get("use_bias"):
            raise ValueError(f"{c.get('name')}: expected a Dense layer without bias")
    return pool, eps


def _heads(layers: dict[str, dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(gender kernel (F, 2), age kernel (F, K)): by name (pred_gender/pred_age) or by output size."""
    dense = {n: w["kernel"] for n, w in layers.items() if "kernel" in w and w["kernel"].ndim == 2}
    if "pred_gender" in dense and "pred_age" in dense:
        return dense["pred_gender"], dense["pred_age"]
    two = [k for k in dense.values() if k.shape[1] == 2]
    rest = [k for k in dense.values() if k.shape[1] != 2]
    if len(dense) != 2 or len(two) != 1:
        raise ValueError(f"expected two Dense heads (2 gender outputs, one per age), found {len(dense)} dense layers")
    return two[0], rest[0]


def import_keras(h5_path: str | os.PathLike[str]) -> tuple[AgeGenderNet, ModelConfig]:
    """Rebuild a Keras age-gender WideResNet (.hdf5) as our "wrn" AgeGenderNet (eval mode, CPU; torch).

    Returns the network (input (N, 3, S, S) BGR 0..255) and its ModelConfig with the original
    preprocessing (box crop, margin 0.4, BGR, no normalisation) and gender output 0 = female.
    Raises ValueError naming the file when it is not such a network.
    """
    import torch

    from ..models.torch_weights import build_from_config

    state, cfg = read_keras(h5_path)
    net = build_from_config(cfg)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    net.eval()
    return net, cfg


def save_keras_import(h5_path: str | os.PathLike[str], out: str | os.PathLike[str]) -> ModelConfig:
    """Import a Keras .hdf5 straight into `out`: .safetensors (numpy) or .onnx (onnx). No torch needed."""
    out = Path(out)
    if out.suffix not in (".safetensors", ".onnx"):
        raise ValueError(f"{out}: output must end in .safetensors or .onnx")
    state, cfg = read_keras(h5_path)
    if out.suffix == ".onnx":
        from .wrn_graph import save_wrn_onnx

        save_wrn_onnx(state, cfg, out)
    else:
        from ..models.numpy_weights import save_arrays

        save_arrays(out, state, cfg)
    return cfg


def read_keras(h5_path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], ModelConfig]:
    """The weights of a Keras age-gender WideResNet (.hdf5) under our "wrn" state_dict names (numpy,
    torch layouts), and its ModelConfig. Needs h5py only; ValueError naming the file when it is not
    such a network."""
    path = str(Path(h5_path))
    with _open_h5(path) as f:
        try:
            layers = read_keras_layers(f)
            config = _model_config(f)
        except (KeyError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read Keras layers ({exc})") from None
        keras_version = _text(f.attrs.get("keras_version", f.get("model_weights", f).attrs.get("keras_version", "?")))
    try:
        return _rebuild(path, layers, config, keras_version)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: not a Keras age-gender WideResNet: {str(exc).splitlines()[0]}") from None


def _rebuild(path: str, layers: dict[str, dict[str, np.ndarray]], config: dict[str, Any],
             keras_version: str) -> tuple[dict[str, np.ndarray], ModelConfig]:
    convs = [layers[n]["kernel"] for n in sorted(layers, key=_creation_index) if layers[n].get("kernel") is not None
             and layers[n]["kernel"].ndim == 4]
    bns = [layers[n] for n in sorted(layers, key=_creation_index) if "moving_mean" in layers[n]]
    gender_k, age_k = _heads(layers)
    n3x3 = sum(1 for k in convs if k.shape[0] == 3)
    if n3x3 < 7 or (n3x3 - 1) % 6 != 0:
        raise ValueError(f"{n3x3} 3x3 convolutions do not make a WideResNet (6n+1 expected)")
    depth = n3x3 + 3  # stem + 6n 3x3 convs in the blocks; depth = 6n + 4
    width = convs[1].shape[3] // 16
    pool, _ = _check_layer_options(config)
    size = _input_size(config, gender_k.shape[0], 64 * width)
    conv_names, bn_names = wrn_layout(depth, width)
    if len(conv_names) != len(convs) or len(bn_names) != len(bns):
        raise ValueError(f"{len(convs)} convolutions and {len(bns)} BN layers, expected {len(conv_names)} and "
                         f"{len(bn_names)} for WRN-{depth}-{width}")
    state: dict[str, np.ndarray] = {}
    for (key, _), k in zip(conv_names, convs):
        state[key] = np.ascontiguousarray(k.transpose(3, 2, 0, 1))
    for (prefix, _), w in zip(bn_names, bns):
        c = w["moving_mean"].shape[0]
        state[f"{prefix}.weight"] = w.get("gamma", np.ones(c, np.float32))
        state[f"{prefix}.bias"] = w.get("beta", np.zeros(c, np.float32))
        state[f"{prefix}.running_mean"] = w["moving_mean"]
        state[f"{prefix}.running_var"] = w["moving_variance"]
        state[f"{prefix}.num_batches_tracked"] = np.zeros((), np.int64)
    state["gender_head.weight"] = np.ascontiguousarray(gender_k.T)
    state["age_head.weight"] = np.ascontiguousarray(age_k.T)
    check_wrn_state(state, depth, width, size, age_k.shape[1])

    prep = Preprocessing(size=size, age_max=age_k.shape[1] - 1, **KERAS_PREPROCESSING)  # type: ignore[arg-type]
    card = {
        "summary": f"WRN-{depth}-{width} from the original Keras age-gender-estimation project "
                   f"({Path(path).name}); input {size}px BGR 0..255, dlib HOG box + 0.4 margin",
        "source": Path(path).name,
        "source_sha256": sha256_of(path),
        "keras_version": keras_version,
        "training_data": "as the original project's train.py was run (IMDB-WIKI in its README); "
                         "check that dataset's licence before commercial use",
    }
    cfg = ModelConfig(arch="wrn", preprocessing=prep, gender_female_index=0, card=card,
                      arch_kwargs={"depth": depth, "width": width, "input_size": size, "pool": pool})
    return state, cfg
