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


@pytest.mark.skipif(HAS_CUDA, reason="onnxruntime-gpu is installed: the error path does not apply")
def test_cuda_without_onnxruntime_gpu_is_a_one_line_error():
    with pytest.raises(DeviceError) as info:
        Predictor(device="cuda")
    assert "onnxruntime-gpu" in str(info.value) and "\n" not in str(info.value)
    out = cli("predict", str(EXAMPLE), "--device", "cuda", check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("agegender predict: error: --device cuda needs onnxruntime's CUDA provider")
    bad = cli("predict", str(EXAMPLE), "--device", "tpu", check=False)
    assert bad.returncode == 1 and "unknown device" in bad.stderr


@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and a CUDA GPU")
def test_cuda_gives_the_cpu_answers():  # pragma: no cover - runs where a GPU is
    cpu, gpu = Predictor().predict(EXAMPLE).faces, Predictor(device="cuda").predict(EXAMPLE).faces
    assert "CUDAExecutionProvider" in Predictor(device="cuda").estimator.session.get_providers()
    assert len(cpu) == len(gpu) == 1
    assert abs(cpu[0].age - gpu[0].age) < 0.05 and cpu[0].gender is gpu[0].gender
