"""Import the original Keras project's WideResNet weights (.hdf5 from its train.py) into our "wrn" model.

Read with h5py only (no TensorFlow). The file's layers are matched to ours in creation order (the number
Keras appends to each layer name): in each residual block Keras creates BN, conv, BN, conv, then the 1x1
shortcut conv, the same order as `WideBasic`'s modules. Depth, width, input size, pooling size and BN
epsilon come from the file (its model_config when present, else the weight shapes).

Tensor layouts: Keras conv kernel (kh, kw, cin, cout) -> torch (cout, cin, kh, kw); Dense kernel
(F, out) -> torch (out, F) with F flattened in NHWC order, as `WideResNet` flattens.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileio import sha256_of
from ..models.config import ModelConfig
from ..models.nets import AgeGenderNet, SameConv, build_model
from ..types import Preprocessing

#: the original demo's preprocessing: dlib HOG box + 0.4 margin, BGR 0..255 unnormalised
KERAS_PREPROCESSING = dict(crop="box", margin=0.4, color="BGR", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                           age_min=0, detector="dlib-hog")


def _open_h5(path: str):  # -> h5py.File
    try:
        import h5py
    except ImportError:
        raise RuntimeError("importing Keras weights needs h5py: pip install 'agegender[keras]'") from None
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
    """Rebuild a Keras age-gender WideResNet (.hdf5) as our "wrn" AgeGenderNet (eval mode, CPU).

    Returns the network (input (N, 3, S, S) BGR 0..255) and its ModelConfig with the original
    preprocessing (box crop, margin 0.4, BGR, no normalisation) and gender output 0 = female.
    Raises ValueError naming the file when it is not such a network.
    """
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
             keras_version: str) -> tuple[AgeGenderNet, ModelConfig]:
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
    net = build_model("wrn", num_ages=age_k.shape[1], depth=depth, width=width, input_size=size, pool=pool)

    torch_convs = [m for m in net.modules() if isinstance(m, SameConv)]
    torch_bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if len(torch_convs) != len(convs) or len(torch_bns) != len(bns):
        raise ValueError(f"{len(convs)} convolutions and {len(bns)} BN layers, expected {len(torch_convs)} and "
                         f"{len(torch_bns)} for WRN-{depth}-{width}")
    state: dict[str, torch.Tensor] = {}
    names = {m: n for n, m in net.named_modules()}
    for m, k in zip(torch_convs, convs):
        state[f"{names[m]}.weight"] = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))
    for m, w in zip(torch_bns, bns):
        c = w["moving_mean"].shape[0]
        prefix = names[m]
        state[f"{prefix}.weight"] = torch.from_numpy(w.get("gamma", np.ones(c, np.float32)))
        state[f"{prefix}.bias"] = torch.from_numpy(w.get("beta", np.zeros(c, np.float32)))
        state[f"{prefix}.running_mean"] = torch.from_numpy(w["moving_mean"])
        state[f"{prefix}.running_var"] = torch.from_numpy(w["moving_variance"])
        state[f"{prefix}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    state["gender_head.weight"] = torch.from_numpy(np.ascontiguousarray(gender_k.T))
    state["age_head.weight"] = torch.from_numpy(np.ascontiguousarray(age_k.T))
    net.load_state_dict(state, strict=True)
    net.eval()

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
    return net, cfg
