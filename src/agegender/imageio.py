"""Reading images from files or bytes into RGB uint8 arrays, safely.

Handles EXIF orientation, greyscale/alpha/palette/16-bit/CMYK modes, and refuses decompression bombs.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Largest image accepted, in decoded pixels (about 11k x 11k, 360 MB as RGB); larger files are refused from
#: their header, before decoding (decompression bombs). Kept below Pillow's own bomb limit (~179 M pixels).
MAX_PIXELS = 120_000_000

#: Largest image file read, in bytes (an uncompressed 16-bit RGB TIFF at MAX_PIXELS is about 720 MB).
MAX_FILE_BYTES = 1 << 30

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


class ImageLoadError(ValueError):
    """An input could not be read as an image; the message says why in one line."""


class ImageTooLargeError(ImageLoadError):
    """The image (or its file) is over a size limit: refused before decoding."""


class NotAnImageError(ImageLoadError):
    """The bytes are not in any image format we read."""


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Convert any PIL mode to an (H, W, 3) uint8 RGB array; alpha is composited on white."""
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        hi = float(arr.max()) if arr.size else 0.0
        if img.mode.startswith("I;16"):
            full = 65535.0  # 16-bit: the full range is 0..65535, whatever this image's brightest pixel
        elif img.mode == "I":
            full = 65535.0 if hi > 255 else 255.0  # 32-bit ints: 16-bit data if it exceeds 8 bits
        else:
            full = hi if hi > 1.0 else 1.0  # floats: 0..1, else scaled by the maximum
        arr = np.clip(arr * (255.0 / full) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


def decode_image(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes to an (H, W, 3) uint8 RGB array with EXIF orientation applied.

    Raises ImageLoadError with a one-line reason for anything that is not a decodable image.
    """
    if not data:
        raise ImageLoadError(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise ImageTooLargeError(f"{name}: image of {w}x{h} pixels exceeds the limit of {max_pixels} pixels")
            img.load()
            img = _exif_upright(img)
            return _to_rgb(img)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise NotAnImageError(f"{name}: not an image (unrecognised or unsupported format)") from None
    except Image.DecompressionBombError:
        raise ImageTooLargeError(f"{name}: image exceeds the limit of {max_pixels} pixels") from None
    except MemoryError:
        raise ImageLoadError(f"{name}: not enough memory to decode this image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = " ".join(str(exc).split())
        if "truncat" in text.lower():
            raise ImageLoadError(f"{name}: truncated image (the file ends early; incomplete download?)") from None
        raise ImageLoadError(f"{name}: corrupt image ({text})") from None


def _exif_upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag (phone photos); a broken EXIF block leaves the image as stored."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - malformed EXIF must not make a readable image unreadable
        return img


def load_image(path: str | os.PathLike[str], max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file to an (H, W, 3) uint8 RGB array (EXIF orientation applied)."""
    p = Path(path)
    try:
        st = p.stat()
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(st.st_mode):  # a pipe or device could block or never end
            raise ImageLoadError(f"{p}: not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise ImageTooLargeError(f"{p}: file of {st.st_size} bytes exceeds the limit of {MAX_FILE_BYTES} bytes")
        data = p.read_bytes()
    except FileNotFoundError:
        raise ImageLoadError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ImageLoadError(f"{p}: is a directory") from None
    except OSError as exc:
        raise ImageLoadError(f"{p}: cannot read ({exc.strerror})") from None
    return decode_image(data, str(p), max_pixels=max_pixels)


def save_image(path: str | os.PathLike[str], rgb: np.ndarray, quality: int = 92) -> None:
    """Write an RGB uint8 array atomically (temporary file, then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    suffix = p.suffix.lower()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP"}.get(suffix, "PNG")
    tmp = p.with_name(f".{p.name}.tmp")
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(rgb).save(tmp, format=fmt, **kwargs)
    os.replace(tmp, p)


def is_image_path(path: str | os.PathLike[str]) -> bool:
    return str(path).lower().endswith(IMAGE_SUFFIXES)
