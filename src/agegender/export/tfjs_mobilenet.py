"""Walk a TF.js graph model that is a MobileNet-v1 face network and turn it into our "mobilenet_v1" state.

The graph must be one chain from its input: a 3x3 stride-2 convolution, then pairs of 3x3 depthwise and
1x1 convolutions, each followed by an optional per-channel Mul (batch norm's scale), an Add (its shift)
and ReLU6 (Relu + Minimum 6 + Maximum 0, or Relu6); then a spatial Mean; then a fully connected ReLU
neck read by two heads: one output with a Sigmoid (gender) and K outputs with a Softmax (age over 0..K-1).
Every convolution must use 'SAME' padding, NHWC and no dilation. Anything else is refused by name.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

#: the preprocessing HSE's networks are fed with (BGR, minus the ImageNet means), as Human feeds faceres-deep
FACERES_PREPROCESSING = dict(crop="square", margin=0.3, color="BGR", mean=(103.939, 116.779, 123.68),
                             std=(1.0, 1.0, 1.0), age_min=0)

_ACTIVATION_OPS = ("Relu", "Minimum", "Maximum", "Relu6")


def _attr_ints(node: dict[str, Any], key: str) -> list[int]:
    return [int(v) for v in node.get("attr", {}).get(key, {}).get("list", {}).get("i", [])]


def _attr_str(node: dict[str, Any], key: str) -> str:
    raw = node.get("attr", {}).get(key, {}).get("s", "")
    return base64.b64decode(raw).decode() if raw else ""


def _input_names(node: dict[str, Any]) -> list[str]:
    return [i.split(":")[0] for i in node.get("input", []) if not i.startswith("^")]


class _Walker:
    """Reads the chain op by op; `convs` and `dense` collect the layers with their weights."""

    def __init__(self, f: Any) -> None:  # f: TfjsFile
        self.f = f
        self.convs: list[dict[str, Any]] = []
        self.dense: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, str] = {}  # head activation op -> dense node name
        self.pooled = ""  # name of the Mean node, once reached
        self.activations = 0
        self.input_size = 0

    def const(self, name: str) -> np.ndarray:
        if name not in self.f.weights:
            raise ValueError(f"{self.f.path}: {name!r} is not a constant of the graph")
        return self.f.weights[name]

    def fail(self, node: dict[str, Any], why: str) -> ValueError:
        return ValueError(f"{self.f.path}: not a MobileNet-v1 face network: node {node['name']!r} ({node['op']}) {why}")

    def walk(self) -> None:
        ops = [n for n in self.f.nodes if n["op"] not in ("Const", "Identity", "NoOp")]
        if not ops or ops[0]["op"] != "Placeholder":
            raise ValueError(f"{self.f.path}: the graph does not start with an input placeholder")
        dims = ops[0].get("attr", {}).get("shape", {}).get("shape", {}).get("dim", [])
        self.input_size = int(dims[1]["size"]) if len(dims) == 4 and int(dims[1]["size"]) > 0 else 224
        prev = ops[0]["name"]
        for node in ops[1:]:
            inputs = _input_names(node)
            if self.pooled and node["op"] == "_FusedMatMul":
                self.matmul(node, inputs)
                continue
            if node["op"] in ("Sigmoid", "Softmax"):
                self.outputs[node["op"]] = inputs[0]
                continue
            if not inputs or inputs[0] != prev:
                raise self.fail(node, f"does not read the previous op {prev!r}: the graph is not a plain chain")
            self.layer_op(node, inputs)
            prev = node["name"]

    def layer_op(self, node: dict[str, Any], inputs: list[str]) -> None:
        op = node["op"]
        if op in ("Conv2D", "DepthwiseConv2dNative"):
            if _attr_str(node, "padding") != "SAME" or _attr_str(node, "data_format") not in ("", "NHWC"):
                raise self.fail(node, "is not a 'SAME', NHWC convolution")
            if any(d != 1 for d in _attr_ints(node, "dilations")):
                raise self.fail(node, "is dilated")
            strides = _attr_ints(node, "strides") or [1, 1, 1, 1]
            self.convs.append({"node": node["name"], "depthwise": op == "DepthwiseConv2dNative",
                               "kernel": self.const(inputs[1]), "stride": strides[1], "scale": None, "bias": None})
        elif op == "Mul" and self.convs and self.convs[-1]["bias"] is None:
            self.convs[-1]["scale"] = self.const(inputs[1])
        elif op in ("Add", "AddV2", "BiasAdd") and self.convs:
            self.convs[-1]["bias"] = self.const(inputs[1])
        elif op in _ACTIVATION_OPS:
            self.activation(node, inputs)
        elif op == "Mean":
            if sorted(self.const(inputs[1]).ravel().tolist()) != [1, 2]:
                raise self.fail(node, "does not average over height and width")
            self.pooled = node["name"]
        else:
            raise self.fail(node, "is an op a MobileNet-v1 chain does not have")

    def activation(self, node: dict[str, Any], inputs: list[str]) -> None:
        op = node["op"]
        if op == "Minimum" and not np.all(self.const(inputs[1]) == 6.0):
            raise self.fail(node, "clips at a value other than 6 (not ReLU6)")
        if op == "Maximum" and not np.all(self.const(inputs[1]) == 0.0):
            raise self.fail(node, "clips below at a value other than 0 (not ReLU6)")
        if op in ("Relu", "Relu6"):
            self.activations += 1

    def matmul(self, node: dict[str, Any], inputs: list[str]) -> None:
        listed = node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])
        fused = [base64.b64decode(s).decode() for s in listed]
        if fused not in (["BiasAdd"], ["BiasAdd", "Relu"]):
            raise self.fail(node, f"fuses {fused} (expected BiasAdd, optionally Relu)")
        if node.get("attr", {}).get("transpose_a", {}).get("b") or node.get("attr", {}).get("transpose_b", {}).get("b"):
            raise self.fail(node, "transposes its operands")
        self.dense[node["name"]] = {"input": inputs[0], "kernel": self.const(inputs[1]), "bias": self.const(inputs[2]),
                                    "relu": fused[-1] == "Relu"}


def mobilenet_from_graph(f: Any, size: int | None) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """(state, arch_kwargs, preprocessing kwargs) for our "mobilenet_v1" from a walked TF.js graph."""
    w = _Walker(f)
    w.walk()
    stem, blocks = _check_convs(w)
    gender, age, neck = _check_heads(w)
    state = {"backbone.layers.0.0.weight": _conv_weight(stem), "backbone.layers.0.0.bias": stem["bias"]}
    for i, (dw, pw) in enumerate(blocks, start=1):
        state[f"backbone.layers.{i}.dw.weight"] = _conv_weight(dw)
        state[f"backbone.layers.{i}.dw.bias"] = dw["bias"]
        state[f"backbone.layers.{i}.pw.weight"] = _conv_weight(pw)
        state[f"backbone.layers.{i}.pw.bias"] = pw["bias"]
    state["backbone.neck.weight"] = neck["kernel"].T
    state["backbone.neck.bias"] = neck["bias"]
    width = neck["kernel"].shape[1]
    # one sigmoid output z is P(male) = softmax([0, z])[1]: a two-logit head whose first logit is always 0
    state["gender_head.weight"] = np.stack([np.zeros(width, np.float32), gender["kernel"][:, 0]])
    state["gender_head.bias"] = np.array([0.0, gender["bias"][0]], np.float32)
    state["age_head.weight"] = age["kernel"].T
    state["age_head.bias"] = age["bias"]
    state = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}
    arch_kwargs = {"stem": int(stem["kernel"].shape[3]), "neck": int(width),
                   "blocks": [[int(pw["kernel"].shape[3]), int(dw["stride"])] for dw, pw in blocks]}
    num_ages = age["kernel"].shape[1]
    prep = dict(FACERES_PREPROCESSING, size=int(size or w.input_size), age_max=num_ages - 1)
    return state, arch_kwargs, prep


def _conv_weight(c: dict[str, Any]) -> np.ndarray:
    """TF kernel (kh, kw, cin, cout) or depthwise (kh, kw, c, 1), with any batch-norm scale folded in,
    -> torch (cout, cin/groups, kh, kw)."""
    k = c["kernel"].astype(np.float64)
    if c["depthwise"]:
        k = k.transpose(2, 3, 0, 1)  # (c, 1, kh, kw)
        if c["scale"] is not None:
            k = k * c["scale"].reshape(-1, 1, 1, 1)
    else:
        if c["scale"] is not None:
            k = k * c["scale"].reshape(1, 1, 1, -1)
        k = k.transpose(3, 2, 0, 1)
    return k.astype(np.float32)


def _check_convs(w: _Walker) -> tuple[dict[str, Any], list[tuple[dict[str, Any], dict[str, Any]]]]:
    convs = w.convs
    if len(convs) < 3 or len(convs) % 2 == 0:
        raise ValueError(f"{w.f.path}: {len(convs)} convolutions do not make a stem plus depthwise/pointwise pairs")
    stem, rest = convs[0], convs[1:]
    if stem["depthwise"] or stem["kernel"].shape[:3] != (3, 3, 3) or stem["stride"] != 2:
        raise ValueError(f"{w.f.path}: the first convolution is not a 3x3 stride-2 stem on 3 channels")
    blocks = list(zip(rest[::2], rest[1::2]))
    cin = stem["kernel"].shape[3]
    for dw, pw in blocks:
        if not dw["depthwise"] or dw["kernel"].shape != (3, 3, cin, 1):
            raise ValueError(f"{w.f.path}: {dw['node']} is not a 3x3 depthwise convolution on {cin} channels")
        if pw["depthwise"] or pw["kernel"].shape[:3] != (1, 1, cin) or pw["stride"] != 1:
            raise ValueError(f"{w.f.path}: {pw['node']} is not a 1x1 pointwise convolution on {cin} channels")
        cin = pw["kernel"].shape[3]
    missing = [c["node"] for c in convs if c["bias"] is None]
    if missing:
        raise ValueError(f"{w.f.path}: convolution(s) without a bias add: {missing[:3]}")
    if w.activations != len(convs) or not w.pooled:
        raise ValueError(f"{w.f.path}: {w.activations} ReLU6 for {len(convs)} convolutions, pooled={w.pooled}")
    return stem, blocks


def _check_heads(w: _Walker) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    if set(w.outputs) != {"Sigmoid", "Softmax"} or len(w.dense) != 3:
        raise ValueError(f"{w.f.path}: expected a neck and two heads (Sigmoid gender, Softmax age), found "
                         f"{len(w.dense)} dense layers and outputs {sorted(w.outputs)}")
    gender, age = w.dense[w.outputs["Sigmoid"]], w.dense[w.outputs["Softmax"]]
    necks = [d for name, d in w.dense.items() if name not in (w.outputs["Sigmoid"], w.outputs["Softmax"])]
    neck = necks[0]
    neck_name = next(name for name, d in w.dense.items() if d is neck)
    if (not neck["relu"] or neck["input"] != w.pooled or gender["input"] != neck_name or age["input"] != neck_name
            or gender["kernel"].shape[1] != 1):
        raise ValueError(f"{w.f.path}: expected pooling -> ReLU neck -> both heads, with one gender output")
    return gender, age, neck
