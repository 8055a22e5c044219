"""Property-based tests (Hypothesis) of the pure geometry: the detector's resize/pad mapping and its inverse,
face selection, and the crop geometry of `agegender.align`."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agegender.align import box_crop_window, crop_face, crop_matrix, similarity_transform
from agegender.detectors.base import select_faces
from agegender.detectors.retinaface import detection_geometry
from agegender.types import Detection, Preprocessing

sides = st.integers(1, 60_000)
max_sides = st.integers(32, 2048)
pads = st.floats(0.0, 0.5)


@given(w=sides, h=sides, max_side=max_sides, pad=pads)
def test_detection_geometry_fits_and_never_upscales(w, h, max_side, pad):
    g = detection_geometry(w, h, max_side, pad)
    assert 1 <= g.small_w <= w and 1 <= g.small_h <= h
    assert g.canvas_w % 32 == 0 and g.canvas_h % 32 == 0
    assert g.canvas_w >= g.small_w + 2 * g.pad_px and g.canvas_h >= g.small_h + 2 * g.pad_px
    if (g.small_w, g.small_h) != (w, h):  # downscaled: the padded longer side fits max_side (+ rounding)
        assert max(g.small_w, g.small_h) + 2 * g.pad_px <= max_side + 2
    # a long thin image is not squeezed to nothing: each side keeps at least one pixel
    assert g.canvas_w - 2 * g.pad_px >= 1 and g.canvas_h - 2 * g.pad_px >= 1


@given(w=st.integers(1, 5000), h=st.integers(1, 5000), max_side=st.integers(32, 4096), pad=pads,
       max_scale=st.floats(1.0, 2.0), fx=st.floats(0, 1), fy=st.floats(0, 1))
def test_an_enlarging_pass_fills_max_side_within_max_scale_and_maps_back(w, h, max_side, pad, max_scale, fx, fy):
    g = detection_geometry(w, h, max_side, pad, max_scale)
    plain = detection_geometry(w, h, max_side, pad)
    assert g.small_w >= plain.small_w and g.small_h >= plain.small_h  # never smaller than without enlarging
    assert g.small_w <= round(w * max_scale) + 1 and g.small_h <= round(h * max_scale) + 1
    assert max(g.small_w, g.small_h) + 2 * g.pad_px <= max(max_side + 2, max(plain.small_w, plain.small_h) + 2
                                                           * plain.pad_px)
    canvas_pt = np.array([g.pad_px + fx * g.small_w, g.pad_px + fy * g.small_h])
    back = g.points_to_image(canvas_pt).astype(np.float64)
    assert math.isclose(back[0], fx * w, rel_tol=1e-5, abs_tol=1e-2)
    assert math.isclose(back[1], fy * h, rel_tol=1e-5, abs_tol=1e-2)


@given(w=sides, h=sides, max_side=max_sides, pad=pads, fx=st.floats(0, 1), fy=st.floats(0, 1))
def test_canvas_points_map_back_to_the_same_place_in_the_image(w, h, max_side, pad, fx, fy):
    """A point at a fraction (fx, fy) of the resized image maps back to the same fraction of the original,
    on each axis separately (the two axes may be scaled differently after rounding)."""
    g = detection_geometry(w, h, max_side, pad)
    canvas_pt = np.array([g.pad_px + fx * g.small_w, g.pad_px + fy * g.small_h])
    back = g.points_to_image(canvas_pt).astype(np.float64)
    assert math.isclose(back[0], fx * w, rel_tol=1e-5, abs_tol=1e-2 * max(1.0, w / 1000))
    assert math.isclose(back[1], fy * h, rel_tol=1e-5, abs_tol=1e-2 * max(1.0, h / 1000))
    again = g.image_to_canvas(g.points_to_image(canvas_pt).astype(np.float64))
    assert np.allclose(again, canvas_pt, atol=1e-2 + 1e-6 * max(w, h))


@given(w=st.integers(2, 5000), h=st.integers(2, 5000), max_side=max_sides, pad=pads,
       box=st.lists(st.floats(-5000, 5000), min_size=4, max_size=4))
def test_boxes_map_back_inside_the_image_and_keep_their_order(w, h, max_side, pad, box):
    g = detection_geometry(w, h, max_side, pad)
    x1, x2 = sorted(box[::2])
    y1, y2 = sorted(box[1::2])
    b = g.boxes_to_image(np.array([[x1, y1, x2, y2]]))[0]
    assert 0 <= b[0] <= b[2] <= w and 0 <= b[1] <= b[3] <= h


def _dets(draw_boxes: list[tuple[float, float, float, float]]) -> list[Detection]:
    return [Detection(box=(x, y, x + bw, y + bh), score=0.9) for x, y, bw, bh in draw_boxes]


box_st = st.tuples(st.floats(0, 500), st.floats(0, 500), st.floats(0, 300), st.floats(0, 300))


@given(boxes=st.lists(box_st, max_size=40), min_face=st.floats(0, 100), max_faces=st.none() | st.integers(0, 50))
def test_select_faces_counts_add_up_and_keeps_the_largest(boxes, min_face, max_faces):
    dets = _dets(boxes)
    kept, skipped = select_faces(dets, min_face, max_faces)
    assert len(kept) + sum(skipped.values()) == len(dets)
    assert all(v > 0 for v in skipped.values())
    assert all(min(d.width, d.height) >= min_face for d in kept)
    assert [d.area for d in kept] == sorted((d.area for d in kept), reverse=True)
    if max_faces is not None:
        assert len(kept) <= max_faces
    eligible = sorted((d.area for d in dets if min(d.width, d.height) >= min_face), reverse=True)
    assert [d.area for d in kept] == eligible[: len(kept)]


@given(
    angle=st.floats(-math.pi, math.pi),
    scale=st.floats(0.05, 20),
    t=st.tuples(st.floats(-1000, 1000), st.floats(-1000, 1000)),
    pts=st.lists(st.tuples(st.floats(0, 500), st.floats(0, 500)), min_size=3, max_size=7),
)
def test_similarity_transform_recovers_a_known_similarity(angle, scale, t, pts):
    src = np.array(pts, np.float64)
    if np.ptp(src, axis=0).max() < 1.0:  # points (nearly) all at one place: no transform to recover
        return
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    m = np.hstack([scale * rot, np.array(t)[:, None]])
    dst = src @ m[:, :2].T + m[:, 2]
    got = similarity_transform(src, dst)
    mapped = src @ got[:, :2].T + got[:, 2]
    assert np.allclose(mapped, dst, atol=1e-6 * max(1.0, scale * 500))


@given(box=box_st, size=st.integers(8, 128), margin=st.floats(0, 1))
def test_box_crop_without_landmarks_centres_the_box(box, size, margin):
    x, y, bw, bh = box
    det = Detection(box=(x, y, x + bw + 1, y + bh + 1), score=1.0)
    m = crop_matrix(det, Preprocessing(crop="align5", margin=margin, size=size))
    cx, cy = x + (bw + 1) / 2, y + (bh + 1) / 2
    centre = m @ np.array([cx, cy, 1.0])
    assert np.allclose(centre, [size / 2, size / 2], atol=1e-6 * size)
    side = max(bw + 1, bh + 1) * (1 + 2 * margin)
    assert math.isclose(m[0, 0] * side, size, rel_tol=1e-9)


@given(w=st.integers(1, 400), h=st.integers(1, 400), box=box_st, margin=st.floats(0, 1))
def test_box_crop_window_stays_in_the_image_and_holds_the_box(w, h, box, margin):
    x, y, bw, bh = box
    x1, y1, x2, y2 = box_crop_window((x, y, x + bw, y + bh), margin, w, h)
    assert 0 <= x1 and 0 <= y1 and x2 <= w and y2 <= h
    if x + bw <= w - 1 and y + bh <= h - 1:  # a box inside the image is inside its window
        assert x1 <= x and y1 <= y and x2 >= int(x + bw) and y2 >= int(y + bh)


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(1, 300), h=st.integers(1, 300), box=box_st, crop=st.sampled_from(["align5", "box"]),
    margin=st.floats(0, 1), size=st.integers(8, 64),
    lms=st.none() | st.lists(st.tuples(st.floats(-200, 600), st.floats(-200, 600)), min_size=5, max_size=5),
)
def test_crop_face_always_gives_a_crop_of_the_model_size(w, h, box, crop, margin, size, lms):
    """Any detection - partly outside the image, degenerate, landmarks all at one point - gives a crop of
    the model's size, never an exception."""
    image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    x, y, bw, bh = box
    landmarks = None if lms is None else np.array(lms, np.float32)
    det = Detection(box=(x, y, x + bw, y + bh), score=1.0, landmarks=landmarks)
    out = crop_face(image, det, Preprocessing(crop=crop, margin=margin, size=size))
    assert out.shape == (size, size, 3) and out.dtype == np.uint8


def test_degenerate_landmarks_fall_back_to_the_box():
    det = Detection(box=(10, 10, 50, 60), score=1.0, landmarks=np.full((5, 2), 30, np.float32))
    prep = Preprocessing(size=32)
    assert np.allclose(crop_matrix(det, prep), crop_matrix(Detection(det.box, 1.0), prep))
