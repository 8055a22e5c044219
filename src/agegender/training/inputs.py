"""What the network is fed in training and validation, whichever recipe the run uses:

- ImageInputs: the stored crops, augmented on the fly (camera-like augmentations on the CPU, then the
  geometric and colour jitter of `augment_batch`), normalised as the record says;
- FeatureInputs: the cached outputs of frozen lower layers (`training/frozen.py`), each sample read from one
  of its augmented views per epoch, the views in turn.

Both yield (indices, x, ages, genders) per index batch, x already on the device, so the loop does not care.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import torch

from ..types import Preprocessing
from .augment import AugmentConfig, augment_batch, resize_batch
from .batches import CropSource
from .camera import CameraAugment, camera_batch

Fed = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def normalise(x: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """(B, 3, S, S) float 0..255 RGB -> the network input the record prescribes (channel order, mean, std)."""
    mean = torch.tensor(prep.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(prep.std, device=x.device).view(1, 3, 1, 1)
    if prep.color == "BGR":
        x = x.flip(1)
    return (x - mean) / std


class ImageInputs:
    """Crops of a CropSource, augmented for training or only cut and resized for validation."""

    def __init__(self, src: CropSource, prep: Preprocessing, cut: int, device: torch.device, workers: int = 0,
                 augment: AugmentConfig | None = None, camera: CameraAugment | None = None,
                 gen: torch.Generator | None = None, seed: int = 0) -> None:
        self.src, self.prep, self.cut, self.device = src, prep, cut, device
        self.workers, self.augment, self.camera, self.gen, self.seed = workers, augment, camera, gen, seed
        self.wait = 0.0  # seconds spent waiting for crops (the data wait share of the history)

    def __len__(self) -> int:
        return len(self.src)

    @property
    def ages(self) -> torch.Tensor:
        return self.src.ages

    @property
    def genders(self) -> torch.Tensor:
        return self.src.genders

    def batches(self, index_batches: list[torch.Tensor], epoch: int = 0) -> Iterator[Fed]:
        amp = self.device.type == "cuda"
        stream = self.src.batches(index_batches, self.workers, pin=amp)
        rng = np.random.default_rng([self.seed, epoch])
        for idx in index_batches:
            t0 = time.time()
            xb, ab, gb = next(stream)
            self.wait += time.time() - t0
            if self.camera is not None:
                xb = torch.from_numpy(camera_batch(xb.cpu().numpy(), rng, self.camera))
            xb = xb.to(self.device, non_blocking=True)
            if self.augment is None:
                x = resize_batch(xb, self.prep.size, self.cut)
            else:
                x = augment_batch(xb, self.prep.size, self.augment, self.gen, self.cut)
            yield idx, normalise(x, self.prep), ab.to(self.device), gb.to(self.device)


class FeatureInputs:
    """Cached frozen-layer features: `views` is one (N, C, h, w) float16 array per augmented view (each
    epoch reads every sample from one view, the views in turn, mixed within a batch); ages (N,), genders
    (N,) as in CropSource."""

    def __init__(self, views: list[np.ndarray], ages: torch.Tensor, genders: torch.Tensor,
                 device: torch.device) -> None:
        self.views, self.ages, self.genders, self.device = views, ages, genders, device
        self.wait = 0.0

    def __len__(self) -> int:
        return len(self.ages)

    def view_of(self, idx: np.ndarray, epoch: int) -> np.ndarray:
        """Which view each sample reads this epoch: every view in turn, the samples of a batch mixed."""
        return (idx.astype(np.int64) * 7919 + epoch) % len(self.views)

    def batches(self, index_batches: list[torch.Tensor], epoch: int = 0) -> Iterator[Fed]:
        for idx in index_batches:
            t0 = time.time()
            rows = idx.numpy()
            which = self.view_of(rows, epoch)
            x = np.empty((len(rows), *self.views[0].shape[1:]), np.float32)
            for v in np.unique(which):
                x[which == v] = self.views[v][rows[which == v]]
            x = torch.from_numpy(x)
            self.wait += time.time() - t0
            yield idx, x.to(self.device), self.ages[idx].to(self.device), self.genders[idx].to(self.device)
