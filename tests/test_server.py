"""The HTTP API through a real `agegender serve` process on a loopback port, with real portraits."""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from PIL import Image

from agegender.models.config import read_config
from agegender.models.estimator import builtin_models
from agegender.server.process import serve_process

pytestmark = pytest.mark.slow

MAX_UPLOAD_MB = 3
MAX_PIXELS = 30_000_000


@pytest.fixture(scope="module")
def server() -> str:
    args = ["--max-upload-mb", str(MAX_UPLOAD_MB), "--max-pixels", str(MAX_PIXELS), "--log-level", "warning"]
    with serve_process(args) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> httpx.Client:
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def portraits(frl_images) -> list:
    return frl_images[:4]


@pytest.fixture(scope="module")
def cli_jsonl(portraits) -> dict[str, dict]:
    """`agegender predict --format jsonl` on the same portraits: the contract the API must match."""
    out = subprocess.run([sys.executable, "-m", "agegender.cli", "predict", "--format", "jsonl", "--no-progress",
                          *map(str, portraits)], capture_output=True, text=True, check=True).stdout
    return {json.loads(line)["image"]: json.loads(line) for line in out.splitlines()}


def post_file(client: httpx.Client, path, **params) -> httpx.Response:
    with open(path, "rb") as f:
        return client.post("/v1/predict", params=params, files={"file": (path.name, f, "image/jpeg")})


def post_raw(client: httpx.Client, data: bytes, content_type: str = "image/jpeg", **params) -> httpx.Response:
    return client.post("/v1/predict", params=params, content=data, headers={"Content-Type": content_type})


def test_health_and_models(client):
    r = client.get("/v1/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    info = client.get("/v1/models").json()
    assert info["model"]["name"] == "default"
    prep = read_config(str(builtin_models()["default"])).preprocessing  # what the server runs: the model's record
    assert info["model"]["preprocessing"]["crop"] == prep.crop and info["model"]["preprocessing"]["size"] == prep.size
    assert info["detector"] == {"name": "retinaface", "min_threshold": 0.3, "default_threshold": 0.6}
    assert info["limits"] == {"max_upload_bytes": MAX_UPLOAD_MB * 1024 * 1024, "max_pixels": MAX_PIXELS}


def test_multipart_and_raw_match_predict_jsonl(client, portraits, cli_jsonl):
    for path in portraits:
        expected = cli_jsonl[str(path)]
        assert len(expected["faces"]) == 1
        r = post_file(client, path)
        assert r.status_code == 200, r.text
        assert "predict;dur=" in r.headers["server-timing"]
        assert r.json() == {**expected, "image": path.name}
        raw = post_raw(client, path.read_bytes())
        assert raw.json() == {**expected, "image": "upload"}


def test_annotated_image(client, portraits):
    path = portraits[0]
    out = post_file(client, path, annotate="true").json()
    annotated = np.asarray(Image.open(io.BytesIO(base64.b64decode(out["annotated_jpeg"]))).convert("RGB"))
    assert annotated.shape == (out["height"], out["width"], 3)
    original = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    x1, y1, x2, y2 = (int(v) for v in out["faces"][0]["box"])
    edge = np.abs(annotated[y1 - 2 : y1 + 3, x1:x2].astype(np.int16) - original[y1 - 2 : y1 + 3, x1:x2])
    assert edge.mean() > 20  # the box is drawn on the top edge
    assert "annotated_jpeg" not in post_file(client, path).json()


def test_threshold_and_max_faces(client, portraits):
    # three real portraits side by side: three faces, different sizes
    tiles = [Image.open(p).convert("RGB").resize((450 - 60 * i, 600 - 80 * i)) for i, p in enumerate(portraits[:3])]
    canvas = Image.new("RGB", (sum(t.width for t in tiles), 600), "white")
    x = 0
    for t in tiles:
        canvas.paste(t, (x, 0))
        x += t.width
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=92)
    data = buf.getvalue()
    every = post_raw(client, data).json()["faces"]
    assert len(every) == 3
    two = post_raw(client, data, max_faces=2).json()["faces"]
    assert two == every[:2]  # the two largest, unchanged
    strict = post_raw(client, data, threshold=0.999).json()["faces"]
    assert strict == [f for f in every if f["score"] >= 0.999]
    loose = post_raw(client, data, threshold=0.3).json()["faces"]
    assert len(loose) >= 3


@pytest.mark.parametrize("params", [{"threshold": "abc"}, {"threshold": 2}, {"threshold": 0.1}, {"max_faces": 0},
                                    {"max_faces": "x"}])
def test_bad_parameters_are_400(client, portraits, params):
    r = post_file(client, portraits[0], **params)
    assert r.status_code == 400 and r.json()["error"]


def test_bad_input_is_a_clear_4xx(client, portraits):
    jpeg = portraits[0].read_bytes()
    cases = {
        "text body": (post_raw(client, b"hello", "text/plain"), 415, "content type"),
        "no content type": (client.post("/v1/predict", content=b"\xff\xd8\xff"), 415, "content type"),
        "garbage as jpeg": (post_raw(client, b"not an image at all" * 10), 415, "not an image"),
        "truncated jpeg": (post_raw(client, jpeg[: len(jpeg) // 3]), 400, "truncated"),
        "empty body": (post_raw(client, b""), 400, "empty"),
        "url-encoded form": (client.post("/v1/predict", data={"note": "no file"}), 415, "content type"),
        "multipart without boundary": (post_raw(client, b"--x\r\n", "multipart/form-data"), 400, "boundary"),
        "too many bytes": (post_raw(client, b"\xff" * (MAX_UPLOAD_MB * 1024 * 1024 + 1)), 413, "exceeds"),
    }
    for name, (r, status, words) in cases.items():
        assert r.status_code == status, (name, r.status_code, r.text)
        message = r.json()["error"]
        assert "\n" not in message and (words is None or words in message), (name, message)
    assert client.get("/v1/predict").status_code == 405
    assert client.get("/v1/nothing").json() == {"error": "Not Found"}


def test_odd_but_valid_images_are_answered(client):
    def encoded(img: Image.Image, fmt: str) -> bytes:
        buf = io.BytesIO()
        img.save(buf, fmt)
        return buf.getvalue()

    rng = np.random.default_rng(0)
    odd = {
        "1x1": encoded(Image.new("RGB", (1, 1)), "PNG"),
        "1x5000": encoded(Image.new("RGB", (1, 5000)), "PNG"),
        "cmyk": encoded(Image.new("CMYK", (300, 200)), "JPEG"),
        "rgba": encoded(Image.new("RGBA", (300, 200)), "PNG"),
        "16-bit": encoded(Image.fromarray(rng.integers(0, 65535, (100, 100), dtype=np.uint16)), "PNG"),
        "gif": encoded(Image.new("P", (100, 80)), "GIF"),
    }
    for name, data in odd.items():
        r = post_raw(client, data, "image/png")
        assert r.status_code == 200 and r.json()["faces"] == [], (name, r.text)


def test_form_without_file_part(client):
    r = client.post("/v1/predict", files={"note": (None, "just text")})
    assert r.status_code == 400 and "no file part" in r.json()["error"]


def test_image_bomb_refused_before_decoding(client):
    buf = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buf, "PNG")  # 400 M pixels in a few hundred KB
    assert buf.tell() < MAX_UPLOAD_MB * 1024 * 1024
    r = post_raw(client, buf.getvalue(), "image/png")
    assert r.status_code == 413 and f"limit of {MAX_PIXELS} pixels" in r.json()["error"]


def test_uploaded_name_never_used_as_path(client, portraits, tmp_path):
    target = tmp_path / "sub" / "evil.jpg"
    with open(portraits[0], "rb") as f:
        r = client.post("/v1/predict", files={"file": (f"../../{target}", f, "image/jpeg")})
    assert r.status_code == 200 and r.json()["image"] == "evil.jpg"
    assert not target.exists() and not (tmp_path / "sub").exists()


def test_concurrent_requests_same_answers(server, portraits, client):
    expected = {p.name: post_file(client, p).json() for p in portraits}

    def one(i: int) -> tuple[str, dict]:
        p = portraits[i % len(portraits)]
        with httpx.Client(base_url=server, timeout=120) as c:
            return p.name, post_file(c, p).json()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(16)))
    assert all(out == expected[name] for name, out in results)


def _send(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One request on an open (keep-alive) connection: (status, body)."""
    conn.request(method, path, body=body, headers={"Content-Type": "image/jpeg"} if body else {})
    r = conn.getresponse()
    return r.status, r.read()


def _raw_status(host: str, port: int, request: bytes) -> int:
    """Send one whole HTTP request in a single write on a new connection; the response's status code."""
    with socket.create_connection((host, port), timeout=120) as s:
        s.sendall(request)
        head = s.recv(64)
    return int(head.split()[1])


def test_max_connections_beyond_the_limit_get_503(portraits):
    """`serve --max-connections 2`: two open connections are served (the JSON contract); a request on a
    third gets a 503; once it has gone, the others are served again. 0 is refused at start."""
    jpeg = portraits[0].read_bytes()
    with serve_process(["--max-connections", "2", "--log-level", "critical"]) as url:
        u = urlparse(url)
        a, b, c = (http.client.HTTPConnection(u.hostname, u.port, timeout=120) for _ in range(3))
        try:
            assert _send(a, "GET", "/v1/health")[0] == 200  # a stays open (keep-alive)
            status, body = _send(b, "POST", "/v1/predict", jpeg)  # a second connection: within the limit
            assert status == 200 and len(json.loads(body)["faces"]) == 1
            assert _send(c, "GET", "/v1/health")[0] == 503  # a third: over it
            c.close()
            # predict is refused too, before its handler reads the body: a request that is not an image
            # gets uvicorn's 503, not our 400 (sent whole, so a server that answers and closes can't race it)
            assert _raw_status(u.hostname, u.port, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Type: image/jpeg\r\nContent-Length: 5\r\n\r\nnope!") == 503
            # the server drops c when it sees it close; by the next round trip at the latest, a is served
            statuses = [_send(a, "GET", "/v1/health")[0] for _ in range(3)]
            assert statuses[-1] == 200 and set(statuses) <= {200, 503}, statuses
        finally:
            for conn in (a, b, c):
                conn.close()
    out = subprocess.run([sys.executable, "-m", "agegender.cli", "serve", "--max-connections", "0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "argument --max-connections: must be 1 or more, got 0" in out.stderr
    assert "Traceback" not in out.stderr


def test_cors_off_by_default(client):
    r = client.options("/v1/predict", headers={"Origin": "http://elsewhere.test",
                                               "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers
    r = client.get("/v1/health", headers={"Origin": "http://elsewhere.test"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_when_configured():
    with serve_process(["--cors-origin", "http://allowed.test", "--log-level", "warning"]) as url:
        ok = httpx.get(url + "/v1/health", headers={"Origin": "http://allowed.test"})
        other = httpx.get(url + "/v1/health", headers={"Origin": "http://elsewhere.test"})
    assert ok.headers["access-control-allow-origin"] == "http://allowed.test"
    assert "access-control-allow-origin" not in other.headers


def local_assets(html: str) -> list[str]:
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert refs and not [r for r in refs if "//" in r and not r.startswith("data:")], refs
    return [r for r in refs if r.startswith("/")]


def test_page_and_docs_served_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    for ref in local_assets(page.text):
        assert client.get(ref).status_code == 200, ref
    docs = client.get("/docs")
    assert docs.status_code == 200
    assets = local_assets(docs.text)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for ref in assets:
        assert client.get(ref).status_code == 200, ref
    assert client.get("/redoc").status_code == 404
    spec = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/health", "/v1/models"} <= set(spec["paths"])
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body and "image/jpeg" in body


def test_every_image_type_the_schema_names_is_answered(client):
    """Each image media type in the schema's request body, sent as a real photo of that type (the package's
    example encoded by Pillow; HEIC/HEIF: the phone photo fixture), is decoded and its face found."""
    body = client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    named = [t for t in body if t.startswith("image/")]
    assert {"image/jpeg", "image/avif", "image/heic", "image/heif"} <= set(named)  # this venv reads all three
    assert body["multipart/form-data"]["encoding"]["file"]["contentType"] == ", ".join(named)
    import agegender

    photo = Image.open(Path(agegender.__file__).parent / "assets" / "example.jpg")
    heic = (Path(__file__).resolve().parent / "fixtures" / "phone_photo.heic").read_bytes()
    for media_type in named:
        if media_type in ("image/heic", "image/heif"):
            data = heic
        else:
            buf = io.BytesIO()
            photo.save(buf, format=media_type.removeprefix("image/").upper())
            data = buf.getvalue()
        r = post_raw(client, data, media_type)
        assert r.status_code == 200 and len(r.json()["faces"]) == 1, (media_type, r.text)


def test_schema_names_heic_only_where_a_heif_reader_is_installed():
    """Without pi-heif and pillow-heif (blocked in a child process) the request body names no HEIC/HEIF type,
    since such a server answers those uploads 415; the other types stay."""
    code = ("import json, sys\nsys.modules['pi_heif'] = sys.modules['pillow_heif'] = None\n"
            "from agegender.server.schema import predict_body\n"
            "print(json.dumps(list(predict_body(1000, 1000)['content'])))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    content = json.loads(out.stdout)
    assert "image/jpeg" in content and "application/octet-stream" in content
    assert not {"image/heic", "image/heif"} & set(content), content


def test_chunked_upload_over_the_limit_is_413(client):
    def chunks():
        for _ in range(MAX_UPLOAD_MB * 4 + 1):
            yield b"\xff" * (256 * 1024)

    r = client.post("/v1/predict", content=chunks(), headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]


def test_load_script_runs_without_errors(server):
    """benchmarks/load.py against this server for a few seconds: its table, and zero errors (no timing asserted)."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "load.py"
    out = subprocess.run([sys.executable, str(script), "--url", server, "--clients", "8", "--seconds", "3"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    row = out.stdout.strip().splitlines()[-1].split("|")
    assert row[1].strip() == "8" and row[3].strip() == "0" and float(row[4]) > 0
