from pathlib import Path

import numpy as np
import pytest

from agegender.align import box_crop_window, crop_face, similarity_transform, template_points, to_network_input
from agegender.types import Detection, Preprocessing


def test_similarity_transform_recovers_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    ang, s, t = 0.3, 1.7, np.array([5.0, -3.0])
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = src @ (s * r).T + t
    m = similarity_transform(src, dst)
    assert np.allclose(m[:, :2], s * r, atol=1e-9) and np.allclose(m[:, 2], t, atol=1e-9)
    with pytest.raises(ValueError):
        similarity_transform(np.zeros((5, 2)), dst)


def test_align_crop_puts_landmarks_on_template():
    prep = Preprocessing(size=112, margin=0.25)
    image = np.zeros((400, 300, 3), np.uint8)
    lm = template_points(112, 0.25) * 1.5 + np.array([40.0, 60.0])  # the face, 1.5x larger, shifted
    for x, y in lm.astype(int):
        image[y - 1 : y + 2, x - 1 : x + 2] = 255
    crop = crop_face(image, Detection((0, 0, 10, 10), 1.0, lm.astype(np.float32)), prep)
    assert crop.shape == (112, 112, 3)
    for x, y in template_points(112, 0.25):
        assert crop[int(round(y)), int(round(x))].max() > 100


def test_box_crop_matches_original_demo_window():
    assert box_crop_window((100, 100, 200, 150), 0.4, 1000, 1000) == (60, 80, 241, 171)
    assert box_crop_window((0, 0, 50, 50), 0.4, 60, 60) == (0, 0, 60, 60)  # clipped to the image
    prep = Preprocessing(crop="box", margin=0.4, size=64)
    img = np.full((300, 300, 3), 7, np.uint8)
    assert crop_face(img, Detection((100, 100, 200, 200), 1.0), prep).shape == (64, 64, 3)


def test_network_input_normalisation_and_colour_order():
    crops = np.zeros((2, 8, 8, 3), np.uint8)
    crops[..., 0] = 255  # red
    rgb = to_network_input(crops, Preprocessing(size=8))
    assert rgb.shape == (2, 3, 8, 8) and np.allclose(rgb[:, 0], 1.0) and np.allclose(rgb[:, 2], -1.0)
    bgr = to_network_input(crops, Preprocessing(size=8, color="BGR", mean=(0, 0, 0), std=(1, 1, 1)))
    assert np.allclose(bgr[:, 2], 255) and np.allclose(bgr[:, 0], 0)


def test_crop_size_cuts_larger_then_area_resizes_like_training(utk_subset):
    """A model trained on 112 px prepared crops area-resized to 64 (crop_size=112) gets the same at inference:
    on real UTKFace faces that is about twice as close to an alias-free reference as warping to 64 directly."""
    import cv2

    from agegender.detectors import create_detector
    from agegender.imageio import load_image

    det = create_detector("retinaface")
    small, via = Preprocessing(size=64), Preprocessing(size=64, crop_size=112)
    for path in sorted((utk_subset / "images").glob("*.jpg"))[:6]:
        image = load_image(path)
        face = det.detect(image)[0]
        crop = crop_face(image, face, via)
        assert crop.shape == (64, 64, 3)
        trained_on = cv2.resize(crop_face(image, face, Preprocessing(size=112)), (64, 64), interpolation=cv2.INTER_AREA)
        assert np.array_equal(crop, trained_on)
        big = crop_face(image, face, Preprocessing(size=512))
        ref = cv2.resize(big, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float64)
        err_direct = np.abs(crop_face(image, face, small) - ref).mean()
        err_via = np.abs(crop.astype(np.float64) - ref).mean()
        assert err_via < 0.75 * err_direct, (path.name, err_via, err_direct)
    with pytest.raises(ValueError):
        Preprocessing(size=64, crop_size=4)


def test_network_input_is_exactly_the_float_formula_for_every_builtin_model():
    """The fast path (bytes reordered first, normalised in place) gives bit for bit what converting to float
    first gives, for each built-in model's preprocessing, on crops of a real photo (contiguous or not)."""
    from agegender.imageio import load_image
    from agegender.models.estimator import builtin_models, load_estimator

    photo = load_image(Path(__file__).resolve().parents[1] / "src/agegender/assets/example.jpg")
    for name in builtin_models():
        prep = load_estimator(name).preprocessing
        s = prep.size
        crops = np.stack([photo[y : y + s, x : x + s] for y, x in ((0, 0), (40, 70), (90, 20))])
        for batch in (crops, crops[:, ::-1, ::2].repeat(2, axis=2)):  # the second is a strided view
            x = batch.astype(np.float32)
            if prep.color == "BGR":
                x = x[..., ::-1]
            want = ((x - np.float32(prep.mean)) / np.float32(prep.std)).transpose(0, 3, 1, 2)
            got = to_network_input(batch, prep)
            assert got.dtype == np.float32 and got.flags.c_contiguous and np.array_equal(got, want), name
