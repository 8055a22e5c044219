"""Where a run's weights start (`train --init`) and what a teacher may be (`--teacher`): checks that keep a
model from being fine-tuned or distilled from something it must not be."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..models.config import ModelConfig, read_config
from ..models.estimator import resolve_model_path
from ..models.nets import AgeGenderNet
from ..models.torch_weights import load_model
from ..types import Preprocessing


def refuse_untrainable(role: str, name: str, cfg: ModelConfig) -> None:
    """A model whose card says it has seen our test data (e.g. face-api's) is never a start or a teacher;
    nor is one that reads age by regression (no age distribution to learn from)."""
    reason = cfg.card.get("not_for_training")
    if reason:
        raise ValueError(f"{role} {name}: {reason}")
    if cfg.arch_kwargs.get("age_regression") or cfg.arch == "tiny_xception":
        raise ValueError(f"{role} {name}: reads age by regression, with no age distribution to train from")


def init_path(init: str) -> Path:
    """The .safetensors file of --init (a built-in name resolves to its .safetensors copy)."""
    path = resolve_model_path(init)
    if path.suffix == ".onnx":
        path = path.with_suffix(".safetensors")
    if not path.is_file():
        raise FileNotFoundError(f"--init {init}: needs a .safetensors model (not found: {path})")
    return path


def init_architecture(init: str) -> tuple[str, dict[str, Any]]:
    cfg = read_config(str(init_path(init)))
    refuse_untrainable("--init", init, cfg)
    return cfg.arch, dict(cfg.arch_kwargs)


def load_init(net: AgeGenderNet, init: str, arch: str, arch_kwargs: dict[str, Any], prep: Preprocessing) -> str:
    """Copy the weights of a trained model (built-in name, .safetensors or run folder) into `net`; it must
    have the same architecture and age classes; its crop mode, margin and input size may differ (the run
    then adapts it to its own crops, e.g. an aligned-crop model fine-tuned on square crops). Returns a note
    on what differs ('' when nothing does)."""
    src, scfg = load_model(init_path(init))
    refuse_untrainable("--init", init, scfg)
    sp = scfg.preprocessing
    if (scfg.arch, scfg.arch_kwargs) != (arch, dict(arch_kwargs)):
        raise ValueError(f"--init {init}: architecture {scfg.arch} {scfg.arch_kwargs} differs from this "
                         f"run's {arch} {arch_kwargs}")
    if (sp.age_min, sp.age_max) != (prep.age_min, prep.age_max):
        raise ValueError(f"--init {init}: predicts ages {sp.age_min}..{sp.age_max}; this run "
                         f"{prep.age_min}..{prep.age_max}")
    state = {k: v.float() for k, v in src.state_dict().items()}
    if scfg.gender_female_index == 0:  # our heads put female at index 1: swap the imported rows
        for key in ("gender_head.weight", "gender_head.bias"):
            if key in state:
                state[key] = state[key].flip(0)
    net.load_state_dict(state)
    if not sp.same_cut(prep) or sp.size != prep.size:
        return (f"--init {init}: its crops were {sp.crop}, margin {sp.margin} at {sp.size}px; this run "
                f"fine-tunes it to {prep.crop}, margin {prep.margin} at {prep.size}px")
    return ""
