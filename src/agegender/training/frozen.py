"""The CPU recipe for fine-tuning a pretrained backbone: freeze its lower layers and compute their output
once, with ONNX Runtime, for several augmented views of every face; then train only the upper layers and the
heads on those cached features (`agegender train --freeze K --cache-views V`).

On 2 CPU cores a depthwise network trains end to end at a few images per second; its lower layers hold
most of the compute, so caching them makes an epoch tens of times cheaper. Each view is a stored crop after
`camera_augment` (crop jitter, flip, JPEG, blur, lighting ...), cut to the model's crop and resized to its
input size exactly as `align.resize_square` resizes at inference. A view's cache file is written whole, then
renamed, so a killed run keeps the finished views and recomputes only the one it was on.

Cache layout in the run folder: features/{name}_v{j}.npy (float16, (N, C, h, w)) and features/lower.onnx.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..align import from_stored_crop, to_network_input
from ..models.nets import AgeGenderNet
from ..types import Preprocessing
from .batches import CropSource, read_crop
from .camera import CameraAugment, camera_augment


def split_net(net: AgeGenderNet, k: int) -> tuple[nn.Module, Callable[[torch.Tensor], tuple[torch.Tensor, ...]]]:
    """(lower, upper_forward) for a network that can be split at its k-th layer (`net.split`, an
    AgeGenderNet's or an ensemble's): lower(x) is what gets frozen and cached; upper_forward(features) gives
    the heads' outputs, as net(x) would."""
    try:
        return net.split(k)
    except ValueError as exc:
        raise ValueError(f"--freeze: {exc}") from None


def trainable_parameters(net: AgeGenderNet, lower: nn.Module) -> list[nn.Parameter]:
    """Every parameter of `net` outside the frozen `lower` part (which gets requires_grad False)."""
    frozen = {id(p) for p in lower.parameters()}
    for p in lower.parameters():
        p.requires_grad_(False)
    return [p for p in net.parameters() if id(p) not in frozen]


class FeatureCache:
    """Cached outputs of the frozen lower layers for views of one split, in `folder`."""

    def __init__(self, folder: Path, lower: nn.Module, prep: Preprocessing, stored: Preprocessing,
                 threads: int = 0) -> None:
        from ..models.config import onnx_session
        from ..models.onnx_graph import export_features_onnx

        self.folder, self.prep, self.stored = Path(folder), prep, stored
        self.folder.mkdir(parents=True, exist_ok=True)
        onnx_path = self.folder / "lower.onnx"
        if not onnx_path.is_file():
            export_features_onnx(lower, prep.size, str(onnx_path))
        self.session = onnx_session(str(onnx_path), threads or None)

    def view(self, name: str, src: CropSource, j: int, aug: CameraAugment | None, seed: int,
             progress: bool = True, batch: int = 128) -> np.ndarray:
        """The (N, C, h, w) float16 features of view j of `src` (aug None: the clean crops), computed once."""
        path = self.folder / f"{name}_v{j}.npy"
        if path.is_file():
            return np.load(path, mmap_mode="r")
        rng = np.random.default_rng([seed, j])
        tmp = path.with_name(f".{path.name}.tmp")
        out = None
        for start in tqdm(range(0, len(src), batch), desc=f"features {name} view {j}", unit="batch",
                          disable=not progress, mininterval=2.0):
            idx = range(start, min(start + batch, len(src)))
            crops = [src.images[i].numpy() if src.images is not None else read_crop(src.paths[i], src.size)
                     for i in idx]
            views = np.stack([from_stored_crop(camera_augment(c, rng, aug) if aug else c, self.stored, self.prep)
                              for c in crops])
            feats = self.session.run(None, {"input": to_network_input(views, self.prep)})[0]
            if out is None:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(src), *feats.shape[1:]))
            out[start : start + len(idx)] = feats.astype(np.float16)
        if out is None:
            raise ValueError(f"no samples to compute features for ({name})")
        out.flush()
        del out
        os.replace(tmp, path)
        return np.load(path, mmap_mode="r")
