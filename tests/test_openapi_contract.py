"""The HTTP API against its own OpenAPI schema: a real `agegender serve` on a loopback port, checked by
schemathesis (an OpenAPI client no one here wrote) with every check it has, and the limits the schema
states read back against the flags the server was started with."""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import features

from agegender.formats import HEIF_MODULES
from agegender.server.process import serve_process

from .conftest import need_module

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
MIN_THRESHOLD, THRESHOLD, MAX_UPLOAD_MB, MAX_PIXELS = 0.25, 0.5, 1, 4_000_000


@pytest.fixture(scope="module")
def server() -> str:
    need_module("schemathesis")
    args = ["--min-threshold", str(MIN_THRESHOLD), "--threshold", str(THRESHOLD), "--max-upload-mb",
            str(MAX_UPLOAD_MB), "--max-pixels", str(MAX_PIXELS), "--log-level", "warning"]
    with serve_process(args) as url:
        yield url


def test_schema_states_this_servers_limits(server):
    spec = httpx.get(server + "/openapi.json").json()
    op = spec["paths"]["/v1/predict"]["post"]
    threshold = next(p for p in op["parameters"] if p["name"] == "threshold")["schema"]
    number = next(s for s in threshold.get("anyOf", [threshold]) if s.get("type") == "number")
    assert number["minimum"] == MIN_THRESHOLD and number["maximum"] == 1  # the --min-threshold floor
    body = op["requestBody"]
    assert f"{MAX_UPLOAD_MB * 1024 * 1024} bytes and {MAX_PIXELS} decoded pixels" in body["description"]
    raw = {t: c["schema"] for t, c in body["content"].items() if t != "multipart/form-data"}
    assert {"image/jpeg", "image/png", "application/octet-stream"} <= set(raw)
    # the types it decodes beyond Pillow's own, and only those (this venv: AVIF in Pillow, HEIC with pi-heif)
    assert ("image/avif" in raw) == features.check("avif")
    assert ("image/heic" in raw) == ("image/heif" in raw) == any(map(importlib.util.find_spec, HEIF_MODULES))
    assert all(s["format"] == "binary" and s["minLength"] == 1 and s["maxLength"] == MAX_UPLOAD_MB * 1024 * 1024
               for s in raw.values())
    assert body["content"]["multipart/form-data"]["schema"]["required"] == ["file"]
    for status in ("400", "413", "415", "500"):
        schema = op["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorOut"}, status
    assert "text/plain" in op["responses"]["503"]["content"]
    assert "422" not in op["responses"]
    for path in ("/v1/health", "/v1/models"):
        ok = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["$ref"].startswith("#/components/schemas/")
    models = httpx.get(server + "/v1/models").json()
    assert models["detector"]["min_threshold"] == MIN_THRESHOLD and models["detector"]["default_threshold"] == THRESHOLD


def test_wrong_method_is_405_with_allow(server):
    """RFC 9110: a 405 lists the methods the resource supports in Allow."""
    for method, path, allowed in (("GET", "/v1/predict", {"POST"}), ("DELETE", "/v1/health", {"GET"}),
                                  ("TRACE", "/v1/models", {"GET"})):
        r = httpx.request(method, server + path)
        assert r.status_code == 405 and r.json()["error"]
        assert allowed <= {m.strip() for m in r.headers["allow"].split(",")}, r.headers


def test_threshold_under_the_floor_is_400(server):
    r = httpx.post(server + "/v1/predict", params={"threshold": MIN_THRESHOLD - 0.01}, content=b"x",
                   headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 400 and "threshold" in r.json()["error"]


def test_schemathesis_all_checks_pass(server, tmp_path):
    """`schemathesis run URL/openapi.json --checks all`, bounded (40 examples per operation, fixed seed), with
    tests/schemathesis_hooks.py saying what a valid image body is (real encoded images)."""
    env = os.environ | {"SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
                        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", f"{server}/openapi.json", "--checks", "all",
           "--max-examples", "40", "--seed", "0", "--workers", "1", "--request-timeout", "60",
           "--report", "har", "--report-dir", str(tmp_path / "report")]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "No issues found" in out.stdout, out.stdout[-3000:]

    (har,) = (tmp_path / "report").glob("har-*.json")
    seen = collections.Counter()
    for entry in json.loads(har.read_text())["log"]["entries"]:
        req, status = entry["request"], entry["response"]["status"]
        types = [h["value"].split(";")[0] for h in req["headers"] if h["name"].lower() == "content-type"] or ["-"]
        seen[(req["method"], req["url"].split("?")[0].removeprefix(server), types[0], status)] += 1
    assert not [k for k in seen if k[3] >= 500], seen
    accepted = {k[2] for k in seen if k[:2] == ("POST", "/v1/predict") and k[3] == 200}
    assert {"multipart/form-data", "image/png"} <= accepted and len(accepted) >= 4, seen  # real images, answered
    assert any(k[:2] == ("POST", "/v1/predict") and k[3] == 400 for k in seen), seen  # bad parameters refused
    assert any(k[3] == 405 for k in seen), seen
