"""onnxruntime sessions for the detector and the models: the device (execution provider) and threads.

`--device cuda` runs on onnxruntime's CUDA execution provider, which only the `onnxruntime-gpu` package
has; the CPU path needs nothing beyond the `onnxruntime` package.
"""

from __future__ import annotations

from typing import Any

#: the package that brings onnxruntime's CUDA execution provider
GPU_PACKAGE = "onnxruntime-gpu"


class DeviceError(RuntimeError):
    """The device asked for cannot be used (no CUDA provider in this onnxruntime, or it did not start)."""


def parse_device(device: str) -> tuple[str, int]:
    """'cpu', 'cuda' or 'cuda:N' -> (kind, device index). ValueError for anything else."""
    text = (device or "cpu").strip().lower()
    if text == "cpu":
        return "cpu", 0
    kind, _, index = text.partition(":")
    if kind == "cuda" and (not index or index.isdigit()):
        return "cuda", int(index or 0)
    raise ValueError(f"unknown device {device!r}: use cpu, cuda or cuda:N")


def providers(device: str = "cpu") -> list[Any]:
    """The execution providers for `device`, in onnxruntime's format. For cuda, raises DeviceError with a
    one-line reason when this onnxruntime has no CUDA provider (the CPU-only `onnxruntime` package)."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    import onnxruntime as ort

    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise DeviceError(
            f"--device {device} needs onnxruntime's CUDA provider: pip uninstall onnxruntime && pip install "
            f"{GPU_PACKAGE} (this onnxruntime {ort.__version__} has {', '.join(available)})"
        )
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


def session_options(threads: int | None = None):  # -> onnxruntime.SessionOptions
    """Quiet session options; `threads` onnxruntime intra-op threads (None: onnxruntime's default, one per
    core). Idle worker threads wait instead of spinning: on a machine shared with other work, spinning
    threads take the cores from the decoding and cropping around each run (measured on this project's
    2-core machine under load: 2 threads spinning took 155 ms per portrait, waiting 57-70 ms, 1 thread 72)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def make_session(model: str | bytes, threads: int | None = None, device: str = "cpu"):
    """An onnxruntime InferenceSession for a model file or serialized model on `device`. For cuda, raises
    DeviceError when the CUDA provider is missing or could not start (no GPU, driver or CUDA libraries)."""
    import onnxruntime as ort

    chosen = providers(device)
    session = ort.InferenceSession(model, session_options(threads), providers=chosen)
    if parse_device(device)[0] == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
        raise DeviceError(f"--device {device}: onnxruntime's CUDA provider did not start (no usable GPU, "
                           "driver or CUDA libraries?); run with --device cpu")
    return session
