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
