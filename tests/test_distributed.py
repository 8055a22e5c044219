"""`train` under torchrun with 2 CPU processes (gloo) trains the same model as one process would."""

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from .conftest import need_module

need_module("torch")

TINY = ["--epochs", "2", "--batch-size", "16", "--image-size", "48", "--seed", "5", "--threads", "1",
        "--arch-kwargs", '{"widths": [8, 16, 16, 32], "blocks": [1, 1, 1, 1], "dropout": 0.0}', "--no-progress"]


#: what a C++ std::thread left joinable prints when it takes a process down (SIGABRT, exit -6)
GLOO_ABORT = "terminate called without an active exception"


def torchrun(args: list[str], fresh: Path | None = None) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 -m agegender.cli ARGS`. In CI on 2026-12-06 one rank aborted
    this way in C++ (no Python traceback; not reproduced in 80 local runs, idle, loaded and 3 jobs at once);
    such a run is retried once, with a warning (from scratch when `fresh` names its output folder, else as it
    stands, as a killed job resumes). Any other failure, or a second abort, fails the test."""
    launcher = shutil.which("torchrun") or pytest.fail("torchrun not found next to torch")
    cmd = [launcher, "--standalone", "--nproc_per_node", "2", "-m", "agegender.cli", *args]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0 and GLOO_ABORT in out.stderr:
        warnings.warn(f"a rank aborted in C++; retrying once: {out.stderr[-1500:]}", stacklevel=2)
        if fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)
        out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-3000:]
    return out


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(prepared, tmp_path):
    single, multi = tmp_path / "single", tmp_path / "ddp"
    base = [sys.executable, "-m", "agegender.cli", "train", str(prepared)]
    subprocess.run([*base, "-o", str(single), *TINY], check=True, capture_output=True)
    out = torchrun(["train", str(prepared), "-o", str(multi), *TINY], fresh=multi)
    h1 = json.loads((single / "history.json").read_text())
    h2 = json.loads((multi / "history.json").read_text())
    assert len(h1) == len(h2) == 2
    for a, b in zip(h1, h2):
        # the same samples, in the same global batches
        assert a["samples"] == b["samples"] and a["data_checksum"] == b["data_checksum"]
        # the same optimisation up to batch-norm statistics being per process
        assert abs(a["train_loss"] - b["train_loss"]) <= 0.05 * a["train_loss"]
        assert abs(a["val_loss"] - b["val_loss"]) <= 0.05 * a["val_loss"]
    # only rank 0 wrote: one set of outputs, and they load as a model
    assert out.stdout.count("best model:") == 1
    from agegender.models import load_estimator

    assert load_estimator(multi / "best.safetensors").preprocessing.size == 48
    # resume works in distributed mode too
    torchrun(["train", str(prepared), "-o", str(multi), "--epochs", "3", "--resume", "--no-progress"])
    assert [h["epoch"] for h in json.loads((multi / "history.json").read_text())] == [1, 2, 3]
