"""The record every weights file carries: architecture, preprocessing, decoding and model card.

Stored as JSON in the safetensors header (key "agegender") and in ONNX metadata (same key), so it can
be read without torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..types import Preprocessing

WEIGHTS_FORMAT_VERSION = 1
METADATA_KEY = "agegender"


@dataclass
class ModelConfig:
    """arch: backbone name in the model registry; arch_kwargs: its options (e.g. depth, width).

    gender_female_index: which of the two gender outputs means female (ours 1; the Keras original 0).
    card: free-form model card summary (data, split, metrics, licence).
    age_range: how to read an age range off the age distribution, fitted on validation faces:
    {"level": 0.8, "temperature": T, "fitted_on": "..."}: the central `level` interval of the distribution
    tempered by T (`decode.age_range`) held the true age of that share of those faces. None: no range.
    """

    arch: str
    preprocessing: Preprocessing
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    gender_female_index: int = 1
    card: dict[str, Any] = field(default_factory=dict)
    format_version: int = WEIGHTS_FORMAT_VERSION
    age_range: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.age_range is not None:
            level, t = self.age_range.get("level"), self.age_range.get("temperature")
            if not isinstance(level, (int, float)) or not 0 < level < 1 or not isinstance(t, (int, float)) or t <= 0:
                raise ValueError(f"age_range needs 0 < level < 1 and temperature > 0, got {self.age_range}")

    def to_json(self) -> str:
        record = {
            "format_version": self.format_version,
            "arch": self.arch,
            "arch_kwargs": self.arch_kwargs,
            "preprocessing": self.preprocessing.to_dict(),
            "gender_female_index": self.gender_female_index,
            "card": self.card,
        }
        if self.age_range is not None:  # absent rather than null: older readers see the record they know
            record["age_range"] = self.age_range
        return json.dumps(record, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "<weights>") -> ModelConfig:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: the agegender record is not valid JSON ({exc})") from None
        version = int(d.get("format_version", 0))
        if version > WEIGHTS_FORMAT_VERSION:
            raise ValueError(
                f"{source}: weights format version {version} is newer than this agegender supports "
                f"({WEIGHTS_FORMAT_VERSION}); upgrade agegender"
            )
        if "preprocessing" not in d or "arch" not in d:
            raise ValueError(f"{source}: the agegender record lacks 'arch' or 'preprocessing'")
        try:
            prep = Preprocessing.from_dict(d["preprocessing"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: bad preprocessing record: {exc}") from None
        try:
            return cls(
                arch=d["arch"],
                preprocessing=prep,
                arch_kwargs=d.get("arch_kwargs", {}),
                gender_female_index=int(d.get("gender_female_index", 1)),
                card=d.get("card", {}),
                format_version=version,
                age_range=d.get("age_range"),
            )
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None


def read_config(path: str) -> ModelConfig:
    """The ModelConfig stored in a .safetensors or .onnx weights file (no torch import)."""
    if path.endswith(".onnx"):
        return read_onnx_session_config(onnx_session(path), path)
    from safetensors import safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such weights file") from None
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise ValueError(f"{path}: not a safetensors weights file ({exc})") from None
    if METADATA_KEY not in meta:
        raise ValueError(f"{path}: weights file has no agegender preprocessing record")
    return ModelConfig.from_json(meta[METADATA_KEY], path)


def onnx_session(path: str, threads: int | None = None, device: str = "cpu"):  # -> onnxruntime.InferenceSession
    """An onnxruntime session for `path` on `device` (cpu, cuda[:N]), with a clear error for a missing or
    broken file (and, for cuda, a missing CUDA provider)."""
    import os

    from ..onnxrt import DeviceError, make_session

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such model file")
    try:
        return make_session(path, threads, device)
    except DeviceError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own error types
        raise ValueError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None


def read_onnx_session_config(session, path: str) -> ModelConfig:  # session: onnxruntime.InferenceSession
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise ValueError(f"{path}: ONNX file has no agegender preprocessing record in its metadata")
    return ModelConfig.from_json(props[METADATA_KEY], path)

