"""Weights files: the built-in model's two runtimes agree; bad weights files give clear errors."""

import json

import numpy as np
import pytest

from agegender.align import crop_faces
from agegender.detectors import create_detector
from agegender.imageio import load_image
from agegender.models import builtin_models, load_estimator, read_config

from .conftest import need_module

torch = need_module("torch")
from safetensors.torch import load_file, save_file  # noqa: E402


@pytest.fixture(scope="module")
def real_crops(frl_images):
    det = create_detector("retinaface")
    prep = read_config(str(builtin_models()["default"])).preprocessing
    crops = []
    for p in frl_images[:8]:
        img = load_image(p)
        crops.append(crop_faces(img, det.detect(img)[:1], prep)[0])
    return np.stack(crops)


def test_builtin_default_is_onnx_and_carries_its_record():
    path = builtin_models()["default"]
    assert path.suffix == ".onnx"
    cfg = read_config(str(path))
    assert cfg.preprocessing.crop == "align5" and cfg.preprocessing.size == 112
    assert cfg.card["test_metrics"]["age_mae"] <= 6.5 and cfg.card["test_metrics"]["gender_acc"] >= 0.90
    assert read_config(str(path.with_suffix(".safetensors"))).to_json() == cfg.to_json()


def test_onnx_and_torch_agree_on_real_crops(real_crops):
    onnx_est = load_estimator("default")
    torch_est = load_estimator(builtin_models()["default"].with_suffix(".safetensors"))
    a, b = onnx_est.estimate(real_crops), torch_est.estimate(real_crops)
    assert np.abs(a.ages - b.ages).max() < 1e-3
    assert np.abs(a.p_female - b.p_female).max() < 1e-4
    assert a.ages.std() > 0.5  # real, varied answers


def test_bad_weights_files_name_the_file(tmp_path):
    src = builtin_models()["default"].with_suffix(".safetensors")
    state = load_file(str(src))
    from safetensors import safe_open

    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
    # no preprocessing record
    p1 = tmp_path / "norecord.safetensors"
    save_file(state, str(p1))
    with pytest.raises(ValueError, match="norecord.safetensors.*no agegender preprocessing record"):
        load_estimator(p1)
    # a newer format
    rec = json.loads(meta["agegender"])
    rec["format_version"] = 99
    p2 = tmp_path / "newer.safetensors"
    save_file(state, str(p2), {"agegender": json.dumps(rec)})
    with pytest.raises(ValueError, match="newer.safetensors.*newer"):
        load_estimator(p2)
    # wrong shapes
    rec = json.loads(meta["agegender"])
    rec["arch_kwargs"]["widths"] = [16, 32, 64, 128]
    p3 = tmp_path / "shape.safetensors"
    save_file(state, str(p3), {"agegender": json.dumps(rec)})
    with pytest.raises(ValueError, match="shape.safetensors.*do not fit"):
        load_estimator(p3)
    # not a weights file at all
    p4 = tmp_path / "junk.safetensors"
    p4.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="junk.safetensors"):
        load_estimator(p4)
