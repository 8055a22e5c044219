"""Load test of `agegender serve`: N concurrent clients POST real images to /v1/predict for a fixed time.

Starts its own server on a free loopback port (or uses --url, which must be a loopback address: this
script never sends traffic anywhere else). Bounded in time (--seconds) and count (--max-requests).
Prints requests per second, latency percentiles and errors as a Markdown table; exits 1 on any error.

    python benchmarks/load.py                                    # 8 clients, 30 s, the built-in example
    python benchmarks/load.py --images ../shared/datasets/frl_canada/images/*.jpg
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np

EXAMPLE = Path(__file__).resolve().parent.parent / "src" / "agegender" / "assets" / "example.jpg"


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_loop(url: str, bodies: list[tuple[str, bytes]], deadline: float, budget: list[int], lock: threading.Lock,
                latencies: list[float], errors: list[str]) -> None:
    """POST the images round-robin until the deadline or the shared request budget runs out."""
    with httpx.Client(base_url=url, timeout=120) as client:
        i = 0
        while time.monotonic() < deadline:
            with lock:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            name, data = bodies[i % len(bodies)]
            i += 1
            t0 = time.perf_counter()
            try:
                r = client.post("/v1/predict", files={"file": (name, data, "image/jpeg")})
                ok = r.status_code == 200 and "faces" in r.json()
                reason = f"HTTP {r.status_code}: {r.text[:100]}"
            except (httpx.HTTPError, ValueError) as exc:
                ok, reason = False, f"{type(exc).__name__}: {exc}"
            ms = (time.perf_counter() - t0) * 1000
            with lock:
                (latencies.append(ms) if ok else errors.append(reason))


def run_load(url: str, images: list[Path], clients: int, seconds: float, max_requests: int) -> dict:
    bodies = [(p.name, p.read_bytes()) for p in images]
    with httpx.Client(base_url=url, timeout=120) as warm:  # one request first: nothing lazy in the numbers
        warm.post("/v1/predict", files={"file": (bodies[0][0], bodies[0][1], "image/jpeg")}).raise_for_status()
    latencies: list[float] = []
    errors: list[str] = []
    lock, budget = threading.Lock(), [max_requests]
    start = time.monotonic()
    threads = [threading.Thread(target=client_loop, args=(url, bodies, start + seconds, budget, lock, latencies,
                                                           errors)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    lat = np.array(latencies) if latencies else np.zeros(1)
    return {
        "clients": clients, "seconds": elapsed, "requests": len(latencies) + len(errors), "errors": len(errors),
        "rps": len(latencies) / elapsed, "p50": np.percentile(lat, 50), "p90": np.percentile(lat, 90),
        "p99": np.percentile(lat, 99), "max": lat.max(), "first_error": errors[0] if errors else "",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", help="a running server on a loopback address (default: start one here)")
    ap.add_argument("--images", nargs="+", type=Path, default=[EXAMPLE], help="JPEG files to send (round-robin)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--max-requests", type=int, default=100_000, help="stop after this many requests in all")
    ap.add_argument("--server-args", default="", help="extra `agegender serve` options when starting one")
    a = ap.parse_args()
    if a.url and not is_loopback(a.url):
        print(f"refusing {a.url}: this load test only targets loopback addresses", file=sys.stderr)
        return 2
    if not 0 < a.seconds <= 600 or a.clients < 1:
        print("--seconds must be in (0, 600] and --clients >= 1", file=sys.stderr)
        return 2
    from agegender.imageio import load_image
    from agegender.server.process import serve_process

    size = load_image(a.images[0]).shape
    label = f"{len(a.images)} image(s), {size[1]}x{size[0]}" + (" (first)" if len(a.images) > 1 else "")
    if a.url:
        result = run_load(a.url.rstrip("/"), a.images, a.clients, a.seconds, a.max_requests)
    else:
        with serve_process(["--log-level", "warning", *a.server_args.split()]) as url:
            result = run_load(url, a.images, a.clients, a.seconds, a.max_requests)
    print(f"\nPOST /v1/predict, {label}, {result['clients']} concurrent clients for {result['seconds']:.1f} s\n")
    print("| clients | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    r = result
    print(f"| {r['clients']} | {r['requests']} | {r['errors']} | {r['rps']:.1f} | {r['p50']:.0f} | {r['p90']:.0f} "
          f"| {r['p99']:.0f} | {r['max']:.0f} |")
    if r["errors"]:
        print(f"\nfirst error: {r['first_error']}", file=sys.stderr)
    return 1 if r["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
