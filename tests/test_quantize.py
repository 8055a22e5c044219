"""Int8 export: `agegender export --int8` on a built-in model, calibrated on real prepared crops: the file,
its record and the CLI (its accuracy against the float model: tests/test_model_goldens.py)."""

import numpy as np
from safetensors.numpy import load_file

from agegender.inference.batch import FAST_MODEL
from agegender.models import builtin_models, load_estimator, read_config
from agegender.models.estimator import resolve_model_path

from .conftest import cli


def test_int8_export_keeps_the_record_and_runs(prepared, tmp_path):
    out = tmp_path / f"{FAST_MODEL}-int8.onnx"
    res = cli("export", FAST_MODEL, "-o", str(out), "--int8", "--calibration", str(prepared),
              "--calibration-size", "16")
    assert "int8" in res.stdout
    src = resolve_model_path(FAST_MODEL)
    params = sum(int(np.prod(t.shape)) for t in load_file(str(src.with_suffix(".safetensors"))).values())
    assert out.stat().st_size < 0.4 * 4 * params  # int8 weights: well under their float32 bytes
    f32, i8 = load_estimator(FAST_MODEL), load_estimator(out)
    assert i8.preprocessing == f32.preprocessing
    assert "int8" in read_config(str(out)).card["quantized"]
    # how close its answers are to the float model's: tests/test_model_goldens.py, on the whole test split
    # it runs where models run: predict on a whole photo
    assert cli("predict", "--model", str(out), "--format", "jsonl").returncode == 0


def test_int8_export_needs_calibration_data(tmp_path):
    res = cli("export", FAST_MODEL, "-o", str(tmp_path / "x.onnx"), "--int8", check=False)
    assert res.returncode == 2 and "--calibration" in res.stderr
    # without --int8 a built-in name gives its own ONNX file; another .onnx is already what export makes
    res = cli("export", FAST_MODEL, "-o", str(tmp_path / "x.onnx"), check=False)
    assert res.returncode == 0 and (tmp_path / "x.onnx").read_bytes() == builtin_models()[FAST_MODEL].read_bytes()
    res = cli("export", str(tmp_path / "x.onnx"), "-o", str(tmp_path / "y.onnx"), check=False)
    assert res.returncode == 2 and "--int8" in res.stderr and "already an ONNX model" in res.stderr
