"""ONNX graphs of our networks: small rewrites that ONNX Runtime does not do by itself, and the export of a
plain feature module (the frozen lower layers of the CPU training recipe).

`constant_folded`: the graph after ONNX Runtime's basic (standard-ops-only) optimisations, chiefly
constant folding, so that shapes and pads computed from constants become constants.

`fold_pads_into_convs`: TF 'SAME' padding is exported as an explicit zero Pad before each convolution
(PyTorch's Conv2d cannot pad asymmetrically); ONNX's Conv can, so each such Pad becomes the Conv's own
`pads` attribute and the copy of the activation it made disappears.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def constant_folded(path: str) -> Any:  # -> onnx.ModelProto
    """The model at `path` after ONNX Runtime's basic graph optimisations (standard ONNX ops only)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = f"{tmp}/folded.onnx"
        opts.log_severity_level = 3
        ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        return onnx.load(f"{tmp}/folded.onnx")


def _const_values(graph: Any) -> dict[str, np.ndarray]:
    """Initializers and Constant node outputs of `graph` by tensor name."""
    from onnx import numpy_helper

    out = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    out[node.output[0]] = numpy_helper.to_array(attr.t)
    return out


def _zero_spatial_pad(node: Any, consts: dict[str, np.ndarray]) -> list[int] | None:
    """[top, left, bottom, right] of a constant-mode, zero-valued Pad of the two spatial axes of a 4-D
    tensor; None for any other Pad."""
    mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "constant")
    if mode != "constant" or len(node.input) < 2 or node.input[1] not in consts:
        return None
    if len(node.input) > 2 and node.input[2] and float(np.asarray(consts.get(node.input[2], 1.0)).ravel()[0]) != 0:
        return None
    pads = [int(v) for v in consts[node.input[1]].ravel()]
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
        return None
    return [pads[2], pads[3], pads[6], pads[7]]


def fold_pads_into_convs(model: Any) -> int:
    """Fold every zero Pad whose only reader is a Conv into that Conv (in place); returns how many."""
    import onnx

    graph = model.graph
    consts = _const_values(graph)
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    folded = []
    for node in graph.node:
        if node.op_type != "Pad" or node.output[0] in outputs:
            continue
        pads = _zero_spatial_pad(node, consts)
        users = readers.get(node.output[0], [])
        if pads is None or len(users) != 1 or users[0].op_type != "Conv":
            continue
        conv = users[0]
        attrs = {a.name: a for a in conv.attribute}
        if "auto_pad" in attrs and attrs["auto_pad"].s not in (b"", b"NOTSET"):
            continue
        old = list(attrs["pads"].ints) if "pads" in attrs else [0, 0, 0, 0]
        new = [o + p for o, p in zip(old, pads)]
        if "pads" in attrs:
            conv.attribute.remove(attrs["pads"])
        conv.attribute.append(onnx.helper.make_attribute("pads", new))
        conv.input[0] = node.input[0]
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    return len(folded)


def export_features_onnx(module: Any, size: int, path: str) -> str:
    """Trace a torch module (N, 3, size, size) float32 -> (N, ...) to ONNX at `path` (dynamic batch, constants
    folded, pads folded into convolutions); returns the path. Needs torch and onnx."""
    import os
    import warnings

    import onnx
    import torch

    tmp = f"{path}.tmp"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing notes (TF 'SAME' pads fixed per input size) are expected
        torch.onnx.export(module.eval(), (torch.zeros(2, 3, size, size),), tmp, input_names=["input"],
                          output_names=["features"], dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
                          opset_version=17, dynamo=False)
    proto = constant_folded(tmp)
    fold_pads_into_convs(proto)
    onnx.save(proto, tmp)
    os.replace(tmp, path)
    return path


def store_weights_half(model: Any, min_size: int = 1024) -> int:
    """Keep the large float32 weights of `model` that float16 holds exactly as float16 initializers, each read
    through a Cast to float32 (in place): the file is up to half the size, and ONNX Runtime folds the casts
    when it loads the model, so it computes in float32 on the very same values. Weights that float16 would
    round stay float32: e.g. a convolution with a batch norm folded into it at export, whose float16-rounded
    parts no longer multiply to float16 values (rounding them again would make the ONNX file answer
    differently from the float16 weights it was exported from). Returns how many weights were halved."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    done = 0
    for init in list(graph.initializer):
        if init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < min_size:
            continue
        values = numpy_helper.to_array(init)
        if not np.array_equal(values.astype(np.float16).astype(np.float32), values):
            continue
        half = numpy_helper.from_array(values.astype(np.float16), f"{init.name}__half")
        graph.initializer.remove(init)
        graph.initializer.append(half)
        graph.node.insert(0, onnx.helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                                   name=f"{init.name}__cast"))
        done += 1
    return done


def restore_weights_float(model: Any) -> int:
    """Undo `store_weights_half` (in place): each float16 initializer read through a Cast to float32 becomes a
    float32 initializer of the Cast's output name again, the Cast removed (the values stay float16-rounded).
    Tools that look for constant weights (int8 quantization) then find them. Returns how many were restored."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    halves = {i.name: i for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    done = 0
    for node in list(graph.node):
        if node.op_type != "Cast" or len(node.input) != 1 or node.input[0] not in halves:
            continue
        if next(a.i for a in node.attribute if a.name == "to") != onnx.TensorProto.FLOAT:
            continue
        half = halves[node.input[0]]
        graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(half).astype(np.float32),
                                                         node.output[0]))
        graph.node.remove(node)
        graph.initializer.remove(half)
        done += 1
    return done
