"""The built wheel, installed with no extras in a venv of its own (CI: `.ci/run` builds it with
`python -m build`, installs dist/*.whl and runs this file and test_missing_extras.py there with
AGEGENDER_BASE_INSTALL=1, from outside the checkout). Deselected in the development venv, whose agegender
is the editable checkout itself."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: runs against the installed wheel only (AGEGENDER_BASE_INSTALL=1); deselected elsewhere (tests/conftest.py)
pytestmark = pytest.mark.base_install


@pytest.fixture(scope="module")
def package() -> Path:
    import agegender

    where = Path(agegender.__file__).resolve().parent
    assert REPO not in where.parents, f"agegender imported from the checkout ({where}), not from the wheel"
    return where


def test_wheel_holds_weights_assets_and_page(package):
    for name in ("default", "fast"):
        for suffix in (".onnx", ".safetensors", ".md"):
            assert (package / "weights" / f"{name}{suffix}").stat().st_size > 0, name + suffix
    assert (package / "assets" / "example.jpg").stat().st_size > 10_000
    assert (package / "assets" / "README.md").is_file()  # the example photo's source and licence
    for name in ("index.html", "app.js", "style.css"):
        assert (package / "server" / "static" / name).stat().st_size > 0, name


def test_predict_from_another_directory(package, tmp_path):
    """The console script on the built-in example, run from a folder that has nothing of the checkout."""
    script = Path(sys.executable).parent / "agegender"
    out = subprocess.run([str(script), "predict", "--format", "jsonl", "--no-progress"], capture_output=True,
                         text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    (line,) = out.stdout.strip().splitlines()
    result = json.loads(line)
    assert Path(result["image"]).resolve() == package / "assets" / "example.jpg"
    (face,) = result["faces"]
    assert face["gender"] == "female" and 25 < face["age"] < 40 and face["score"] > 0.9  # README: 36.2, female
    table = subprocess.run([str(script), "predict"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert table.returncode == 0 and "1 face(s)" in table.stdout and "female" in table.stdout


def test_every_module_imports_or_names_its_extra(package):
    """Each module of the package imports in the base install, or fails only on an optional module that
    agegender.extras knows (so the CLI turns it into a one-line hint)."""
    import agegender
    from agegender.extras import MODULES

    needing = {}
    for info in pkgutil.walk_packages(agegender.__path__, "agegender."):
        if info.name.endswith(".__main__"):  # runs the command line when imported
            continue
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            assert exc.name and exc.name.split(".")[0] in MODULES, f"{info.name}: {exc}"
            needing[info.name] = exc.name
    assert "torch" not in sys.modules
    assert {"agegender.models.nets", "agegender.training.loop", "agegender.server.app"} <= set(needing), needing
    assert "agegender.export.keras_import" not in needing and "agegender.export.wrn_graph" not in needing


def test_info_names_the_missing_extras(package):
    out = subprocess.run([sys.executable, "-m", "agegender.cli", "info", "--json"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["agegender"]["location"] == str(package) and report["agegender"]["install"].startswith("from ")
    assert {m["name"] for m in report["models"]} >= {"default", "fast"}
    assert all(Path(m["path"]).is_file() and Path(m["path"]).parent == package / "weights" for m in report["models"])
    assert "CPUExecutionProvider" in report["onnxruntime"]["providers"]
    extras = {e["name"]: e for e in report["extras"]}
    for name in ("train", "prepare", "plots", "keras", "export", "serve", "dlib", "parquet", "ray"):
        assert not extras[name]["installed"] and extras[name]["missing"], name
    detectors = {d["name"]: d for d in report["detectors"]}
    assert detectors["retinaface"]["available"] and not detectors["dlib-hog"]["available"]
