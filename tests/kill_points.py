"""Killing `agegender` at a chosen point, whatever the machine's load: the child runs the real CLI and stops
at the point, tells the test through a pipe (or a file), and waits there for the SIGKILL. Only the moment of
the kill is chosen.

Points (`kill_at`): "file PATH" (right after PATH is written under its final name: every atomic write ends
in os.replace), "results N" (after N results were written by ResultWriter), "parts N" (after N Parquet part
files were written). `kill_a_ray_worker` kills a Ray worker in the middle of its first batch instead, and
lets the driver run on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

PAUSING_CLI = r"""
import os, sys, threading
from agegender.cli import main
from agegender.inference.batch import ResultWriter
from agegender.inference.parquet_results import ParquetResults

kind, arg, fd = sys.argv[1], sys.argv[2], int(sys.argv[3])

def pause():
    os.write(fd, b"paused")
    threading.Event().wait()

if kind == "file":
    real_replace = os.replace
    def replace(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if os.fspath(dst) == arg:
            pause()
    os.replace = replace
elif kind == "parts":
    real_flush = ParquetResults.flush
    def flush(self):
        real_flush(self)
        if self.parts_written == int(arg):
            pause()
    ParquetResults.flush = flush
elif kind == "worker":
    # a Ray worker that, on the first batch any worker gets, writes its pid to the file `arg` and stops there;
    # later batches (the retry of that one too) run as usual. Defined here in __main__, so Ray ships it by value
    import agegender.inference.ray_engine as engine

    class PausingActor(engine.FaceBatchActor):
        def __call__(self, batch):
            try:
                flag = os.open(arg, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return super().__call__(batch)
            os.write(flag, str(os.getpid()).encode())
            os.close(flag)
            threading.Event().wait()

    engine.FaceBatchActor = PausingActor
else:
    real_write, written = ResultWriter.write, []
    def write(self, result):
        real_write(self, result)
        written.append(result)
        if len(written) == int(arg):
            pause()
    ResultWriter.write = write
sys.exit(main(sys.argv[4:]))
"""


def start_paused(args: list[str], kind: str, arg: str | Path) -> tuple[subprocess.Popen, int]:
    """`agegender ARGS` in a child process with the point (kind, arg) armed; returns it and the pipe's read end."""
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", PAUSING_CLI, kind, str(arg), str(w), *args], pass_fds=(w,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(w)
    return proc, r


def kill_at(args: list[str], kind: str, arg: str | Path) -> None:
    """Run `agegender ARGS`, SIGKILL it when it reaches the point (kind, arg); fail if it ended without
    reaching it."""
    proc, r = start_paused(args, kind, arg)
    with os.fdopen(r, "rb") as pipe:
        reached = pipe.read(6) == b"paused"  # blocks until the child pauses (or exits: EOF)
    if reached:
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert reached, f"the run ended (exit {proc.returncode}) before it reached {kind} {arg}: {err.decode()[-2000:]}"
    assert proc.returncode == -signal.SIGKILL


def kill_a_ray_worker(args: list[str], flag: Path, is_ours, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `agegender predict ... --engine ray ARGS`; when a worker has stopped in its first batch (it writes
    its pid to `flag`), SIGKILL that worker and let the run go on to its end. is_ours(pid): whether the
    process belongs to the test's own cluster (never kill anything else). Returns the finished run."""
    proc, r = start_paused(args, "worker", flag)
    os.close(r)  # the driver does not pause
    try:
        pid = _wait_for_pid(flag, proc, timeout)
        assert is_ours(pid), f"pid {pid} in {flag} is not a worker of the test's Ray cluster"
        os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(args, proc.returncode, "", err.decode())


def _wait_for_pid(flag: Path, proc: subprocess.Popen, timeout: float) -> int:
    """The pid a worker wrote to `flag`: waits for the file (the event), failing if the run ends first."""
    import time

    deadline = time.monotonic() + timeout
    while not (flag.exists() and flag.read_text()):
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before a worker paused: "
                                 f"{proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no worker paused within {timeout:.0f} s")
        time.sleep(0.1)
    return int(flag.read_text())
