"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.schemathesis_hooks): what a valid body of each image type is.

JSON Schema can say "binary string" but not "bytes that decode as a PNG"; schemathesis asks for a strategy
per media type for that. These draw real images (random size, random pixels, some with alpha or grey)
encoded in the named format, so that schema-valid requests are valid requests and the server must
answer them with 200; schemathesis' own negative cases (wrong types, bad parameters, missing body)
still come from the schema. AVIF is drawn like the others where this Pillow encodes it; HEIC/HEIF bodies
are the phone photo in tests/fixtures (no encoder is installed for them: pi-heif only decodes), and the
server's schema names them only where it has a HEIF reader.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import schemathesis
from hypothesis import strategies as st
from PIL import Image, features

FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP", "image/bmp": "BMP",
           "image/gif": "GIF", "image/tiff": "TIFF", **({"image/avif": "AVIF"} if features.check("avif") else {})}
HEIC = (Path(__file__).resolve().parent / "fixtures" / "phone_photo.heic").read_bytes()


def encoded_images(fmt: str) -> st.SearchStrategy[bytes]:
    """Real images of 1..96 x 1..96 pixels in `fmt` (a Pillow format name), from drawn pixels."""

    @st.composite
    def draw_image(draw: st.DrawFn) -> bytes:
        w, h = draw(st.integers(1, 96)), draw(st.integers(1, 96))
        mode = draw(st.sampled_from(["RGB", "L"] + (["RGBA"] if fmt in ("PNG", "WEBP", "TIFF") else [])))
        seed = draw(st.integers(0, 2**32 - 1))
        channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
        pixels = np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels[..., 0] if mode == "L" else pixels).save(buf, format=fmt)  # mode from the shape
        return buf.getvalue()

    return draw_image()


for media_type, fmt in FORMATS.items():
    schemathesis.openapi.media_type(media_type, encoded_images(fmt))
for media_type in ("image/heic", "image/heif"):
    schemathesis.openapi.media_type(media_type, st.just(HEIC))
schemathesis.openapi.media_type("application/octet-stream", st.one_of(*map(encoded_images, FORMATS.values())))
