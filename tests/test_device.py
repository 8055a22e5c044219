"""`--device`: the CPU path needs only the `onnxruntime` package; cuda runs on onnxruntime's CUDA provider
(the `onnxruntime-gpu` package) and says so in one line where it is missing."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from agegender import Predictor
from agegender.onnxrt import DeviceError, parse_device, providers

from .conftest import cli

EXAMPLE = Path(__file__).resolve().parent.parent / "src" / "agegender" / "assets" / "example.jpg"
HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def test_device_names():
    assert parse_device("cpu") == ("cpu", 0) and parse_device("CUDA:1") == ("cuda", 1)
    assert providers("cpu") == ["CPUExecutionProvider"]
    for bad in ("tpu", "cuda:x", "gpu"):
        with pytest.raises(ValueError, match="unknown device"):
            parse_device(bad)


def test_cpu_path_runs_on_the_cpu_provider():
    p = Predictor(device="cpu")
    assert p.estimator.session.get_providers() == ["CPUExecutionProvider"]
    assert p.detector.session.get_providers() == ["CPUExecutionProvider"]
    assert len(p.predict(EXAMPLE).faces) == 1


def test_cuda_runs_on_the_cuda_provider_or_says_what_is_missing():
    """Where onnxruntime-gpu and a GPU are (not on this project's machine): the CPU's answers from the CUDA
    provider. Elsewhere: a one-line error naming onnxruntime-gpu, from the API and the command line."""
    if HAS_CUDA:  # pragma: no cover - runs where a GPU is
        gpu = Predictor(device="cuda")
        assert "CUDAExecutionProvider" in gpu.estimator.session.get_providers()
        (a,), (b,) = Predictor().predict(EXAMPLE).faces, gpu.predict(EXAMPLE).faces
        assert abs(a.age - b.age) < 0.05 and a.gender is b.gender
        return
    with pytest.raises(DeviceError) as info:
        Predictor(device="cuda")
    assert "onnxruntime-gpu" in str(info.value) and "\n" not in str(info.value)
    out = cli("predict", str(EXAMPLE), "--device", "cuda", check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("agegender predict: error: --device cuda needs onnxruntime's CUDA provider")
    bad = cli("predict", str(EXAMPLE), "--device", "tpu", check=False)
    assert bad.returncode == 1 and "unknown device" in bad.stderr
