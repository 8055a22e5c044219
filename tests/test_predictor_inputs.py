"""What `Predictor.predict` takes besides a path, each checked against the same photo read from its file:
encoded bytes and binary file objects (lazily decoded, as a file is), PIL images (upright by their EXIF
orientation, as the file is), grey and RGBA arrays (as a grey or RGBA file is read); and a clear error for
what is not an image."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import agegender
from agegender import Predictor
from agegender.imageio import ImageLoadError

EXAMPLE = Path(agegender.__file__).parent / "assets" / "example.jpg"


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor()


def answer(result) -> list[tuple]:
    """What a result says, to compare: (box, age, gender, probability) of each face, and the image's size."""
    return [(result.width, result.height)] + [(tuple(f.detection.box), f.age, f.gender, f.gender_probability)
                                              for f in result.faces]


@pytest.fixture(scope="module")
def turned_jpeg(tmp_path_factory) -> Path:
    """The example portrait stored turned a quarter, with EXIF orientation 6 saying how to show it upright."""
    path = tmp_path_factory.mktemp("turned") / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(EXAMPLE).transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)
    return path


def test_bytes_file_objects_and_pil_images_read_as_the_file(predictor, turned_jpeg):
    for path in (EXAMPLE, turned_jpeg):
        want = answer(predictor.predict(path))
        assert len(want) == 2 and want[0] == (512, 512)  # upright: one face, the displayed size
        data = path.read_bytes()
        with open(path, "rb") as f:
            from_file_object = predictor.predict(f)
        for source in (data, bytearray(data), memoryview(data), io.BytesIO(data), Image.open(path)):
            assert answer(predictor.predict(source)) == want, (path.name, type(source).__name__)
        assert answer(from_file_object) == want and from_file_object.image == str(path)
    assert predictor.predict(Image.open(turned_jpeg)).image == str(turned_jpeg)


def test_grey_and_rgba_arrays_read_as_those_files(predictor, tmp_path):
    rgb = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    grey = np.asarray(Image.open(EXAMPLE).convert("L"))
    alpha = np.full(grey.shape, 255, np.uint8)
    alpha[:, :100] = 0  # a transparent strip: composited on white, as a PNG with alpha is read
    rgba = np.dstack([rgb, alpha])
    for name, array in (("grey", grey), ("rgba", rgba)):
        Image.fromarray(array).save(tmp_path / f"{name}.png")
        want = answer(predictor.predict(tmp_path / f"{name}.png"))
        assert len(want) == 2
        assert answer(predictor.predict(array)) == want, name
        assert answer(predictor.predict_array(array)) == want, name
    assert answer(predictor.predict(grey[..., None])) == answer(predictor.predict(grey))


def test_what_is_not_an_image_gets_a_clear_error(predictor):
    rgb = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    with pytest.raises(ValueError, match=r"uint8 image with values 0\.\.255, got float32 \(for values in 0\.\.1"):
        predictor.predict(rgb / np.float32(255))
    with pytest.raises(ValueError, match=r"\(H, W, 4\) RGBA uint8 image, got \(512, 512, 2\)"):
        predictor.predict(rgb[..., :2])
    with pytest.raises(TypeError, match="binary mode"), open(EXAMPLE, encoding="latin-1") as text:
        predictor.predict(text)
    with pytest.raises(TypeError, match="got list"):
        predictor.predict(rgb.tolist())
    with pytest.raises(ImageLoadError, match="not an image"):
        predictor.predict(b"hello, not a photo")
