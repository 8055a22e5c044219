"""SIGKILL in the middle of `prepare`, `train` and `predict -o`, then run again: nothing half-written is
left under a final name, and the resumed results equal those of an uninterrupted run (real UTKFace subset,
tiny network, CPU, one thread: training is bitwise deterministic there, so the final weights match exactly)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from .conftest import cli, need_module
from .kill_points import kill_at

need_module("torch")

TINY = ["--image-size", "32", "--batch-size", "16", "--limit", "32", "--epochs", "5", "--threads", "1",
        "--arch-kwargs", '{"widths": [8, 8, 16, 16], "blocks": [1, 1, 1, 1]}', "--mixup", "0.2", "--ema", "0.9",
        "--erase", "0.3", "--no-progress"]


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def prepared_pair(utk_subset, tmp_path_factory) -> tuple[Path, Path]:
    """The same prepare run twice: once straight through, once killed after two chunks and resumed."""
    base = tmp_path_factory.mktemp("kill_prepare")
    src = ["prepare", "utkface", str(utk_subset / "images"), "--split-file", str(utk_subset / "split.csv"),
           "--chunk-size", "8", "--no-progress"]
    cli(*src, "-o", str(base / "straight"))
    killed = base / "killed"
    kill_at([*src, "-o", str(killed)], "file", killed / "parts" / "00001.csv")  # after two chunks of eight
    assert sorted(p.name for p in (killed / "parts").glob("*.csv")) == ["00000.csv", "00001.csv"]
    assert not (killed / "labels.csv").exists()
    cli(*src, "-o", str(killed))
    return base / "straight", killed


def test_prepare_killed_and_resumed_equals_a_straight_run(prepared_pair):
    straight, killed = prepared_pair
    a, b = tree(straight), tree(killed)
    assert not [n for n in b if ".tmp" in n]  # temporary files of the killed run were cleared
    a.pop("summary.png", None), b.pop("summary.png", None)  # a plot: compared by presence only
    assert sorted(a) == sorted(b)
    assert a == b  # labels, crops (byte for byte), skipped lists, meta


def test_train_killed_and_resumed_matches_an_uninterrupted_run(prepared_pair, tmp_path):
    from safetensors.numpy import load_file

    data = str(prepared_pair[0])
    cli("train", data, "-o", str(tmp_path / "straight"), *TINY)
    run = tmp_path / "killed"
    kill_at(["train", data, "-o", str(run), *TINY], "file", run / "checkpoint.pt")  # after epoch 1
    import torch

    done = int(torch.load(run / "checkpoint.pt", weights_only=True)["epoch"])
    assert done == 1
    out = cli("train", data, "-o", str(run), "--resume", "--threads", "1", "--no-progress")  # as saved
    assert f"resuming {run} at epoch {done + 1}/5" in out.stdout
    straight = json.loads((tmp_path / "straight" / "history.json").read_text())
    resumed = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in resumed] == [1, 2, 3, 4, 5]
    metrics = ("train_loss", "train_age_mae", "val_loss", "val_age_mae", "val_gender_acc", "lr")
    for a, b in zip(straight, resumed):
        assert {k: a[k] for k in metrics} == {k: b[k] for k in metrics}
    for name in ("last.safetensors", "best.safetensors"):
        wa, wb = load_file(tmp_path / "straight" / name), load_file(run / name)
        assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa), name


def test_predict_killed_leaves_no_half_written_results(frl_images, tmp_path):
    out = tmp_path / "results.jsonl"
    inputs = [str(p) for p in frl_images[:20]]

    kill_at(["predict", *inputs, "--format", "jsonl", "-o", str(out), "--no-progress"], "results", 2)
    partial = list(tmp_path.glob(".results.jsonl.tmp*"))
    assert len(partial) == 1 and len(partial[0].read_text().splitlines()) == 2
    assert not out.exists()  # the partial results sit only in a temporary file
    cli("predict", *inputs[:3], "--format", "jsonl", "-o", str(out), "--no-progress")
    assert len(out.read_text().splitlines()) == 3
