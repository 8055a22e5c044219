"""Where training batches come from: crops held in memory, or streamed from disk by worker processes.

Both yield (images (B, S, S, 3) uint8, ages (B,) float with NaN unknown, genders (B,) long with -1 unknown)
for a given list of sample indices, so the loop does not care which one it has.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..align import resize_square
from ..imageio import load_image

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def read_crop(path: Path, size: int) -> np.ndarray:
    """One stored crop as (size, size, 3) uint8 RGB."""
    return resize_square(load_image(path), size)


class CropSource:
    """Labelled crops of one split: paths, ages (N,), genders (N,), stored crop side."""

    def __init__(self, paths: list[Path], ages: np.ndarray, genders: np.ndarray, size: int) -> None:
        self.paths, self.size = paths, size
        self.ages = torch.from_numpy(np.asarray(ages, np.float32))
        self.genders = torch.from_numpy(np.asarray(genders, np.int64))
        self.images: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def load_all(self, desc: str, progress: bool, device: torch.device | None = None) -> None:
        """Decode every crop once into an (N, S, S, 3) uint8 tensor (on `device` if given)."""
        out = np.empty((len(self), self.size, self.size, 3), np.uint8)
        for i in tqdm(range(len(self)), desc=desc, unit="img", disable=not progress, mininterval=1.0):
            out[i] = read_crop(self.paths[i], self.size)
        t = torch.from_numpy(out)
        self.images = t.to(device) if device is not None and device.type == "cuda" else t

    def batches(self, index_batches: list[torch.Tensor], workers: int = 0, pin: bool = False) -> Iterator[Batch]:
        """Yield one batch per index tensor, in order."""
        if self.images is not None:
            for idx in index_batches:
                yield self.images[idx.to(self.images.device)], self.ages[idx], self.genders[idx]
            return
        loader = torch.utils.data.DataLoader(
            _StreamDataset(self), batch_sampler=[idx.tolist() for idx in index_batches], num_workers=workers,
            pin_memory=pin, collate_fn=_collate, persistent_workers=False,
        )
        yield from loader


class _StreamDataset(torch.utils.data.Dataset):
    def __init__(self, src: CropSource) -> None:
        self.paths, self.size = src.paths, src.size
        self.ages, self.genders = src.ages, src.genders

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, float, int]:
        return read_crop(self.paths[i], self.size), float(self.ages[i]), int(self.genders[i])


def _collate(items: list[tuple[np.ndarray, float, int]]) -> Batch:
    imgs = torch.from_numpy(np.stack([it[0] for it in items]))
    ages = torch.tensor([it[1] for it in items], dtype=torch.float32)
    genders = torch.tensor([it[2] for it in items], dtype=torch.int64)
    return imgs, ages, genders


def index_checksum(idx: torch.Tensor) -> float:
    """An order-free fingerprint of which samples a batch holds (summed over batches and ranks)."""
    return float(((idx.double() * 2654435761.0) % 2147483647.0).sum())
