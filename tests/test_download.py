"""`agegender download` against a local HTTP server on loopback (never the internet)."""

import hashlib
import http.server
import io
import tarfile
import threading

import numpy as np
import pytest

from agegender.data.download import DownloadError, download_dataset

from .conftest import cli


def make_archive(frl_images) -> bytes:
    """A wiki_crop-style tar made in the test: a few real portraits, downscaled, and a labels file."""
    from PIL import Image

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i, p in enumerate(frl_images[:4]):
            img = io.BytesIO()
            Image.open(p).resize((270, 360)).save(img, format="JPEG", quality=90)
            info = tarfile.TarInfo(f"wiki_crop/{i:02d}/{p.name}")
            info.size = img.tell()
            img.seek(0)
            tar.addfile(info, img)
        noise = np.random.default_rng(0).integers(0, 255, 200_000, dtype=np.uint8).tobytes()
        info = tarfile.TarInfo("wiki_crop/blob.bin")
        info.size = len(noise)
        tar.addfile(info, io.BytesIO(noise))
    return buf.getvalue()


class Server:
    """Serves one file with Range support; the first `drops` responses are cut off halfway."""

    def __init__(self, payload: bytes, drops: int = 1) -> None:
        self.payload, self.drops, self.requests = payload, drops, []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                owner.requests.append(rng)
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                body = owner.payload[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(owner.payload) - 1}/{len(owner.payload)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if owner.drops > 0:
                    owner.drops -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # drop the connection halfway
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/wiki_crop.tar"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_resumes_after_dropped_connection_and_extracts(tmp_path, frl_images):
    payload = make_archive(frl_images)
    server = Server(payload, drops=1)
    try:
        digest = hashlib.sha256(payload).hexdigest()
        out = cli("download", "wiki", "--url", server.url, "--sha256", digest, "-o", str(tmp_path / "d"),
                  "--no-progress")
        assert "ok" in out.stdout
        assert server.requests[0] is None and server.requests[1].startswith("bytes=")  # resumed with a range
        got = (tmp_path / "d" / "wiki_crop.tar").read_bytes()
        assert got == payload
        assert (tmp_path / "d" / "wiki_crop.tar.sha256").read_text().split()[0] == digest
        extracted = sorted(p.name for p in (tmp_path / "d" / "wiki_crop").rglob("*.jpg"))
        assert extracted == sorted(p.name for p in frl_images[:4])
    finally:
        server.close()


def test_download_checksum_mismatch_and_offline(tmp_path, frl_images):
    server = Server(make_archive(frl_images), drops=0)
    try:
        with pytest.raises(DownloadError, match="does not match"):
            download_dataset("wiki", tmp_path / "a", url=server.url, sha256="0" * 64, progress=False)
    finally:
        server.close()
    # a port nobody listens on: a clear message, no traceback
    out = cli("download", "wiki", "--url", "http://127.0.0.1:9/x.tar", "-o", str(tmp_path / "b"), "--no-progress",
              check=False)
    assert out.returncode == 1 and "cannot reach" in out.stdout and "Traceback" not in out.stderr
    out = cli("download", "utkface", "-o", str(tmp_path / "c"), check=False)
    assert out.returncode == 1 and "Google Drive" in out.stdout
