"""A corpus of bad and odd inputs, generated here from the built-in example photo (a HEIC copy of it is in
tests/fixtures) and real UTKFace faces, run through `agegender predict` (CLI), the Python API and the
server. Every input gets a clear answer: faces, no faces, or one error line; no input sinks the batch.
docs/robustness.md lists the same cases."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, features

from agegender import Predictor
from agegender.imageio import ImageLoadError, decode_image, load_image

from .conftest import UTK_DIR, need, need_module

EXAMPLE = Path(__file__).resolve().parent.parent / "src" / "agegender" / "assets" / "example.jpg"
PHONE_HEIC = Path(__file__).resolve().parent / "fixtures" / "phone_photo.heic"  # _portrait as HEIC (fixtures/README.md)
UPSCALE = 16  # the "panorama": the portrait blown up to 6144 x 8192 = 50 megapixels


@dataclass
class Case:
    """One corpus file and what the user must see: `faces` faces (None: not checked), the face at `box`
    (in displayed pixels, checked within `tol` pixels), or an error containing `error`."""

    name: str
    faces: int | None = 1
    box: tuple[float, ...] | None = None
    tol: float = 8.0
    size: tuple[int, int] | None = None  # (width, height) as displayed
    error: str | None = None


def _portrait() -> np.ndarray:
    """The example photo cut to 384 x 512 (portrait, so a wrong EXIF rotation shows in width/height)."""
    return np.ascontiguousarray(load_image(EXAMPLE)[:, 40:424])


def _save(path: Path, img: Image.Image, fmt: str, **kw) -> None:
    img.save(path, format=fmt, **kw)


def _exif_rotated(path: Path, rgb: np.ndarray, orientation: int) -> None:
    """Store the pixels turned so that a viewer applying EXIF `orientation` shows `rgb` upright."""
    t = Image.Transpose
    undo = {2: t.FLIP_LEFT_RIGHT, 3: t.ROTATE_180, 4: t.FLIP_TOP_BOTTOM, 5: t.TRANSPOSE, 6: t.ROTATE_90,
            7: t.TRANSVERSE, 8: t.ROTATE_270}
    stored = Image.fromarray(rgb).transpose(undo[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, format="JPEG", quality=95, exif=exif.tobytes())


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels (a decompression bomb's header) and holds almost nothing."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _stadium() -> np.ndarray:
    """100 real UTKFace faces in a 10 x 10 grid of 160-pixel tiles (1600 x 1600)."""
    files = sorted(need(UTK_DIR).glob("*.jpg"))[::200][:100]
    tiles = [cv2.resize(load_image(f), (160, 160), interpolation=cv2.INTER_AREA) for f in files]
    return np.concatenate([np.concatenate(tiles[i * 10 : (i + 1) * 10], 1) for i in range(10)], 0)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, predictor) -> tuple[Path, list[Case]]:
    need_module("pi_heif")  # the 'heif' extra (in 'dev'): phone_photo.heic is read, not refused
    d = tmp_path_factory.mktemp("corpus")
    rgb = _portrait()
    ref = predictor.predict(rgb).faces
    assert len(ref) == 1
    box = ref[0].detection.box
    pil = Image.fromarray(rgb)
    h, w = rgb.shape[:2]
    cases: list[Case] = []

    def good(name: str, tol: float = 8.0) -> None:
        cases.append(Case(name, 1, box, tol, (w, h)))

    for o in range(2, 9):
        _exif_rotated(d / f"exif_orientation_{o}.jpg", rgb, o)
        good(f"exif_orientation_{o}.jpg")
    jpeg = io.BytesIO()
    pil.save(jpeg, format="JPEG", quality=95)
    garbage = b"Exif\x00\x00II*\x00\xff\xff\xff\x7f" + b"\xde\xad" * 40  # an EXIF block pointing nowhere
    segment = b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage
    (d / "broken_exif.jpg").write_bytes(jpeg.getvalue()[:2] + segment + jpeg.getvalue()[2:])
    good("broken_exif.jpg")
    _save(d / "grey.png", pil.convert("L"), "PNG")
    good("grey.png")
    grey16 = np.asarray(pil.convert("L"), np.uint16) * 257
    _save(d / "grey_16bit.png", Image.fromarray(grey16), "PNG")
    good("grey_16bit.png")
    cv2.imwrite(str(d / "rgb_16bit.png"), rgb[..., ::-1].astype(np.uint16) * 257)
    good("rgb_16bit.png")
    rgba = pil.convert("RGBA")
    alpha = np.full((h, w), 255, np.uint8)
    alpha[:, :40] = 0  # a transparent strip: composited on white
    rgba.putalpha(Image.fromarray(alpha))
    _save(d / "rgba.png", rgba, "PNG")
    good("rgba.png")
    la = pil.convert("LA")
    _save(d / "grey_alpha.png", la, "PNG")
    good("grey_alpha.png")
    pal = pil.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    _save(d / "palette_transparent.png", pal, "PNG", transparency=0)
    good("palette_transparent.png")
    _save(d / "cmyk.jpg", pil.convert("CMYK"), "JPEG", quality=95)
    good("cmyk.jpg")
    for name, fmt in (("photo.webp", "WEBP"), ("photo.bmp", "BMP"), ("photo.tiff", "TIFF"), ("photo.gif", "GIF")):
        _save(d / name, pil, fmt)
        good(name, tol=12.0)
    _save(d / "jpeg_named.png", pil, "JPEG", quality=95)
    good("jpeg_named.png")
    shutil.copy(PHONE_HEIC, d / "phone_photo.heic")  # stored turned, HEIF rotation: read upright (pi-heif)
    good("phone_photo.heic", tol=12.0)
    if features.check("avif"):
        _save(d / "photo.avif", pil, "AVIF", quality=90)
        good("photo.avif", tol=12.0)
    else:  # a Pillow without libavif: the file is named for what it is
        (d / "photo.avif").write_bytes(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 64)
        cases.append(Case("photo.avif", error="AVIF image"))
    big = cv2.resize(rgb, (w * UPSCALE, h * UPSCALE), interpolation=cv2.INTER_LINEAR)
    _save(d / "panorama_50mp.jpg", Image.fromarray(big), "JPEG", quality=80)
    del big
    cases.append(Case("panorama_50mp.jpg", 1, tuple(v * UPSCALE for v in box), 0.03 * UPSCALE * (box[3] - box[1]),
                      (w * UPSCALE, h * UPSCALE)))
    thumb = cv2.resize(rgb, (72, 96), interpolation=cv2.INTER_AREA)
    _save(d / "thumbnail_72x96.jpg", Image.fromarray(thumb), "JPEG", quality=90)
    cases.append(Case("thumbnail_72x96.jpg", 1, tuple(v * 72 / w for v in box), 6.0, (72, 96)))  # face ~20 px
    for name, shape in (("one_pixel.png", (1, 1, 3)), ("tiny_8x8.png", (8, 8, 3)), ("thin_20000x3.png", (3, 20000, 3))):
        _save(d / name, Image.fromarray(np.full(shape, 200, np.uint8)), "PNG")
        cases.append(Case(name, 0, size=(shape[1], shape[0])))
    noise = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    _save(d / "no_face.png", Image.fromarray(noise), "PNG")
    cases.append(Case("no_face.png", 0, size=(400, 300)))
    _save(d / "stadium.jpg", Image.fromarray(_stadium()), "JPEG", quality=92)
    cases.append(Case("stadium.jpg", None, size=(1600, 1600)))
    # the bad ones
    data = EXAMPLE.read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    cases.append(Case("truncated.jpg", error="truncated image"))
    png = io.BytesIO()
    pil.save(png, format="PNG")
    (d / "truncated.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    cases.append(Case("truncated.png", error="truncated image"))
    (d / "random_bytes.jpg").write_bytes(np.random.default_rng(1).bytes(5000))
    cases.append(Case("random_bytes.jpg", error="not an image"))
    (d / "empty.jpg").write_bytes(b"")
    cases.append(Case("empty.jpg", error="empty file"))
    (d / "bomb.png").write_bytes(_png_header_only(40_000, 40_000))
    cases.append(Case("bomb.png", error="exceeds the limit"))
    for name, fourcc in (("clip.mp4", "mp4v"), ("clip.avi", "MJPG")):  # videos given as photos
        video = cv2.VideoWriter(str(d / name), cv2.VideoWriter_fourcc(*fourcc), 10, (w, h))
        for _ in range(3):
            video.write(rgb[..., ::-1])
        video.release()
        cases.append(Case(name, error="a video, not an image (agegender demo --video"))
    (d / "notes.txt").write_text("a text file in the photo folder\n")
    cases.append(Case("notes.txt", error="not an image"))
    cases.append(Case("missing.jpg", error="no such file"))
    return d, cases


def _check(case: Case, result: dict) -> None:
    """Compare one JSON result (the JSONL contract) with what the case expects."""
    if case.error:
        assert case.error in result.get("error", ""), (case.name, result)
        assert "\n" not in result["error"] and case.name in result["error"]
        return
    assert "error" not in result, (case.name, result)
    if case.size:
        assert (result["width"], result["height"]) == case.size, case.name
    if case.faces is not None:
        assert len(result["faces"]) == case.faces, (case.name, result)
    if case.box:
        got = result["faces"][0]["box"]
        assert np.abs(np.array(got) - np.array(case.box)).max() <= case.tol, (case.name, got, case.box)


def test_cli_predict_answers_every_corpus_file(corpus):
    d, cases = corpus
    paths = [str(d / c.name) for c in cases]
    out = subprocess.run([sys.executable, "-m", "agegender.cli", "predict", *paths, "--format", "jsonl",
                          "--no-progress", "-o", str(d / "out" / "results.jsonl")], capture_output=True, text=True)
    assert out.returncode == 1  # some inputs failed, the rest ran
    assert "Traceback" not in out.stderr
    lines = (d / "out" / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["image"] for line in lines] == paths  # one answer per input, in order
    assert [p.name for p in (d / "out").iterdir()] == ["results.jsonl"]  # no temporary file left
    errors = [c for c in cases if c.error]
    err_lines = [s for s in out.stderr.splitlines() if s.startswith("agegender predict: ")]
    for c in errors:
        assert sum(c.name in s for s in err_lines) == 1, (c.name, out.stderr)
    for c, line in zip(cases, lines):
        _check(c, json.loads(line))
    stadium = json.loads(lines[[c.name for c in cases].index("stadium.jpg")])
    assert len(stadium["faces"]) >= 90


def test_cli_folder_skips_non_images_and_reports_skipped_faces(corpus):
    d, cases = corpus
    out = subprocess.run([sys.executable, "-m", "agegender.cli", "predict", str(d), "--no-progress",
                          "--max-faces", "10", "--min-face", "20"], capture_output=True, text=True)
    assert "Traceback" not in out.stderr
    assert "notes.txt" not in out.stdout + out.stderr  # a folder is searched for image files only
    table = {line.split(" (")[0]: line for line in out.stdout.splitlines() if not line.startswith("  ")}
    assert "10 face(s) (" in table[str(d / "stadium.jpg")] and "over --max-faces" in table[str(d / "stadium.jpg")]
    assert table[str(d / "thumbnail_72x96.jpg")].endswith("0 face(s) (1 too small not estimated)")
    assert "faces found but not estimated:" in out.stderr and "(--min-face 20 px, --max-faces 10)" in out.stderr


def test_python_api_on_the_corpus(corpus, predictor):
    d, cases = corpus
    for c in cases:
        if c.error:
            with pytest.raises(ImageLoadError) as info:
                predictor.predict(d / c.name)
            assert c.error in str(info.value) and "\n" not in str(info.value)
        elif c.name != "stadium.jpg":
            _check(c, predictor.predict(d / c.name).to_json())
    mixed = [c for c in cases if c.error or c.name in ("grey.png", "one_pixel.png")]  # bad files between good
    results = [r for r, _ in predictor.predict_many([d / c.name for c in mixed])]
    assert [bool(r.error) for r in results] == [bool(c.error) for c in mixed]


def test_many_faces_cap_keeps_the_largest(corpus, predictor):
    d, _ = corpus
    image = load_image(d / "stadium.jpg")
    full = predictor.predict_array(image)
    capped = Predictor(predictor.estimator, max_faces=10).predict_array(image)
    assert len(full.faces) >= 90 and not full.skipped_faces
    assert len(capped.faces) == 10 and capped.skipped_faces == {"over_max_faces": len(full.faces) - 10}
    assert [f.detection.box for f in capped.faces] == [f.detection.box for f in full.faces[:10]]
    assert [f.age for f in capped.faces] == pytest.approx([f.age for f in full.faces[:10]], abs=1e-4)


def test_small_faces_are_skipped_and_counted(corpus, predictor):
    d, _ = corpus
    strict = Predictor(predictor.estimator, min_face=20)
    r = strict.predict(d / "thumbnail_72x96.jpg")
    assert r.faces == [] and r.skipped_faces == {"too_small": 1}
    assert r.to_json()["skipped_faces"] == {"too_small": 1}
    assert "skipped_faces" not in predictor.predict(d / "thumbnail_72x96.jpg").to_json()


def test_special_and_oversized_files_are_refused_unread(tmp_path, predictor):
    """A pipe (which would block a read), a directory and a file over MAX_FILE_BYTES (sparse: no disk used)."""
    import os

    from agegender.imageio import MAX_FILE_BYTES

    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "folder.jpg").mkdir()
    with open(tmp_path / "huge.tif", "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    expected = {"pipe.jpg": "not a regular file", "folder.jpg": "is a directory", "huge.tif": "exceeds the limit"}
    results = [r for r, _ in predictor.predict_many([tmp_path / n for n in expected] + [EXAMPLE])]
    for r, (name, reason) in zip(results, expected.items()):
        assert r.error == f"{tmp_path / name}: {reason}" or (reason in r.error and name in r.error), r.error
    assert len(results[-1].faces) == 1


def test_decode_modes_keep_their_values():
    """16-bit values are scaled by 1/257 whatever the brightest pixel (a dark 16-bit image stays dark);
    alpha is composited on white; CMYK JPEG colours come back close to the RGB original."""
    dark = np.full((4, 5), 257 * 20, np.uint16)
    buf = io.BytesIO()
    Image.fromarray(dark).save(buf, format="PNG")
    assert (decode_image(buf.getvalue()) == 20).all()
    rgba = np.zeros((4, 4, 4), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    assert (decode_image(buf.getvalue()) == 255).all()
    rgb = _portrait()
    buf = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buf, format="JPEG", quality=95)
    assert np.abs(decode_image(buf.getvalue()).astype(int) - rgb).mean() < 3


# ---- the same corpus and fuzzed requests through a real `agegender serve` process -------------------------

SERVER_MAX_UPLOAD_MB = 8


@pytest.fixture(scope="module")
def server() -> str:
    need_module("fastapi", 'pip install -e ".[serve]"')
    from agegender.server.process import serve_process

    with serve_process(["--max-upload-mb", str(SERVER_MAX_UPLOAD_MB), "--log-level", "critical"]) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    import httpx

    with httpx.Client(base_url=server, timeout=120) as c:
        yield c


def _post(client, data: bytes, content_type: str = "application/octet-stream"):
    return client.post("/v1/predict", content=data, headers={"Content-Type": content_type})


def _assert_clean_error(r, statuses=(400, 413, 415)) -> None:
    assert r.status_code in statuses, (r.status_code, r.text[:300])
    msg = r.json()["error"]
    assert msg and "\n" not in msg and "Traceback" not in msg


@pytest.mark.slow
def test_server_answers_the_corpus(corpus, client):
    """Each corpus file as an upload: the same answer as the CLI, or a 4xx with the same one-line reason.
    The server's default pixel cap (50 M) is lower than the CLI's, so the 50-megapixel panorama gets a 413."""
    d, cases = corpus
    for c in cases:
        if c.name == "missing.jpg":
            continue
        r = _post(client, (d / c.name).read_bytes())
        if c.name == "panorama_50mp.jpg":
            _assert_clean_error(r, (413,))
            assert "exceeds the limit" in r.json()["error"]
        elif c.error:
            _assert_clean_error(r)
            assert c.error in r.json()["error"].replace("upload", c.name)
        else:
            assert r.status_code == 200, (c.name, r.text[:300])
            if c.name == "stadium.jpg":
                assert len(r.json()["faces"]) >= 90
            else:
                _check(c, r.json())
    assert client.get("/v1/health").json()["status"] == "ok"


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=3000), magic=st.sampled_from([b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"RIFF",
                                                             b"GIF89a", b"BM", b"II*\x00"]),
       ctype=st.sampled_from(["image/jpeg", "image/png", "application/octet-stream", "multipart/form-data",
                              "multipart/form-data; boundary=xyz", "text/plain", ""]))
def test_server_fuzz_random_bodies_get_a_clean_4xx(client, body, magic, ctype):
    r = _post(client, magic + body, ctype)
    _assert_clean_error(r)


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=20),
       cut=st.none() | st.integers(0, 10**6))
def test_server_fuzz_damaged_images_never_break_it(client, edits, cut):
    """Bytes of a real photo overwritten or cut anywhere: a result or a clean 4xx, never a 500."""
    data = bytearray(EXAMPLE.read_bytes())
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    r = _post(client, bytes(data), "image/jpeg")
    if r.status_code != 200:
        _assert_clean_error(r)


def _raw_request(url: str, head: bytes, body_parts: list = ()) -> bytes:
    """Send a hand-made HTTP request over a socket, then read the raw response until the server closes.
    A body part is bytes to send, or a callable run in between (e.g. to wait on an event: a client that
    stops in the middle of its upload)."""
    import socket
    from urllib.parse import urlparse

    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=60) as s:
        try:
            s.sendall(head)
            for part in body_parts:
                if callable(part):
                    part()
                else:
                    s.sendall(part)
        except OSError:  # the server may answer and close before the whole request is sent (413, 431)
            pass
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b'"}' in chunk:
                break
        return b"".join(chunks)


def _status(reply: bytes) -> bytes:
    """The status code of a raw HTTP response (b"" when there was no response at all)."""
    return reply.split(b" ")[1] if reply.startswith(b"HTTP/") else b""


@pytest.mark.slow
def test_server_huge_headers_are_refused_and_it_keeps_serving(server, client):
    big = b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
    assert _status(_raw_request(server, big)) in (b"400", b"413", b"431")  # an answer, not a dropped connection
    many = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(20_000)) + b"\r\n"
    assert _status(_raw_request(server, many)) in (b"400", b"413", b"431")
    assert client.get("/v1/health").status_code == 200


@pytest.mark.slow
def test_server_slow_uploads_hold_the_limits_and_block_nobody(server, client):
    """A client that stops in the middle of its upload does not stall other requests, and gets its answer
    when it goes on; a chunked upload over the size limit, sent a chunk at a time, still gets a 413."""
    import threading

    jpeg = EXAMPLE.read_bytes()
    head = (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(jpeg))
    half_sent, go_on = threading.Event(), threading.Event()
    replies: list[bytes] = []
    parts = [jpeg[: len(jpeg) // 2], half_sent.set, go_on.wait, jpeg[len(jpeg) // 2 :]]
    slow = threading.Thread(target=lambda: replies.append(_raw_request(server, head, parts)))
    slow.start()
    try:
        assert half_sent.wait(60)
        assert client.get("/v1/health").status_code == 200  # answered while half of the upload is held back
    finally:
        go_on.set()
        slow.join(timeout=120)
    assert replies and _status(replies[0]) == b"200" and b'"faces":[{' in replies[0].replace(b" ", b"")

    limit = SERVER_MAX_UPLOAD_MB * 1024 * 1024
    chunk = b"\xff" * (1024 * 1024)
    body = [b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(SERVER_MAX_UPLOAD_MB + 2)] + [b"0\r\n\r\n"]
    head = (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    reply = _raw_request(server, head, body)
    assert _status(reply) == b"413" and b"exceeds the limit of %d bytes" % limit in reply
    assert client.get("/v1/health").status_code == 200
