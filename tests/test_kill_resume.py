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


@pytest.fixture(scope="module")
def predict_inputs(frl_images, tmp_path_factory) -> list[str]:
    """Eight real portraits, a corrupt file among them, and a portrait again under the same file name in
    another folder (its annotated copy needs a second name)."""
    odd = tmp_path_factory.mktemp("odd_inputs")
    (odd / "broken.jpg").write_bytes(frl_images[0].read_bytes()[:300])  # a JPEG cut short
    (odd / "again").mkdir()
    twin = odd / "again" / frl_images[1].name
    twin.write_bytes(frl_images[5].read_bytes())
    return [*map(str, frl_images[:4]), str(odd / "broken.jpg"), str(twin), *map(str, frl_images[4:7])]


@pytest.fixture(scope="module")
def straight_results(predict_inputs, tmp_path_factory) -> dict[str, tuple[bytes, list[str]]]:
    """Each format's file and annotated copies' names from one uninterrupted run."""
    out = {}
    for fmt in ("jsonl", "csv"):
        folder = tmp_path_factory.mktemp(f"straight_{fmt}")
        run = cli("predict", *predict_inputs, "--format", fmt, "-o", str(folder / f"r.{fmt}"), "--save-dir",
                  str(folder / "drawn"), "--no-progress", check=False)
        assert run.returncode == 1, run.stderr  # the corrupt file
        out[fmt] = (folder / f"r.{fmt}").read_bytes(), sorted(p.name for p in (folder / "drawn").iterdir())
    return out


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_predict_killed_resumes_to_the_file_of_an_uninterrupted_run(fmt, predict_inputs, straight_results,
                                                                     tmp_path):
    """SIGKILL after 6 images (the corrupt one among them), then the same command: the file is byte for byte
    that of one uninterrupted run, each annotated copy under the same name, nothing left beside it. JSONL
    resumes after the 6th image; CSV does the 6th again (its rows cannot say they were all written)."""
    out, drawn = tmp_path / f"r.{fmt}", tmp_path / "drawn"
    args = ["predict", *predict_inputs, "--format", fmt, "-o", str(out), "--save-dir", str(drawn), "--no-progress"]
    kill_at(args, "results", 6)
    partial = tmp_path / f".r.{fmt}.partial"
    assert not out.exists() and partial.exists()
    lines = partial.read_text().splitlines()
    assert len(lines) == (6 if fmt == "jsonl" else 1 + 6)  # one face per portrait; CSV: a header
    run = cli(*args, check=False)
    assert run.returncode == 1, run.stderr  # the corrupt file, done before the kill, still counts
    resumed = 6 if fmt == "jsonl" else 5
    assert f"resuming {out}: {resumed} of 9 images are in its partial results already; running the other " \
           f"{9 - resumed}" in run.stderr
    want, names = straight_results[fmt]
    assert out.read_bytes() == want
    assert sorted(p.name for p in drawn.iterdir()) == names and len(names) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drawn", f"r.{fmt}"]


def test_predict_resume_cuts_a_torn_line_and_refuses_other_settings_or_inputs(predict_inputs, straight_results,
                                                                              tmp_path):
    out = tmp_path / "r.jsonl"
    args = ["predict", *predict_inputs, "--format", "jsonl", "-o", str(out), "--no-progress"]
    kill_at(args, "results", 3)
    partial = tmp_path / ".r.jsonl.partial"
    with open(partial, "ab") as f:
        f.write(b'{"image": "' + predict_inputs[3].encode() + b'", "width": 13')  # the kill in mid-write
    before = partial.read_bytes()
    other = cli(*args, "--threshold", "0.9", check=False)
    assert other.returncode == 1 and len(other.stderr.strip().splitlines()) == 1, other.stderr
    assert "were made with other settings (score_threshold 0.6 -> 0.9)" in other.stderr
    assert partial.read_bytes() == before and not out.exists()  # refused: nothing touched
    fewer = cli(*[a for a in args if a != predict_inputs[1]], check=False)
    assert fewer.returncode == 1 and f"hold images these inputs do not name ({predict_inputs[1]}, ...)" in \
        fewer.stderr, fewer.stderr
    run = cli(*args, check=False)
    assert run.returncode == 1 and "3 of 9 images are in its partial results already" in run.stderr
    assert out.read_bytes() == straight_results["jsonl"][0]


def test_predict_table_to_a_file_and_a_second_writer(predict_inputs, tmp_path):
    """A table file appears complete, with nothing beside it; while a run writes r.jsonl, a second is refused."""
    from agegender.inference.partial_results import PartialResults

    table = tmp_path / "r.txt"
    cli("predict", *predict_inputs[:2], "-o", str(table), "--no-progress")
    assert table.read_text().count("1 face(s)") == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["r.txt"]
    with PartialResults(tmp_path / "r.jsonl", "jsonl", {"model": "default"}):
        run = cli("predict", *predict_inputs[:2], "--format", "jsonl", "-o", str(tmp_path / "r.jsonl"),
                  "--no-progress", check=False)
    assert run.returncode == 1 and "another run is writing it" in run.stderr, run.stderr
