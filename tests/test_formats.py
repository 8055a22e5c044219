"""What a file's first bytes say it is (agegender.formats), on real files of each kind: HEIC from a phone-like
encoder (tests/fixtures), videos written by OpenCV's FFmpeg, AVIF and the common formats written by Pillow."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, features

from agegender.formats import sniff, unreadable_reason
from agegender.imageio import NotAnImageError, decode_image

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)


def test_heic_fixture_is_heif():
    assert sniff((FIXTURES / "phone_photo.heic").read_bytes()) == "heif"


@pytest.mark.parametrize("suffix, fourcc", [(".mp4", "mp4v"), (".mov", "mp4v"), (".avi", "MJPG"), (".mkv", "mp4v")])
def test_videos_are_videos(tmp_path, frame, suffix, fourcc):
    path = tmp_path / f"clip{suffix}"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (frame.shape[1], frame.shape[0]))
    for _ in range(3):
        writer.write(frame)
    writer.release()
    data = path.read_bytes()
    assert len(data) > 1000, "OpenCV wrote no video"
    assert sniff(data) == "video"
    with pytest.raises(NotAnImageError, match=r"^clip: a video, not an image \(agegender demo --video"):
        decode_image(data, "clip")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP"])
def test_formats_pillow_reads_are_not_flagged(frame, fmt):
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format=fmt)
    assert sniff(buf.getvalue()) is None


def test_avif_is_avif_and_read_where_pillow_can(frame):
    if features.check("avif"):
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="AVIF", quality=95)
        assert sniff(buf.getvalue()) == "avif"
        assert decode_image(buf.getvalue()).shape == frame.shape  # Pillow's own AVIF reader
    # an AV1 still under the generic 'mif1' major brand is AVIF too, not HEVC-coded HEIF
    header = b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00avifmiaf"
    assert sniff(header) == "avif"
    assert unreadable_reason("avif").startswith("AVIF image: this Pillow build cannot decode AVIF")


def test_short_and_other_bytes_are_nothing_in_particular():
    for data in (b"", b"\x00\x00\x00", b"hello world, not a file format", np.random.default_rng(1).bytes(4000)):
        assert sniff(data) is None
    assert unreadable_reason(None) == "not an image (unrecognised or unsupported format)"
