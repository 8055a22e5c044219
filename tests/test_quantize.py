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


def _weight_range(path) -> tuple[int, int]:
    """(min, max) over the int8 weights of a QDQ model (its INT8 initializers, read by DequantizeLinear)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(weights) >= 10, "no int8 weights"
    return min(int(w.min()) for w in weights), max(int(w.max()) for w in weights)


def test_int8_weights_take_7_bits_unless_full_range(prepared, tmp_path):
    """By default the weights stay within -64..64, so that onnxruntime's int8 kernels on x86 CPUs without VNNI
    (which add pairs of uint8 x int8 products in 16 bits) cannot saturate; --full-range uses all 8 bits."""
    seven, eight = tmp_path / "seven.onnx", tmp_path / "eight.onnx"
    for out, extra in ((seven, []), (eight, ["--full-range"])):
        cli("export", FAST_MODEL, "-o", str(out), "--int8", "--calibration", str(prepared),
            "--calibration-size", "16", *extra)
    assert _weight_range(seven) == (-64, 64)
    assert _weight_range(eight) == (-127, 127)
    assert "7-bit weights" in read_config(str(seven)).card["quantized"]
    assert "8-bit weights" in read_config(str(eight)).card["quantized"]


def test_int8_export_needs_neither_torch_nor_sympy(prepared, tmp_path):
    """--int8 of a built-in model needs onnx and onnxruntime only (the 'export' extra): with torch and sympy
    blocked in the child it writes a working file (onnxruntime's symbolic shape inference, which needs sympy,
    is not used)."""
    from .test_missing_extras import run_cli

    out = tmp_path / "int8.onnx"
    res = run_cli(["export", FAST_MODEL, "-o", str(out), "--int8", "--calibration", str(prepared),
                   "--calibration-size", "16"], ["torch", "sympy"])
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "int8" in read_config(str(out)).card["quantized"]
