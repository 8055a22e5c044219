"""The original Keras project's WideResNet ("wrn") as an ONNX graph written from NumPy weights: no torch.

The same network as `models.nets` builds for arch "wrn" and the same graph interface as
`onnx_export.export_onnx` writes: input (N, 3, S, S) float32 -> gender_probs (N, 2), age_probs (N, K),
age (N,) expected years; the ModelConfig JSON under the "agegender" metadata key. Keras' 'same'
padding becomes each Conv's explicit (asymmetric: the extra pixel right/bottom) pads, its 'same' average
pooling an AveragePool with count_include_pad=0, the NHWC flatten a Transpose before Flatten. Needs only
numpy and onnx (the 'keras' and 'export' extras).

Weights are keyed by the torch state_dict names of `models.nets` (see `wrn_layout`), so one dict serves
the .safetensors file (torch) and this graph; tests check the layout against the torch module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..extras import require
from ..models.config import METADATA_KEY, ModelConfig

OPSET = 17
IR_VERSION = 8  # readable by every onnxruntime this package supports (>= 1.17)
BN_EPS = 1e-3
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class WrnBlock:
    """One _wide_basic block: cin -> cout channels at `stride`; `project`: a 1x1 shortcut conv."""

    prefix: str
    cin: int
    cout: int
    stride: int

    @property
    def project(self) -> bool:
        return self.cin != self.cout


def wrn_blocks(depth: int, width: int) -> list[WrnBlock]:
    """The residual blocks of WRN-depth-width in order (three groups of (depth - 4) / 6)."""
    if (depth - 4) % 6 != 0 or depth < 10:
        raise ValueError(f"WideResNet depth must be 6n+4 (n >= 1), got {depth}")
    n = (depth - 4) // 6
    blocks, cin = [], 16
    for cout, stride in ((16 * width, 1), (32 * width, 2), (64 * width, 2)):
        for j in range(n):
            blocks.append(WrnBlock(f"backbone.blocks.{len(blocks)}", cin, cout, stride if j == 0 else 1))
            cin = cout
    return blocks


def wrn_layout(depth: int, width: int) -> tuple[list[tuple[str, tuple]], list[tuple[str, int]]]:
    """(convs, bns) in the torch module's order, which is also Keras' layer creation order.

    convs: (state_dict key of the weight, shape (cout, cin, k, k)); bns: (key prefix, channels).
    Heads are 'gender_head.weight' (2, F) and 'age_head.weight' (num_ages, F), F = ceil(S/4)^2 * 64 * width.
    """
    convs: list[tuple[str, tuple]] = [("backbone.conv1.weight", (16, 3, 3, 3))]
    bns: list[tuple[str, int]] = []
    for b in wrn_blocks(depth, width):
        bns.append((f"{b.prefix}.bn1", b.cin))
        convs.append((f"{b.prefix}.conv1.weight", (b.cout, b.cin, 3, 3)))
        bns.append((f"{b.prefix}.bn2", b.cout))
        convs.append((f"{b.prefix}.conv2.weight", (b.cout, b.cout, 3, 3)))
        if b.project:
            convs.append((f"{b.prefix}.short.weight", (b.cout, b.cin, 1, 1)))
    bns.append(("backbone.bn", 64 * width))
    return convs, bns


def wrn_feature_size(width: int, input_size: int) -> int:
    side = -(-input_size // 4)
    return side * side * 64 * width


def check_wrn_state(state: dict[str, np.ndarray], depth: int, width: int, input_size: int, num_ages: int) -> None:
    """ValueError naming the first tensor that is missing or has the wrong shape for this WRN."""
    convs, bns = wrn_layout(depth, width)
    feat = wrn_feature_size(width, input_size)
    want = dict(convs) | {"gender_head.weight": (2, feat), "age_head.weight": (num_ages, feat)}
    for prefix, c in bns:
        want |= {f"{prefix}.{k}": (c,) for k in BN_KEYS[:4]} | {f"{prefix}.num_batches_tracked": ()}
    for key, shape in want.items():
        if key not in state:
            raise ValueError(f"no tensor {key} for WRN-{depth}-{width}")
        if tuple(state[key].shape) != tuple(shape):
            raise ValueError(f"{key} has shape {tuple(state[key].shape)}, WRN-{depth}-{width} needs {shape}")
    extra = sorted(set(state) - set(want))
    if extra:
        raise ValueError(f"unexpected tensors for WRN-{depth}-{width}: {', '.join(extra[:3])}")


def _same_pads(size: int, k: int, stride: int) -> tuple[list[int], int]:
    """ONNX pads [top, left, bottom, right] of TF 'same' padding for a square input, and the output size."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    lo, hi = total // 2, total - total // 2
    return [lo, lo, hi, hi], out


class _Graph:
    """A small builder: numbered node outputs, initializers from numpy arrays."""

    def __init__(self, onnx) -> None:
        self.onnx, self.h = onnx, onnx.helper
        self.nodes: list = []
        self.inits: list = []
        self.count = 0

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        self.count += 1
        out = output or f"{op_type.lower()}_{self.count}"
        self.nodes.append(self.h.make_node(op_type, inputs, [out], name=f"{op_type}_{self.count}", **attrs))
        return out

    def conv(self, x: str, key: str, w: np.ndarray, size: int, stride: int) -> tuple[str, int]:
        pads, out = _same_pads(size, w.shape[2], stride)
        y = self.op("Conv", [x, self.const(key, w.astype(np.float32))], kernel_shape=list(w.shape[2:]),
                    strides=[stride, stride], pads=pads)
        return y, out

    def bn_relu(self, x: str, prefix: str, state: dict[str, np.ndarray]) -> str:
        ins = [x] + [self.const(f"{prefix}.{k}", state[f"{prefix}.{k}"].astype(np.float32)) for k in BN_KEYS[:4]]
        return self.op("Relu", [self.op("BatchNormalization", ins, epsilon=BN_EPS)])


def wrn_onnx_model(state: dict[str, np.ndarray], cfg: ModelConfig):  # -> onnx.ModelProto
    """The ONNX model of a "wrn" ModelConfig with weights `state` (torch state_dict keys, numpy arrays)."""
    onnx = require("onnx", "writing an ONNX model")
    kw = cfg.arch_kwargs
    depth, width, size = int(kw.get("depth", 16)), int(kw.get("width", 8)), int(kw.get("input_size", 64))
    pool, num_ages = int(kw.get("pool", 8)), cfg.preprocessing.num_ages
    if cfg.arch != "wrn":
        raise ValueError(f"arch {cfg.arch!r} is not the Keras WideResNet ('wrn')")
    check_wrn_state(state, depth, width, size, num_ages)
    g = _Graph(onnx)
    x, side = g.conv("input", "backbone.conv1.weight", state["backbone.conv1.weight"], size, 1)
    for b in wrn_blocks(depth, width):
        a = g.bn_relu(x, f"{b.prefix}.bn1", state)
        y, out_side = g.conv(a, f"{b.prefix}.conv1.weight", state[f"{b.prefix}.conv1.weight"], side, b.stride)
        y = g.bn_relu(y, f"{b.prefix}.bn2", state)
        y, _ = g.conv(y, f"{b.prefix}.conv2.weight", state[f"{b.prefix}.conv2.weight"], out_side, 1)
        # the Keras block projects the *activated* input when shapes change, the raw input otherwise
        short = g.conv(a, f"{b.prefix}.short.weight", state[f"{b.prefix}.short.weight"], side, b.stride)[0] \
            if b.project else x
        x, side = g.op("Add", [y, short]), out_side
    x = g.bn_relu(x, "backbone.bn", state)
    t = pool - 1
    x = g.op("AveragePool", [x], kernel_shape=[pool, pool], strides=[1, 1],
             pads=[t // 2, t // 2, t - t // 2, t - t // 2], count_include_pad=0)
    feat = g.op("Flatten", [g.op("Transpose", [x], perm=[0, 2, 3, 1])], axis=1)
    gender = g.op("MatMul", [feat, g.const("gender_head.weight_t", state["gender_head.weight"].T.astype(np.float32))])
    age = g.op("MatMul", [feat, g.const("age_head.weight_t", state["age_head.weight"].T.astype(np.float32))])
    g.op("Softmax", [gender], "gender_probs", axis=1)
    age_probs = g.op("Softmax", [age], "age_probs", axis=1)
    ages = np.arange(cfg.preprocessing.age_min, cfg.preprocessing.age_min + num_ages, dtype=np.float32)
    g.op("MatMul", [age_probs, g.const("ages", ages)], "age")

    h, f32 = onnx.helper, onnx.TensorProto.FLOAT
    graph = h.make_graph(
        g.nodes, "agegender_wrn", [h.make_tensor_value_info("input", f32, ["batch", 3, size, size])],
        [h.make_tensor_value_info("gender_probs", f32, ["batch", 2]),
         h.make_tensor_value_info("age_probs", f32, ["batch", num_ages]),
         h.make_tensor_value_info("age", f32, ["batch"])],
        initializer=g.inits,
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)], producer_name="agegender",
                         ir_version=IR_VERSION)
    meta = model.metadata_props.add()
    meta.key, meta.value = METADATA_KEY, cfg.to_json()
    onnx.checker.check_model(model)
    return model


def save_wrn_onnx(state: dict[str, np.ndarray], cfg: ModelConfig, out: str | os.PathLike[str]) -> Path:
    """Write the "wrn" model `state` + `cfg` to `out` as ONNX (dynamic batch), atomically; returns the path."""
    onnx = require("onnx", "writing an ONNX model")
    model = wrn_onnx_model(state, cfg)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, out)
    return out
