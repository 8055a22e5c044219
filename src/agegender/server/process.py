"""Start `agegender serve` in a child process on a free loopback port (for tests and benchmarks).

    >>> with serve_process(["--max-upload-mb", "2"]) as url:
    ...     httpx.get(url + "/v1/health")
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on host right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_process(args: list[str] | None = None, host: str = "127.0.0.1", timeout: float = 120.0) -> Iterator[str]:
    """Run `agegender serve --host host --port <free> *args`; yield its base URL once /v1/health answers;
    stop it on exit. Raises RuntimeError with the server's output if it does not come up."""
    port = free_port(host)
    cmd = [sys.executable, "-m", "agegender.cli", "serve", "--host", host, "--port", str(port), *(args or [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
            try:
                with urllib.request.urlopen(url + "/v1/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
