"""Batch augmentation on torch tensors (CPU or GPU), and the matching plain resize for evaluation.

Input: (B, H, W, 3) uint8 RGB crops. Output: (B, 3, S, S) float32 in 0..255, RGB.
Geometric jitter (scale, shift, rotation, mirror) is one affine warp; then colour jitter, greyscale and
random erasing. Mixup is applied by the training loop, as it mixes labels too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    flip: bool = True
    scale: float = 0.10  # +- relative zoom
    shift: float = 0.06  # +- fraction of the crop side
    rotate: float = 10.0  # +- degrees
    color: float = 0.3  # brightness/contrast/saturation strength (0 = off)
    grayscale: float = 0.05  # probability
    erase: float = 0.0  # random erasing probability
    mixup: float = 0.0  # mixup alpha (0 = off)

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(flip=False, scale=0, shift=0, rotate=0, color=0, grayscale=0, erase=0, mixup=0)


def _affine(b: int, cfg: AugmentConfig, device: torch.device, gen: torch.Generator | None) -> torch.Tensor:
    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(b, generator=gen, device=device) * (hi - lo) + lo

    s = u(1 - cfg.scale, 1 + cfg.scale)
    r = u(-cfg.rotate, cfg.rotate) * (math.pi / 180)
    tx, ty = u(-cfg.shift, cfg.shift) * 2, u(-cfg.shift, cfg.shift) * 2
    flip = torch.where(torch.rand(b, generator=gen, device=device) < 0.5, -1.0, 1.0) if cfg.flip else torch.ones(
        b, device=device
    )
    cos, sin = torch.cos(r) / s, torch.sin(r) / s
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    return theta


def center_cut_batch(x: torch.Tensor, cut: int) -> torch.Tensor:
    """(B, H, W, 3) -> the central (B, cut, cut, 3) (a narrower margin around the same face centre)."""
    h = x.shape[1]
    if cut >= h:
        return x
    o = (h - cut) // 2
    return x[:, o : o + cut, o : o + cut]


def resize_batch(x: torch.Tensor, size: int, cut: int = 0) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, size, size) float 0..255 (centre `cut` pixels if given, area resize; no
    augmentation)."""
    if cut:
        x = center_cut_batch(x, cut)
    x = x.permute(0, 3, 1, 2).float()
    if x.shape[-1] == size and x.shape[-2] == size:
        return x.contiguous()
    return F.interpolate(x, size=(size, size), mode="area" if x.shape[-1] > size else "bilinear",
                         align_corners=None if x.shape[-1] > size else False)


def augment_batch(x: torch.Tensor, size: int, cfg: AugmentConfig, gen: torch.Generator | None = None,
                  cut: int = 0) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> augmented (B, 3, size, size) float 0..255. cut: the model sees the central
    `cut` pixels of each crop (0: all of it); the jitter may then reach into the context around them."""
    b = x.shape[0]
    dev = x.device
    geometric = bool(cfg.scale or cfg.shift or cfg.rotate or cfg.flip)
    zoom = cut / x.shape[1] if cut and cut < x.shape[1] else 1.0
    if geometric and zoom < 1.0:
        img = resize_batch(x, round(size / zoom))
    else:
        img = resize_batch(x, size, cut)
    if geometric:
        theta = _affine(b, cfg, dev, gen)
        theta[:, :, :2] *= zoom
        grid = F.affine_grid(theta, [b, 3, size, size], align_corners=False)  # samples any input size
        img = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.color > 0:
        c = cfg.color

        def u(lo: float, hi: float) -> torch.Tensor:
            return (torch.rand(b, 1, 1, 1, generator=gen, device=dev) * (hi - lo) + lo)

        grey = (img * torch.tensor([0.299, 0.587, 0.114], device=dev).view(1, 3, 1, 1)).sum(1, keepdim=True)
        img = grey + (img - grey) * u(1 - c, 1 + c)  # saturation
        mean = img.mean(dim=(1, 2, 3), keepdim=True)
        img = mean + (img - mean) * u(1 - c, 1 + c)  # contrast
        img = img * u(1 - c, 1 + c)  # brightness
    if cfg.grayscale > 0:
        pick = (torch.rand(b, 1, 1, 1, generator=gen, device=dev) < cfg.grayscale).float()
        grey = (img * torch.tensor([0.299, 0.587, 0.114], device=dev).view(1, 3, 1, 1)).sum(1, keepdim=True)
        img = pick * grey.expand_as(img) + (1 - pick) * img
    if cfg.erase > 0:
        img = random_erase(img, cfg.erase, gen)
    return img.clamp_(0, 255)


def random_erase(img: torch.Tensor, p: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """Replace a random rectangle (2-25% of the area, aspect 0.3-3.3) with noise, with probability p."""
    b, _, h, w = img.shape
    dev = img.device
    area = (torch.rand(b, generator=gen, device=dev) * 0.23 + 0.02) * h * w
    logr = (torch.rand(b, generator=gen, device=dev) * 2 - 1) * math.log(3.3)
    ratio = torch.exp(logr)
    eh = torch.sqrt(area * ratio).clamp(1, h).long()
    ew = torch.sqrt(area / ratio).clamp(1, w).long()
    y0 = (torch.rand(b, generator=gen, device=dev) * (h - eh + 1).float()).long()
    x0 = (torch.rand(b, generator=gen, device=dev) * (w - ew + 1).float()).long()
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    mask = (ys >= y0.view(b, 1, 1)) & (ys < (y0 + eh).view(b, 1, 1)) & (xs >= x0.view(b, 1, 1)) & (
        xs < (x0 + ew).view(b, 1, 1))
    mask &= (torch.rand(b, generator=gen, device=dev) < p).view(b, 1, 1)
    noise = torch.rand(img.shape, generator=gen, device=dev) * 255
    return torch.where(mask.unsqueeze(1), noise, img)
