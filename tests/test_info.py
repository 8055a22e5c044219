"""`agegender info` and the module -> extra table behind every missing-package message."""

from __future__ import annotations

import json
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

from agegender.extras import MODULES, MissingExtra, extras_status, missing_extra, require
from agegender.models import read_config

from .conftest import cli, need_module

REPO = Path(__file__).resolve().parent.parent


def test_missing_extra_lines():
    assert str(MissingExtra("torch")) == 'needs PyTorch: pip install "agegender[train]"'
    assert str(MissingExtra("h5py", purpose="importing Keras weights")) == \
        'importing Keras weights needs h5py: pip install "agegender[keras]"'
    assert str(MissingExtra("onnx", "keras")) == 'needs onnx: pip install "agegender[keras]"'
    assert "not installed" in str(MissingExtra("no_such_module_here"))
    exc = ModuleNotFoundError("No module named 'scipy.io'", name="scipy.io")
    assert missing_extra(exc).extra == "prepare"
    assert missing_extra(MissingExtra("onnx"), {"onnx": "keras"}).extra == "keras"
    assert missing_extra(ImportError("cannot import name x")) is None


def test_require_names_the_extra_or_gives_the_module():
    assert require("json").dumps([1]) == "[1]"
    with pytest.raises(MissingExtra, match="reading things needs the Python module 'agegender_no_such_module'"):
        require("agegender_no_such_module.sub", "reading things")


def test_a_bare_folder_of_the_name_is_not_the_package(tmp_path, monkeypatch):
    """A folder named like an optional package on sys.path (as /tmp/ray is when a command runs from /tmp
    after Ray ran there) imports as an empty namespace package; require() says the package is missing."""
    (tmp_path / "agegender_ns_probe").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(MODULES, "agegender_ns_probe", ("probe", "plots"))
    monkeypatch.delitem(sys.modules, "agegender_ns_probe", raising=False)
    with pytest.raises(MissingExtra, match=r'needs probe: pip install "agegender\[plots\]"'):
        require("agegender_ns_probe")


def test_table_and_pyproject_agree():
    """Every extra the table names exists in pyproject, and its packages provide the table's modules."""
    tomllib = need_module("tomllib", "Python 3.11+")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installed = {e.name: e for e in extras_status()}
    assert set(extras) == set(installed)  # the installed metadata is this pyproject's
    provided = metadata.packages_distributions()
    for module, (_, extra) in MODULES.items():
        assert extra in extras, module
        names = {_dist(r) for r in extras[extra]}
        deps = {_dist(r) for n in names for r in (metadata.requires(n) or [])}
        dists = {_dist(d) for d in provided.get(module, [])} or {  # no top_level.txt (dlib-bin): by its files
            n for n in names | deps if any(f.parts[0].split(".")[0] == module for f in metadata.files(n) or [])}
        assert dists & (names | deps), f"{module}: provided by {dists}, extra {extra} installs {names}"


def _dist(requirement: str) -> str:
    """The normalised distribution name of a requirement string (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)).lower()


def test_info_report():
    text = cli("info").stdout
    assert text.startswith("agegender 0.1.0 at ") and "onnxruntime" in text and "default:" in text
    report = json.loads(cli("info", "--json").stdout)
    assert report["agegender"]["install"].startswith("editable")  # the development venv
    assert "CPUExecutionProvider" in report["onnxruntime"]["providers"]
    models = {m["name"]: m for m in report["models"]}
    assert {"default", "fast"} <= set(models) and all(Path(m["path"]).is_file() for m in models.values())
    record = read_config(models["default"]["path"])  # what the shipped weights file itself says
    assert models["default"]["arch"] == record.arch == "mobilenet_v1"
    assert models["default"]["input"] == record.preprocessing.size == 140
    detectors = {d["name"]: d for d in report["detectors"]}
    assert Path(detectors["retinaface"]["path"]).is_file() and detectors["dlib-hog"]["available"]
    extras = {e["name"]: e for e in report["extras"]}
    assert all(extras[n]["installed"] for n in ("train", "prepare", "plots", "keras", "export", "serve", "dlib",
                                                "parquet", "ray", "heif"))
    assert cli("--version").stdout.startswith("agegender 0.1.0 (onnxruntime ")


#: /proc/cpuinfo excerpts as Linux writes them (first processor; other lines cut): an x86 server with VNNI,
#: an AVX2-only x86, a 64-bit ARM with dot-product instructions (ARM lists 'Features' and no model name)
CPUINFO = {
    "vnni": "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ "
            "2.90GHz\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni\n",
    "avx2": "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n\n"
            "processor\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 avx512_vnni\n",
    "arm": "processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes crc32 atomics asimddp i8mm\n"
           "CPU implementer\t: 0x41\n",
}


def test_cpu_features_from_cpuinfo():
    from agegender.environment import cpu_features

    assert cpu_features(CPUINFO["vnni"]) == ("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
                                             ["avx2", "avx512f", "avx512_vnni"])
    assert cpu_features(CPUINFO["avx2"]) == ("AMD EPYC 7B13", ["avx2"])  # the first processor's flags only
    assert cpu_features(CPUINFO["arm"]) == ("", ["asimddp", "i8mm"])
    assert cpu_features("") == ("", [])


def test_info_names_the_cpu_and_whether_full_range_int8_saturates():
    """On this Linux machine: the CPU line and its JSON, read from the real /proc/cpuinfo."""
    import os

    from agegender.environment import INT8_FEATURES, cpu_features

    real_name, real_features = cpu_features(Path("/proc/cpuinfo").read_text())
    cpu = json.loads(cli("info", "--json").stdout)["cpu"]
    assert cpu["cores"] == len(os.sched_getaffinity(0)) and cpu["int8_features"] == real_features
    assert set(real_features) <= set(INT8_FEATURES) and cpu["model"] == (real_name or cpu["model"])
    vnni = {"avx512_vnni", "avx_vnni", "amx_int8"} & set(real_features)
    assert cpu["int8_saturates_full_range"] == (not vnni)  # an x86 machine (CI's and this one)
    line = next(x for x in cli("info").stdout.splitlines() if x.startswith("cpu "))
    assert f", {cpu['cores']} cores, int8 features: " in line
    assert ("--full-range ones saturate here" in line) == cpu["int8_saturates_full_range"]
