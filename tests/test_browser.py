"""The web page in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright): upload a real
portrait and check the drawn labels; stream a fake camera made of real portraits and check the live boxes.

Screenshots go to test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from agegender.imageio import load_image
from agegender.server.process import serve_process

from .conftest import need_module, need_program

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _need_browser() -> None:
    need_module("playwright.sync_api", "the dev extra has playwright")
    need_program(str(CHROMIUM), "apt-get install chromium; .ci/run installs it")


@pytest.fixture(scope="module")
def server() -> str:
    _need_browser()
    with serve_process(["--log-level", "warning"]) as url:
        yield url


def launch(tmp_path: Path, extra_args: list[str] = ()):  # -> (playwright, context)
    """A fresh Chromium profile in tmp_path, with the flags the project's CI requires."""
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    ctx = pw.chromium.launch_persistent_context(
        str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True,
        args=[*CHROMIUM_ARGS, *extra_args], viewport={"width": 1100, "height": 900},
    )
    return pw, ctx


def watch_requests(page, server: str) -> list[str]:
    """Every URL the page requests; the page must load nothing from anywhere but our server."""
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    return urls


def wait_until(page, expression: str, timeout: float = 60.0) -> None:
    """Poll a JS expression from Python (page.wait_for_function evaluates strings, which the page's CSP
    forbids)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        page.wait_for_timeout(100)


def expected_label(face: dict) -> str:
    return f"{int(np.floor(face['age'] + 0.5))}, {'F' if face['gender'] == 'female' else 'M'}"


def test_upload_draws_labels(server, frl_images, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    portrait = frl_images[0]
    with open(portrait, "rb") as f:
        api = httpx.post(server + "/v1/predict", files={"file": (portrait.name, f, "image/jpeg")}, timeout=60).json()
    assert len(api["faces"]) == 1
    pw, ctx = launch(tmp_path)
    try:
        page = ctx.new_page()
        urls = watch_requests(page, server)
        page.goto(server + "/")
        page.set_input_files("#file-input", str(portrait))
        page.wait_for_selector(".result-card.done .face-label", timeout=60_000)
        labels = page.locator(".result-card.done .face-label").all_inner_texts()
        assert labels == [expected_label(f) for f in api["faces"]]
        row = page.locator(".result-card.done tbody tr").first.locator("td").all_inner_texts()
        assert row[1:5] == [f"{api['faces'][0]['age']:.1f}", shown_range(api["faces"][0]), api["faces"][0]["gender"],
                            f"{api['faces'][0]['gender_probability']:.2f}"]
        assert page.locator(".result-card.done .result-title").inner_text() == portrait.name
        shown = page.locator(".result-card.done .json").text_content()
        assert json.loads(shown) == api  # the page shows the API's JSON, unchanged
        # the drawn box sits where the API says, scaled to the displayed image
        img = page.locator(".result-card.done img").bounding_box()
        box = page.locator(".result-card.done .face-box").first.bounding_box()
        x1, y1, x2, y2 = api["faces"][0]["box"]
        sx, sy = img["width"] / api["width"], img["height"] / api["height"]
        assert abs(box["x"] - (img["x"] + x1 * sx)) < 2 and abs(box["y"] - (img["y"] + y1 * sy)) < 2
        assert abs(box["width"] - (x2 - x1) * sx) < 2 and abs(box["height"] - (y2 - y1) * sy) < 2
        page.screenshot(path=str(ARTIFACTS / "browser-upload.png"), full_page=True)
        # phone-sized screen: nothing wider than the screen, the box still on the face
        page.set_viewport_size({"width": 390, "height": 844})  # layout is recomputed when read below
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        img, box = (page.locator(f".result-card.done {s}").first.bounding_box() for s in ("img", ".face-box"))
        assert img["width"] <= 390 and abs(box["x"] - (img["x"] + x1 * img["width"] / api["width"])) < 2
        page.screenshot(path=str(ARTIFACTS / "browser-upload-phone.png"), full_page=True)
        # drag and drop a second portrait onto the drop zone: a new card on top, with its own labels
        second = frl_images[1]
        drop = page.evaluate_handle(
            """([name, b64]) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const dt = new DataTransfer();
                dt.items.add(new File([bytes], name, { type: "image/jpeg" }));
                return dt;
            }""", [second.name, base64.b64encode(second.read_bytes()).decode()])
        page.dispatch_event("#drop-zone", "drop", {"dataTransfer": drop})
        page.wait_for_selector(f'.result-card.done[data-name="{second.name}"] .face-label', timeout=60_000)
        assert page.locator(".result-card.done").first.get_attribute("data-name") == second.name
        assert urls and all(u.startswith(server) or u.startswith(("blob:", "data:")) for u in urls), urls
    finally:
        ctx.close()
        pw.stop()


def test_upload_of_formats_the_browser_cannot_show(server, frl_images, tmp_path):
    """A TIFF and a HEIC phone photo (stored turned): Chromium cannot show either, the server reads both. The
    card shows the server's drawing of the result at the image's displayed size, and the API's faces and JSON."""
    ARTIFACTS.mkdir(exist_ok=True)
    tiff = tmp_path / "portrait.tiff"
    rgb = load_image(frl_images[2])
    small = cv2.resize(rgb, (rgb.shape[1] // 3, rgb.shape[0] // 3), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tiff), small[..., ::-1])
    heic = Path(__file__).resolve().parent / "fixtures" / "phone_photo.heic"
    pw, ctx = launch(tmp_path)
    try:
        page = ctx.new_page()
        page.goto(server + "/")
        for path, kind in ((tiff, "image/tiff"), (heic, "image/heic")):
            with open(path, "rb") as f:
                api = httpx.post(server + "/v1/predict", files={"file": (path.name, f, kind)}, timeout=60).json()
            assert len(api["faces"]) == 1, api
            page.set_input_files("#file-input", str(path))
            card = f'.result-card.done[data-name="{path.name}"]'
            page.wait_for_selector(card, timeout=60_000)
            assert "server-drawn" in page.locator(card).get_attribute("class")
            assert page.locator(f"{card} .face-box").count() == 0  # the boxes are in the drawing, not twice
            size = page.evaluate(f"(() => {{ const i = document.querySelector('{card} img'); "
                                 "return [i.naturalWidth, i.naturalHeight]; })()")
            assert size == [api["width"], api["height"]], (path.name, size)
            assert "the server's drawing" in page.locator(f"{card} .result-summary").inner_text()
            row = page.locator(f"{card} tbody tr").first.locator("td").all_inner_texts()
            face = api["faces"][0]
            assert row[1:4] == [f"{face['age']:.1f}", shown_range(face), face["gender"]]
            assert json.loads(page.locator(f"{card} .json").text_content()) == api
        page.screenshot(path=str(ARTIFACTS / "browser-upload-server-drawn.png"), full_page=True)
    finally:
        ctx.close()
        pw.stop()


def shown_range(face: dict) -> str:
    """The table's range cell for an API face: its age range in whole years, rounded as JavaScript rounds."""
    return "-".join(str(math.floor(v + 0.5)) for v in face["age_range"])


def write_y4m(path: Path, images: list[Path], size: tuple[int, int] = (640, 480), fps: int = 10,
              frames_each: int = 10) -> None:
    """A YUV4MPEG2 (4:2:0) video of the given photos, each letterboxed into `size` and held `frames_each`."""
    w, h = size
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for image_path in images:
            rgb = load_image(image_path)
            scale = min(w / rgb.shape[1], h / rgb.shape[0])
            small = cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)),
                               interpolation=cv2.INTER_AREA)
            frame = np.full((h, w, 3), 40, np.uint8)
            y0, x0 = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
            frame[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
            i420 = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420)
            for _ in range(frames_each):
                f.write(b"FRAME\n")
                f.write(i420.tobytes())


def test_camera_mode_draws_live_boxes(server, frl_images, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    video = tmp_path / "faces.y4m"
    write_y4m(video, frl_images[:3])
    pw, ctx = launch(tmp_path, ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                                f"--use-file-for-fake-video-capture={video}"])
    try:
        ctx.grant_permissions(["camera"], origin=server)
        page = ctx.new_page()
        urls = watch_requests(page, server)
        page.goto(server + "/")
        page.click("#tab-camera")
        page.click("#camera-start")
        page.wait_for_selector("#camera-stage .face-box", timeout=60_000)
        wait_until(page, "Number(document.querySelector('#fps').dataset.fps || 0) > 0")
        assert page.evaluate("document.querySelector('#video').videoWidth") == 640
        label = page.locator("#camera-stage .face-label").first.inner_text()
        assert re.fullmatch(r"\d+, [MF]", label), label
        # the face is in the middle of each frame (portraits letterboxed into 640x480)
        # read stage and box in one step: live boxes are redrawn every frame and may vanish between reads
        geometry = None
        for _ in range(100):
            geometry = page.evaluate(
                """() => { const s = document.querySelector('#camera-stage').getBoundingClientRect();
                   const b = document.querySelector('#camera-stage .face-box'); if (!b) return null;
                   const r = b.getBoundingClientRect();
                   return {centre: (r.x + r.width / 2 - s.x) / s.width, share: r.width / s.width}; }"""
            )
            if geometry:
                break
            page.wait_for_timeout(100)
        assert geometry, "live boxes stopped appearing"
        assert 0.3 < geometry["centre"] < 0.7 and geometry["share"] < 0.4
        page.wait_for_timeout(1500)  # let the frame rate settle before the screenshot
        fps_text = page.locator("#fps").inner_text()
        assert re.match(r"\d+\.\d fps", fps_text), fps_text
        page.screenshot(path=str(ARTIFACTS / "browser-camera.png"))
        page.click("#camera-stop")
        assert page.locator("#camera-stage .face-box").count() == 0
        assert all(u.startswith(server) or u.startswith(("blob:", "data:")) for u in urls), urls
    finally:
        ctx.close()
        pw.stop()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_api_docs_render_offline(server, tmp_path):
    """Swagger UI (/docs) renders the API from assets this server serves, nothing else (no ReDoc: its page
    fetches a logo from a CDN)."""
    ARTIFACTS.mkdir(exist_ok=True)
    pw, ctx = launch(tmp_path)
    try:
        page = ctx.new_page()
        urls = watch_requests(page, server)
        page.goto(server + "/docs")
        page.wait_for_selector('.opblock-summary-path[data-path="/v1/predict"]', timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "browser-docs.png"))
        page.locator(".opblock-summary-path").first.click()  # open POST /v1/predict: its schema renders
        page.wait_for_selector("text=annotate", timeout=30_000)
        outside = [u for u in urls if not u.startswith((server, "blob:", "data:"))]
        assert not outside, outside
    finally:
        ctx.close()
        pw.stop()
