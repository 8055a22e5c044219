"""Shipping a whole-network fine-tune to a lent GPU: repacked crops, re-keyed teacher answers, parts under a
size limit, and the device script's unpack / train / receive run here on the CPU on real crops."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agegender.align import center_cut, margin_cut
from agegender.data.dataset import PreparedDataset
from agegender.data.repack import repack_dataset
from agegender.models import builtin_models
from agegender.training import distill

from .conftest import REPO, cli


@pytest.fixture(scope="module")
def square_crops(utk_subset, tmp_path_factory) -> Path:
    """The 60-file UTKFace subset prepared as the default's data is (square crops, margin 0.3), smaller."""
    out = tmp_path_factory.mktemp("square") / "utk"
    cli("prepare", "utkface", str(utk_subset / "images"), "--split-file", str(utk_subset / "split.csv"), "-o",
        str(out), "--crop", "square", "--margin", "0.3", "--size", "128", "--no-progress")
    return out


def test_repack_keeps_the_rows_and_cuts_the_centre(square_crops, tmp_path):
    src = PreparedDataset(square_crops, ["train", "val"])
    n = repack_dataset(square_crops, tmp_path / "r", splits=["train", "val"], fmt="webp", quality=90, margin=0.1,
                       progress=False)
    out = PreparedDataset(tmp_path / "r")
    assert n == len(out) == len(src) and {r["split"] for r in out.rows} == {"train", "val"}
    assert [r["file"] for r in out.rows] == [str(Path(r["file"]).with_suffix(".webp")) for r in src.rows]
    assert np.array_equal(out.ages, src.ages, equal_nan=True) and np.array_equal(out.genders, src.genders)
    cut = margin_cut(src.preprocessing, 0.1)  # 128 * 1.2 / 1.6 = 96: the face keeps its pixels
    assert (out.preprocessing.margin, out.preprocessing.size, cut) == (0.1, 96, 96)
    assert out.meta["repacked_from"]["margin"] == 0.3
    for i in (0, len(out) - 1):  # the same face centre, up to WebP's loss
        img = out.image(i)
        assert img.shape == (96, 96, 3)
        assert np.abs(img.astype(int) - center_cut(src.image(i), cut).astype(int)).mean() < 4
    # an interrupted repack resumes: files already written stay as they are
    first = tmp_path / "r" / out.rows[0]["file"]
    stamp = first.stat().st_mtime_ns
    repack_dataset(square_crops, tmp_path / "r", splits=["train", "val"], fmt="webp", quality=90, margin=0.1,
                   progress=False)
    assert first.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="wider"):
        repack_dataset(square_crops, tmp_path / "w", margin=0.4, progress=False)


def _run(cmd: list[str], cwd: Path, **env: str) -> str:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **env})
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_pack_moves_a_run_to_another_machine_and_trains_there(square_crops, tmp_path, monkeypatch):
    # here: a repo with the data, a CPU run that computed its teacher's answers, and the start's weights
    here = tmp_path / "here"
    (here / "data").mkdir(parents=True)
    (here / "work").mkdir()
    _run(["git", "init", "-q"], here)
    shutil.copytree(square_crops, here / "data" / "utk")
    for suffix in (".onnx", ".safetensors"):  # the teacher as inference runs it, the start as torch loads it
        shutil.copyfile(Path(builtin_models()["fast"]).with_suffix(suffix), here / "work" / f"fast{suffix}")
    run = here / "runs" / "cpu"
    _run([sys.executable, "-m", "agegender.cli", "train", "data/utk", "-o", "runs/cpu", "--init",
          "work/fast.safetensors", "--teacher", "work/fast.onnx", "--distill", "0.5", "--epochs", "1",
          "--batch-size", "8", "--image-size", "48", "--threads", "1", "--no-progress"], here)
    pack = [sys.executable, str(REPO / "scripts" / "device_pack.py"), "data/utk", "--answers", "runs/cpu/teacher.npz",
            "--init", "work/fast.safetensors", "--part-mib", "2", "--no-progress"]
    # answers named with another teacher file are refused in one line, before any crop is repacked
    wrong = subprocess.run([*pack, "--teacher", "work/fast.safetensors", "-o", "wrong"], cwd=here,
                           capture_output=True, text=True)
    assert wrong.returncode == 2 and "not work/fast.safetensors's answers" in wrong.stderr, wrong.stderr
    assert "Traceback" not in wrong.stderr and not (here / "wrong").exists()
    out = _run([*pack, "--teacher", "work/fast.onnx"], here)
    parts = sorted(here.glob("device/part*/part.zip"))
    assert len(parts) >= 2 and all(p.stat().st_size <= 2 * (1 << 20) for p in parts), out
    plan = (here / "device" / "plan.md").read_text()
    assert plan.count("unpack device/part") == len(parts) and plan.count("device_finetune.sh train") == 1

    # there: only the parts, unpacked one call at a time, then the runs (on the CPU here, one short run)
    there = tmp_path / "there"
    there.mkdir()
    script = str(REPO / "scripts" / "device_finetune.sh")
    for p in parts:
        shutil.copytree(p.parent, there / p.parent.relative_to(here))
        _run(["bash", script, "unpack", str(p.parent.relative_to(here))], there)
    shipped = PreparedDataset(there / "data" / "utk")
    assert shipped.preprocessing.margin == 0.1 and all(r["split"] != "test" for r in shipped.rows)
    # the re-keyed answers are the CPU run's, and the run there reuses them instead of asking the teacher
    monkeypatch.chdir(there)
    plan_json = json.loads((there / "runs" / "device.json").read_text())
    paths = [Path("data/utk") / r["file"] for r in PreparedDataset("data/utk", "train").rows]
    src = distill.CropSource(paths, np.zeros(len(paths)), np.zeros(len(paths)), 96)
    monkeypatch.setattr(distill, "teacher_targets", lambda *a, **k: pytest.fail("the teacher was asked again"))
    ages, female = distill.cached_teacher_targets(Path(plan_json["answers"]), plan_json["teacher"], src, None, None)
    with np.load(run / "teacher.npz") as z:
        assert np.array_equal(ages.numpy(), z["ages"]) and np.array_equal(female.numpy(), z["female"])
    results = there / "results"
    _run(["bash", script, "train"], there, OUT=str(results), DEVICE="cpu", EPOCHS="1", RUNS="s2",
         EXTRA="--image-size 48 --workers 0 --batch-size 8")
    log = (there / "runs" / "gpu-s2" / "train.log").read_text()
    assert "s2 exit 0" in log and "epoch 1/1" in log, log
    # answers asked anew of the teacher on the repacked crops would differ and be written over the copy
    assert (there / "runs" / "gpu-s2" / "teacher.npz").read_bytes() == (there / plan_json["answers"]).read_bytes()

    # back here: the run unpacks under runs/ with float16 weights that load as a model
    _run(["bash", script, "receive", str(results)], here)
    from agegender.models.torch_weights import load_model

    model, cfg = load_model(here / "runs" / "gpu-s2" / "last.safetensors")
    assert cfg.preprocessing.margin == 0.0 and next(model.parameters()).dtype.is_floating_point
    assert json.loads((here / "runs" / "gpu-s2" / "args.json").read_text())["distill"] == 0.5
