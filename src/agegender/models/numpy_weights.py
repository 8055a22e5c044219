"""Weights as NumPy arrays in .safetensors files, with the agegender record in the header (no torch).

The files are the same as `torch_weights.save_model` writes: tensor names are the torch module's
state_dict keys, so `load_model` builds and loads them on PyTorch unchanged.
"""

from __future__ import annotations

import os

import numpy as np

from ..fileio import atomic_write_bytes
from .config import METADATA_KEY, ModelConfig, read_config


def save_arrays(path: str | os.PathLike[str], state: dict[str, np.ndarray], cfg: ModelConfig) -> None:
    """Write {state_dict key: array} and `cfg` to a .safetensors file, atomically."""
    from safetensors.numpy import save

    arrays = {k: np.require(v, requirements="C") for k, v in state.items()}  # keeps 0-d arrays 0-d
    atomic_write_bytes(path, save(arrays, metadata={METADATA_KEY: cfg.to_json()}))


def load_arrays(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], ModelConfig]:
    """The {state_dict key: array} of a .safetensors model and its ModelConfig."""
    from safetensors.numpy import load_file

    cfg = read_config(str(path))
    return load_file(str(path)), cfg
