"""The threaded folder pipeline gives exactly what the one-image-at-a-time path gives, in input order."""

from __future__ import annotations

from pathlib import Path

import pytest

from agegender import Predictor
from agegender.inference.batch import predict_stream


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor()


def test_stream_matches_predict_many(predictor: Predictor, frl_images: list[Path], utk_subset: Path,
                                     tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    utk = sorted((utk_subset / "images").glob("*.jpg"))[:6]
    paths = [str(p) for p in [*frl_images[:3], bad, *utk, tmp_path / "missing.jpg"]]
    expected = [(r.to_json(), img is None) for r, img in predictor.predict_many(paths)]
    for workers, batch_images in ((2, 8), (1, 1), (3, 2)):
        got = [(r.to_json(), img is None) for r, img in predict_stream(predictor, paths, workers=workers,
                                                                       batch_images=batch_images)]
        assert got == expected
    assert [r["image"] for r, _ in expected] == paths
    assert expected[3][0]["error"] and expected[3][1]
    assert all(len(r["faces"]) == 1 for r, _ in expected[:3])  # one person per portrait


def test_predict_fast_finds_the_portrait_faces(frl_images: list[Path], tmp_path: Path) -> None:
    import json

    from agegender.inference.batch import FAST_DETECTOR_SIDE, run_predict

    out = tmp_path / "out.jsonl"
    assert run_predict([str(p) for p in frl_images[:2]], fmt="jsonl", output=str(out), fast=True, progress=False) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [len(r["faces"]) for r in rows] == [1, 1]
    assert all(10 <= f["age"] <= 40 for r in rows for f in r["faces"])  # young adults (ages 17..35 in the set)
    assert FAST_DETECTOR_SIDE < 640
    # what --fast is: the fast model, the detector's input capped, each face averaged with its mirror image
    from agegender import Predictor
    from agegender.inference.batch import use_fast_detector

    preset, plain = Predictor("fast", flip_tta=True), Predictor("fast")
    for p in (preset, plain):
        use_fast_detector(p)
    want = [[round(f.age, 1) for f in preset.predict(path).faces] for path in frl_images[:2]]
    assert [[f["age"] for f in r["faces"]] for r in rows] == want
    assert want != [[round(f.age, 1) for f in plain.predict(path).faces] for path in frl_images[:2]]
