"""Photo conditions for `accuracy.py --corrupt`: the same image, as another camera, printer or scanner
would have delivered it, so that every system is measured on the same degraded pixels.

They stand in for photos we do not have labelled (old scanned prints, web thumbnails, dim rooms). They are
written here, apart from training's `camera_augment`, with their own strengths: our models were trained
with augmentations of the same kinds (JPEG, blur, down-up scaling, grey, sepia, lighting, noise), the peers
were not, which the README says next to the numbers.

Each function maps one (H, W, 3) uint8 RGB image to another of the same shape; the noise is drawn from a
generator seeded by the file's name, so every system and every run sees the same pixels. Sizes are relative
to the image (a blur of 0.6% of its shorter side), so a 200 px UTKFace file and a 1800 px portrait are
degraded alike relative to the face.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image, ImageFilter

from agegender.training.camera import SEPIA  # the standard sepia-tone matrix

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _blur(img: np.ndarray, fraction: float) -> np.ndarray:
    radius = max(0.8, fraction * min(img.shape[:2]))
    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius)))


def _down_up(img: np.ndarray, factor: int) -> np.ndarray:
    """1/factor of the size (area average), back up to the same size bilinearly."""
    h, w = img.shape[:2]
    small = Image.fromarray(img).resize((max(1, w // factor), max(1, h // factor)), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.BILINEAR))


def _clip(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def greyscale(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A black-and-white photo: luminance in all three channels."""
    y = img.astype(np.float32) @ LUMA
    return _clip(np.repeat(y[..., None], 3, axis=2))


def old_print(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A scanned old print: sepia toning, faded contrast, soft focus, film grain, JPEG q50."""
    x = img.astype(np.float32) @ SEPIA.T
    x = 0.65 * x + 0.2 * 255
    x = _blur(_clip(x), 0.006).astype(np.float32)
    grain = rng.normal(0.0, 10.0, x.shape[:2]).astype(np.float32)[..., None]
    return _jpeg(_clip(x + grain), 50)


def low_res(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A web thumbnail blown up: a quarter of the size (area average), back up bilinearly, JPEG q40."""
    return _jpeg(_down_up(img, 4), 40)


def dim(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A dim room: darker (gamma 1.8, 0.7x), a warm cast, sensor noise, JPEG q70."""
    x = 255.0 * (img.astype(np.float32) / 255.0) ** 1.8 * 0.7
    x = x * np.array([1.08, 1.0, 0.85], np.float32)
    x = x + rng.normal(0.0, 6.0, x.shape).astype(np.float32)
    return _jpeg(_clip(x), 70)


def _soft(factor: int) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def soft(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _down_up(img, factor)

    soft.__doc__ = f"Less detail, nothing else: 1/{factor} of the size (area average), back up bilinearly, no JPEG."
    return soft


def _tilt(degrees: int) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def tilt(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rotate_whole(img, degrees * float(rng.choice([-1.0, 1.0])))

    tilt.__doc__ = (f"A head tilted by {degrees} degrees, either way (drawn per file): the whole photo turned, on a "
                    "canvas grown to hold it, its edge pixels repeated into the corners.")
    return tilt


def rotate_whole(img: np.ndarray, degrees: float) -> np.ndarray:
    """(H, W, 3) image turned counter-clockwise on screen by `degrees` about its centre, on a canvas grown to
    hold all of it (bilinear, the border replicated into the new corners)."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), degrees, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(round(h * sin + w * cos)), int(round(h * cos + w * sin))
    m[0, 2] += (nw - w) / 2.0
    m[1, 2] += (nh - h) / 2.0
    return cv2.warpAffine(img, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


CORRUPTIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "greyscale": greyscale,
    "old-print": old_print,
    "low-res": low_res,
    "dim": dim,
}
# Probes, by name only (`conditions.py --conditions clean,soft-6,...`), not in the default table: does a model
# read a face older or younger as its fine detail goes? (A 1800 px portrait's face keeps skin detail at the
# network's 140 px that a 200 px web photo lacks.)
PROBES: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    f"soft-{k}": _soft(k) for k in (6, 10, 14)
}
# Tilted heads (`conditions.py --conditions clean,tilt-20,tilt-35`, their own table): people tilt their heads
# in group, news and family photos, where UTKFace's aligned faces and AAF's crops hold few tilted ones.
TILTS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    f"tilt-{d}": _tilt(d) for d in (20, 35)
}
ALL_CONDITIONS = {**CORRUPTIONS, **PROBES, **TILTS}


def corrupt(name: str, img: np.ndarray, key: str) -> np.ndarray:
    """`img` under the named condition; `key` (the file's path) seeds its noise."""
    try:
        fn = ALL_CONDITIONS[name]
    except KeyError:
        raise ValueError(f"unknown corruption {name!r}; choose from {', '.join(ALL_CONDITIONS)}") from None
    return fn(np.ascontiguousarray(img), np.random.default_rng(zlib.crc32(key.encode())))
