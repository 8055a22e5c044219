"""Reading images from files or bytes into RGB uint8 arrays, safely.

Handles EXIF orientation, greyscale/alpha/palette/16-bit/CMYK modes, HEIC/HEIF phone photos (with the
`heif` extra, see `formats`), and refuses decompression bombs.
`decode` is the one decoding rule: a full-size decode, or for JPEG a reduced one (1/2, 1/4, 1/8 in the
DCT domain) when the caller says how many pixels it needs (see `lazyimage` for images decoded that way).
"""

from __future__ import annotations

import io
import os
import stat
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .formats import enable_heif, sniff, unreadable_reason

#: Largest image accepted, in decoded pixels (about 11k x 11k, 360 MB as RGB); larger files are refused from
#: their header, before decoding (decompression bombs). Kept below Pillow's own bomb limit (~179 M pixels).
MAX_PIXELS = 120_000_000

#: Largest image file read, in bytes (an uncompressed 16-bit RGB TIFF at MAX_PIXELS is about 720 MB).
MAX_FILE_BYTES = 1 << 30

#: what a folder is searched for (HEIC/HEIF needs the `heif` extra; a file that cannot be read gets its own
#: one-line error, the rest of the folder still runs)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".heic", ".heif", ".avif")


class ImageLoadError(ValueError):
    """An input could not be read as an image; the message says why in one line."""


class ImageTooLargeError(ImageLoadError):
    """The image (or its file) is over a size limit: refused before decoding."""


class NotAnImageError(ImageLoadError):
    """The bytes are not in any image format we read."""


def _to_rgb(img: Image.Image, writable: bool = True) -> np.ndarray:
    """Convert any PIL mode to an (H, W, 3) uint8 RGB array; alpha is composited on white.

    writable=False may return a read-only array (one copy fewer, for pixels nobody writes to)."""
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
    arr = np.asarray(img, dtype=np.uint8)
    return arr.copy() if writable else arr


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """A PIL image of any mode as an (H, W, 3) uint8 RGB array, upright by its EXIF orientation as the same
    image read from its file would be (alpha composited on white, 16-bit scaled, as for files)."""
    with decoding_errors(getattr(img, "filename", "") or "<PIL image>", MAX_PIXELS):
        img.load()
        return _to_rgb(_exif_upright(img)[0])


def array_to_rgb(image: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array as it is; (H, W) or (H, W, 1) grey and (H, W, 4) RGBA uint8 arrays as
    RGB (alpha composited on white, as for files). ValueError, saying what to pass, for anything else."""
    if image.dtype != np.uint8:
        hint = " (for values in 0..1: (x * 255).round().astype(np.uint8))" if image.dtype.kind == "f" else ""
        raise ValueError(f"expected a uint8 image with values 0..255, got {image.dtype}{hint}")
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 4)):
        return _to_rgb(Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image))
    raise ValueError(f"expected an (H, W, 3) RGB, (H, W) grey or (H, W, 4) RGBA uint8 image, got {image.shape}")


@contextmanager
def decoding_errors(name: str, max_pixels: int) -> Iterator[None]:
    """Turn whatever Pillow raises while opening or decoding `name` into an ImageLoadError with a one-line
    reason (truncated, corrupt, not an image, over the pixel limit, out of memory)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
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


def open_checked(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Parse the header of encoded image bytes (nothing decoded yet) and refuse images over `max_pixels`.

    Call inside `decoding_errors`."""
    if not data:
        raise ImageLoadError(f"{name}: empty file")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        img = _open_unidentified(data, name)
    w, h = img.size
    if w * h > max_pixels:
        raise ImageTooLargeError(f"{name}: image of {w}x{h} pixels exceeds the limit of {max_pixels} pixels")
    return img


def _open_unidentified(data: bytes, name: str) -> Image.Image:
    """Open what Pillow did not identify: a HEIC/HEIF photo once its optional reader is registered; for
    anything else, NotAnImageError saying what the file is (an AVIF this Pillow cannot decode, a video) and
    what reads it."""
    kind = sniff(data)
    if kind == "heif" and enable_heif():
        try:
            return Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise NotAnImageError(f"{name}: a HEIC/HEIF file the installed HEIF reader cannot open") from None
    raise NotAnImageError(f"{name}: {unreadable_reason(kind)}")


@dataclass(frozen=True)
class Decoded:
    """Pixels of a decoded image: (H, W, 3) uint8 RGB, upright (EXIF orientation applied).

    reduction: the image was decoded at 1/reduction of its size in each direction (1: full size; JPEG
        only: 2, 4 or 8, by scaled decoding in the DCT domain). stored_size: (width, height) of the full
        image as stored, before orientation. orientation: the EXIF orientation applied (1: none).
    """

    pixels: np.ndarray
    reduction: int
    stored_size: tuple[int, int]
    orientation: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the full image as displayed."""
        w, h = self.stored_size
        return (h, w) if self.orientation in TRANSPOSING_ORIENTATIONS else (w, h)


#: EXIF orientations that swap width and height
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def decode(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS,
           min_stored_size: tuple[int, int] | None = None, writable: bool = True) -> Decoded:
    """Decode encoded image bytes, upright, to RGB; the one decoding rule of the package.

    min_stored_size: (width, height) in stored orientation the pixels must keep at least; a JPEG is then
    decoded at the largest reduction (1/2, 1/4, 1/8) that keeps them (other formats, and None: full size).
    Raises ImageLoadError with a one-line reason for anything that is not a decodable image.
    """
    with decoding_errors(name, max_pixels):
        img = open_checked(data, name, max_pixels)
        stored = img.size
        reduction = 1
        if min_stored_size is not None:
            need = (max(1, int(min_stored_size[0])), max(1, int(min_stored_size[1])))
            if stored[0] // need[0] >= 2 and stored[1] // need[1] >= 2:  # else: decoded as ever, full size
                box = img.draft(None, need)  # JPEG only: scaled decoding; None for other formats
                if box is not None:
                    reduction = max(1, round(stored[0] / box[1][2]))
        img.load()
        img, orientation = _exif_upright(img)
        return Decoded(_to_rgb(img, writable), reduction, stored, orientation)


def probe(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS) -> tuple[tuple[int, int], int]:
    """(width, height) as stored and the EXIF orientation of encoded image bytes, from the header alone
    (nothing decoded; ImageLoadError for an empty, unrecognised or over-limit image)."""
    with decoding_errors(name, max_pixels):
        img = open_checked(data, name, max_pixels)
        try:
            orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
        except Exception:  # noqa: BLE001 - malformed EXIF: the image is used as stored
            orientation = 1
        return img.size, int(orientation) if orientation in range(2, 9) else 1


def decode_image(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes to an (H, W, 3) uint8 RGB array with EXIF orientation applied.

    Raises ImageLoadError with a one-line reason for anything that is not a decodable image.
    """
    return decode(data, name, max_pixels).pixels


def _exif_upright(img: Image.Image) -> tuple[Image.Image, int]:
    """Apply the EXIF orientation tag (phone photos); returns the image and the orientation applied.
    A broken EXIF block leaves the image as stored (orientation 1)."""
    try:
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
        if orientation not in range(2, 9):
            return img, 1  # nothing to turn (exif_transpose would return an identical copy)
        return ImageOps.exif_transpose(img), int(orientation)
    except Exception:  # noqa: BLE001 - malformed EXIF must not make a readable image unreadable
        return img, 1


#: the path that names standard input (`agegender predict -`; a file named "-" is "./-")
STDIN = "-"


def read_image_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of an image file, refusing what must not be read: a directory, a pipe or device, a file
    over MAX_FILE_BYTES, a missing or unreadable file (ImageLoadError with a one-line reason). The path
    "-" reads standard input to its end instead (an image piped in)."""
    if isinstance(path, str) and path == STDIN:
        return _read_stdin()
    p = Path(path)
    try:
        st = p.stat()
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(st.st_mode):  # a pipe or device could block or never end
            raise ImageLoadError(f"{p}: not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise ImageTooLargeError(f"{p}: file of {st.st_size} bytes exceeds the limit of {MAX_FILE_BYTES} bytes")
        return p.read_bytes()
    except FileNotFoundError:
        raise ImageLoadError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ImageLoadError(f"{p}: is a directory") from None
    except OSError as exc:
        raise ImageLoadError(f"{p}: cannot read ({exc.strerror})") from None


def _read_stdin() -> bytes:
    data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ImageTooLargeError(f"{STDIN}: standard input exceeds the limit of {MAX_FILE_BYTES} bytes")
    return data


def load_image(path: str | os.PathLike[str], max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file to an (H, W, 3) uint8 RGB array (EXIF orientation applied)."""
    return decode_image(read_image_file(path), str(Path(path)), max_pixels=max_pixels)


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
