"""What a file's first bytes say it is, when Pillow cannot open it; and the optional HEIC/HEIF reader.

Pillow reads JPEG, PNG, WebP, TIFF, BMP and GIF itself (and AVIF in builds that carry libavif). Phone
photos in HEIC/HEIF need a plugin: pi-heif (the `heif` extra; pillow-heif works too), registered with
Pillow the first time such a file is seen, so that nothing is imported for the other formats. Videos are
recognised only to say what reads them instead. Image-ops layer: imports only the standard library and
`extras` (the HEIF reader when a HEIF file needs it).
"""

from __future__ import annotations

import importlib
from typing import Literal

from .extras import MissingExtra

Kind = Literal["heif", "avif", "video"]

#: ISO base media file format (the `ftyp` box at byte 4): brands of still images in HEIF (HEVC-coded, and
#: the generic image brands) and in AVIF (AV1-coded); any other brand in such a box is a video (MP4, MOV, 3GP)
HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1",
                         b"msf1", b"mif2"})
AVIF_BRANDS = frozenset({b"avif", b"avis"})

#: modules that register a HEIF opener with Pillow, in the order tried (pi-heif decodes only, and its wheel
#: holds no GPL encoder; pillow-heif is its larger sibling)
HEIF_MODULES = ("pi_heif", "pillow_heif")

_heif_registered = False


def _brands(data: bytes) -> set[bytes]:
    """The major and compatible brands of an `ftyp` box at the start of `data` (empty if there is none)."""
    if len(data) < 12 or data[4:8] != b"ftyp":
        return set()
    size = int.from_bytes(data[:4], "big")
    end = min(len(data), size) if size >= 16 else min(len(data), 16)
    return {data[8:12], *(data[i:i + 4] for i in range(16, end - 3, 4))}


def sniff(data: bytes) -> Kind | None:
    """'heif', 'avif' or 'video' from the first bytes of a file in a container Pillow may not read; None for
    anything else (including every format Pillow identifies by itself)."""
    brands = _brands(data)
    if brands:
        if data[8:12] in AVIF_BRANDS or (brands & AVIF_BRANDS and data[8:12] in HEIF_BRANDS):
            return "avif"  # 'mif1' major brand with 'avif' compatible: an AV1 still, not HEVC
        return "heif" if brands & HEIF_BRANDS else "video"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "video"
    if data[:4] in (b"\x1a\x45\xdf\xa3", b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3") or data[:3] == b"FLV":
        return "video"  # Matroska/WebM, MPEG program stream, MPEG-1/2 video, Flash video
    if len(data) > 376 and data[0] == data[188] == data[376] == 0x47:
        return "video"  # MPEG transport stream: a sync byte every 188 bytes
    return None


def enable_heif() -> bool:
    """Register a HEIF reader with Pillow (the first of HEIF_MODULES that imports), once per process.
    False when none is installed."""
    global _heif_registered
    if _heif_registered:
        return True
    for name in HEIF_MODULES:
        try:
            module = importlib.import_module(name)
        except (ImportError, OSError):  # not installed, or its bundled library does not load here
            continue
        module.register_heif_opener()
        _heif_registered = True
        return True
    return False


def avif_decodes() -> bool:
    """Whether the installed Pillow decodes AVIF (its wheels carry libavif from Pillow 11.2 on)."""
    from PIL import features

    try:
        return bool(features.check("avif"))
    except ValueError:  # a Pillow older than its AVIF support does not know the feature's name
        return False


def readable_media_types() -> tuple[str, ...]:
    """The image media types this process can decode: Pillow's own formats, AVIF where the installed Pillow
    decodes it, HEIC/HEIF where a HEIF reader is installed (registering it, as `enable_heif` does)."""
    types = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif", "image/tiff")
    if avif_decodes():
        types += ("image/avif",)
    if enable_heif():
        types += ("image/heic", "image/heif")
    return types


def unreadable_reason(kind: Kind | None) -> str:
    """Why a file of this kind could not be opened, and what to do, in a few words (no file name)."""
    if kind == "heif":
        return str(MissingExtra("pi_heif", purpose="HEIC/HEIF image (phone photo): reading it"))
    if kind == "avif":
        return "AVIF image: this Pillow build cannot decode AVIF (recent Pillow wheels can: pip install -U pillow)"
    if kind == "video":
        return "a video, not an image (agegender demo --video FILE --no-window --jsonl OUT reads videos)"
    return "not an image (unrecognised or unsupported format)"
