"""Per-image augmentations that make a stored face crop look as if another camera, scanner or detector had
produced it: crop jitter (a different detector's box), JPEG re-compression, blur, down-then-up scaling,
greyscale and sepia (old prints), strong lighting (gamma, contrast, colour cast) and sensor noise.

Works on one (H, W, 3) uint8 RGB crop with NumPy and OpenCV, so it serves both paths of training: the
cached views of the CPU recipe (`training/frozen.py`) and, through `camera_batch`, any batch of crops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32)


@dataclass(frozen=True)
class CameraAugment:
    """Probabilities (p_*) and strengths; `none()` turns every one off.

    jitter_scale / jitter_shift / jitter_rotate: the crop window's relative zoom, shift (fraction of the
    side) and rotation (degrees), as a different detector's box would move it; flip: mirror half the views.
    """

    flip: bool = True
    jitter_scale: float = 0.10
    jitter_shift: float = 0.06
    jitter_rotate: float = 8.0
    p_jpeg: float = 0.4
    jpeg_quality: tuple[int, int] = (25, 90)
    p_blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 1.8)
    p_downscale: float = 0.3
    downscale: tuple[float, float] = (0.25, 0.7)
    p_grey: float = 0.1
    p_sepia: float = 0.05
    p_light: float = 0.5
    light: float = 0.4
    p_noise: float = 0.15
    noise_sigma: float = 6.0

    @classmethod
    def from_dict(cls, d: dict) -> CameraAugment:
        """From JSON (args.json, --camera-options): its lists become the ranges' tuples; an unknown field
        raises TypeError."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    @classmethod
    def none(cls) -> CameraAugment:
        return cls(flip=False, jitter_scale=0, jitter_shift=0, jitter_rotate=0, p_jpeg=0, p_blur=0, p_downscale=0,
                   p_grey=0, p_sepia=0, p_light=0, p_noise=0)


def jitter(img: np.ndarray, rng: np.random.Generator, cfg: CameraAugment) -> np.ndarray:
    """Move, zoom, rotate (and maybe mirror) the crop window; the border is replicated as crops are."""
    h, w = img.shape[:2]
    s = 1.0 + rng.uniform(-cfg.jitter_scale, cfg.jitter_scale)
    angle = rng.uniform(-cfg.jitter_rotate, cfg.jitter_rotate)
    tx, ty = rng.uniform(-cfg.jitter_shift, cfg.jitter_shift, 2) * (w, h)
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, s)
    m[:, 2] += (tx, ty)
    if cfg.flip and rng.random() < 0.5:
        m = np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0.0, 0.0, 1.0]])
    if not (cfg.jitter_scale or cfg.jitter_shift or cfg.jitter_rotate) and m[0, 0] > 0:
        return img
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def recompress(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1] if ok else img


def down_up(img: np.ndarray, factor: float) -> np.ndarray:
    """Lose detail as a low-resolution camera or a small face in a big photo would: shrink, then enlarge."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(8, round(w * factor)), max(8, round(h * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def lighting(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Gamma, contrast, brightness and a colour cast, each within +-strength (relative)."""
    x = img.astype(np.float32) / 255.0
    x = x ** math.exp(rng.uniform(-strength, strength))
    mean = x.mean()
    x = mean + (x - mean) * (1.0 + rng.uniform(-strength, strength))
    x = x * (1.0 + rng.uniform(-strength, strength) * 0.5) * (1.0 + rng.uniform(-strength, strength, 3) * 0.25)
    return np.clip(x * 255.0, 0, 255).astype(np.uint8)


def camera_augment(img: np.ndarray, rng: np.random.Generator, cfg: CameraAugment) -> np.ndarray:
    """One augmented copy of an (H, W, 3) uint8 RGB crop (same size)."""
    out = jitter(img, rng, cfg)
    if rng.random() < cfg.p_light:
        out = lighting(out, rng, cfg.light)
    if rng.random() < cfg.p_grey:
        out = np.repeat(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    elif rng.random() < cfg.p_sepia:
        out = np.clip(out.astype(np.float32) @ SEPIA.T, 0, 255).astype(np.uint8)
    if rng.random() < cfg.p_downscale:
        out = down_up(out, rng.uniform(*cfg.downscale))
    if rng.random() < cfg.p_blur:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(*cfg.blur_sigma))
    if rng.random() < cfg.p_noise:
        out = np.clip(out + rng.normal(0, cfg.noise_sigma, out.shape), 0, 255).astype(np.uint8)
    if rng.random() < cfg.p_jpeg:
        out = recompress(out, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    return np.ascontiguousarray(out)


def camera_batch(crops: np.ndarray, rng: np.random.Generator, cfg: CameraAugment) -> np.ndarray:
    """(N, H, W, 3) uint8 -> augmented copies, each drawn independently."""
    return np.stack([camera_augment(c, rng, cfg) for c in crops]) if len(crops) else crops.copy()
