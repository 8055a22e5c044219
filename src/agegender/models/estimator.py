"""Estimators: run a face-crop batch through a model and decode ages and genders.

Two runtimes behind one interface: ONNX Runtime (no torch needed; the default for inference) and
PyTorch (for models being trained or fine-tuned). Both read preprocessing from the weights file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..align import to_network_input
from ..extras import require
from ..types import Preprocessing
from .config import ModelConfig, onnx_session, read_onnx_session_config
from .decode import age_range, expected_age, female_probability

#: folder of the weights that ship inside the package
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass
class EstimatorOutput:
    """ages: (N,) years; p_female: (N,); age_probs: (N, K) over the preprocessing's age range; age_ranges:
    (N, 2) low and high years of the interval the model's record calibrates (None when it has none)."""

    ages: np.ndarray
    p_female: np.ndarray
    age_probs: np.ndarray
    age_ranges: np.ndarray | None = None


class Estimator(Protocol):
    config: ModelConfig
    name: str

    @property
    def preprocessing(self) -> Preprocessing: ...

    def estimate(self, crops_rgb: np.ndarray, flip_tta: bool = False) -> EstimatorOutput: ...


class _Base:
    config: ModelConfig

    @property
    def preprocessing(self) -> Preprocessing:
        return self.config.preprocessing

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # -> gender_probs, age_probs
        raise NotImplementedError

    def estimate(self, crops_rgb: np.ndarray, flip_tta: bool = False, batch_size: int = 64) -> EstimatorOutput:
        """(N, S, S, 3) uint8 RGB crops -> ages, P(female), age distributions. flip_tta: average with the
        mirrored crops."""
        prep = self.preprocessing
        k = prep.num_ages
        n = len(crops_rgb)
        if n == 0:
            return EstimatorOutput(np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros((0, k), np.float32),
                                   np.zeros((0, 2), np.float32) if self.config.age_range else None)
        gp, ap = [], []
        for i in range(0, n, batch_size):
            x = to_network_input(crops_rgb[i : i + batch_size], prep)
            g, a = self._run(x)
            if flip_tta:
                g2, a2 = self._run(np.ascontiguousarray(x[..., ::-1]))
                g, a = (g + g2) / 2, (a + a2) / 2
            gp.append(g)
            ap.append(a)
        g = np.concatenate(gp)
        a = np.concatenate(ap).astype(np.float32)
        cal = self.config.age_range
        ranges = age_range(a, cal["level"], cal["temperature"], prep.age_min) if cal else None
        return EstimatorOutput(
            expected_age(a, prep.age_min), female_probability(g, self.config.gender_female_index), a, ranges
        )


class OnnxEstimator(_Base):
    """An exported model (.onnx) on onnxruntime; outputs gender_probs, age_probs (softmax in graph).
    device: cpu, or cuda[:N] (onnxruntime's CUDA provider, from the onnxruntime-gpu package)."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None, device: str = "cpu") -> None:
        self.path = str(path)
        self.session = onnx_session(self.path, threads, device)
        self.config = read_onnx_session_config(self.session, self.path)
        self.input_name = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        if "gender_probs" not in outputs or "age_probs" not in outputs:
            raise ValueError(f"{self.path}: ONNX model lacks gender_probs/age_probs outputs (found {outputs})")
        self.name = Path(self.path).stem

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g, a = self.session.run(["gender_probs", "age_probs"], {self.input_name: x})
        return g, a


class TorchEstimator(_Base):
    """A .safetensors model on PyTorch (CPU unless device says otherwise)."""

    def __init__(self, path: str | os.PathLike[str], device: str = "cpu") -> None:
        require("torch", "running a .safetensors model")
        from .nets import DecodedNet
        from .torch_weights import load_model

        self.path = str(path)
        self.model, self.config = load_model(self.path)
        self.decoded = DecodedNet(self.model, self.config.preprocessing.age_min).eval()  # as the ONNX graph decodes
        self.device = device
        self.decoded.to(device)
        self.name = Path(self.path).stem

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            g, a, _ = self.decoded(torch.from_numpy(x).to(self.device))
            return g.float().cpu().numpy(), a.float().cpu().numpy()


def builtin_models() -> dict[str, Path]:
    """Models shipped in the package, by name -> preferred file (.onnx if present, else .safetensors)."""
    out: dict[str, Path] = {}
    if BUILTIN_DIR.is_dir():
        for p in sorted(BUILTIN_DIR.iterdir()):
            if p.suffix in (".onnx", ".safetensors") and (p.stem not in out or p.suffix == ".onnx"):
                out[p.stem] = p
    return out


def resolve_model_path(model: str | os.PathLike[str]) -> Path:
    """A model name ("default"), a weights file, or a training run folder -> the weights file to load."""
    s = str(model)
    builtins = builtin_models()
    if s in builtins:
        return builtins[s]
    p = Path(s)
    if p.is_dir():
        for name in ("best.onnx", "best.safetensors", "last.safetensors"):
            if (p / name).is_file():
                return p / name
        raise FileNotFoundError(f"{p}: no best.safetensors or best.onnx in this folder")
    if p.is_file():
        return p
    known = ", ".join(builtins) or "none"
    raise FileNotFoundError(f"{s}: no such model file or folder (built-in models: {known})")


def load_estimator(model: str | os.PathLike[str] = "default", device: str = "cpu",
                   threads: int | None = None) -> Estimator:
    """Load a model by name or path; .onnx runs on onnxruntime, .safetensors on torch; on `device` (cpu,
    cuda[:N])."""
    path = resolve_model_path(model)
    if path.suffix == ".onnx":
        return OnnxEstimator(path, threads, device)
    if path.suffix == ".safetensors":
        return TorchEstimator(path, device)
    raise ValueError(f"{path}: unsupported model file type (expected .onnx or .safetensors)")
