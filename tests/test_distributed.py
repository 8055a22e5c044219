"""`train` under torchrun with 2 CPU processes (gloo) trains the same model as one process would."""

import json
import shutil
import subprocess
import sys

import pytest

from .conftest import need_module

need_module("torch")

TINY = ["--epochs", "2", "--batch-size", "16", "--image-size", "48", "--seed", "5", "--threads", "1",
        "--arch-kwargs", '{"widths": [8, 16, 16, 32], "blocks": [1, 1, 1, 1], "dropout": 0.0}', "--no-progress"]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(prepared, tmp_path):
    single, multi = tmp_path / "single", tmp_path / "ddp"
    base = [sys.executable, "-m", "agegender.cli", "train", str(prepared)]
    subprocess.run([*base, "-o", str(single), *TINY], check=True, capture_output=True)
    torchrun = shutil.which("torchrun") or pytest.fail("torchrun not found next to torch")
    out = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "agegender.cli", "train",
                          str(prepared), "-o", str(multi), *TINY], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
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
    out = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "agegender.cli", "train",
                          str(prepared), "-o", str(multi), "--epochs", "3", "--resume", "--no-progress"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert [h["epoch"] for h in json.loads((multi / "history.json").read_text())] == [1, 2, 3]
