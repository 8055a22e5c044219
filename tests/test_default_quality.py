"""The shipped default model on the UTKFace test split, measured by `evaluate` (slow: ~2,400 images)."""

import pytest

from agegender.data import read_utkface
from agegender.data.prepare import CropSpec, prepare_dataset
from agegender.evaluation.report import evaluate_model

from .conftest import UTK_DIR, UTK_SPLIT, need


@pytest.mark.slow
def test_default_model_meets_the_bar_on_utkface_test(tmp_path):
    samples = [s for s in read_utkface(need(UTK_DIR), need(UTK_SPLIT)) if s.split == "test"]
    prepare_dataset(samples, tmp_path / "utk_test", CropSpec(), workers=2, progress=False)
    report = evaluate_model("default", tmp_path / "utk_test", "test", tmp_path / "eval", mode="crops", progress=False)
    overall = report["overall"]
    assert overall["n"] >= 2380
    assert overall["age_mae"] <= 6.5 and overall["gender_acc"] >= 0.90
