"""Saving and loading torch models as safetensors with the agegender record in the header."""

from __future__ import annotations

import os
from pathlib import Path

from ..fileio import atomic_write_bytes
from .config import METADATA_KEY, ModelConfig, read_config
from .nets import AgeGenderNet, build_model


def build_from_config(cfg: ModelConfig) -> AgeGenderNet:
    return build_model(cfg.arch, num_ages=cfg.preprocessing.num_ages, **cfg.arch_kwargs)


def save_model(path: str | os.PathLike[str], model: AgeGenderNet, cfg: ModelConfig) -> None:
    """Write model weights and its config to a .safetensors file, atomically."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(state, metadata={METADATA_KEY: cfg.to_json()}))


def load_model(path: str | os.PathLike[str]) -> tuple[AgeGenderNet, ModelConfig]:
    """Build the network a .safetensors file describes and load its weights (eval mode, CPU).

    Raises ValueError naming the file when the weights do not fit the architecture.
    """
    from safetensors.torch import load_file

    path = str(Path(path))
    cfg = read_config(path)
    model = build_from_config(cfg)
    state = load_file(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise ValueError(f"{path}: weights do not fit architecture {cfg.arch!r}: {' '.join(first)}") from None
    model.eval()
    return model, cfg
