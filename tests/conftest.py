"""Shared fixtures: the real datasets beside the repo (../shared/datasets) and small real subsets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("AGEGENDER_DATASETS", REPO.parent / "shared" / "datasets"))
UTK_DIR = DATASETS / "UTKFace"
UTK_SPLIT = DATASETS / "UTKFace-split.csv"
WIKI_MAT = DATASETS / "imdb_wiki" / "wiki.mat"
FRL_DIR = DATASETS / "frl_canada"
AAF_DIR = DATASETS / "AAF"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real dataset not found at {path} (set AGEGENDER_DATASETS)")
    return path


@pytest.fixture(scope="session")
def frl_images() -> list[Path]:
    return sorted(need(FRL_DIR / "images").glob("*.jpg"))


@pytest.fixture(scope="session")
def utk_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with 60 real UTKFace files (20 per split, spread over ages) and its split file."""
    import csv

    need(UTK_DIR)
    rows = list(csv.DictReader(open(need(UTK_SPLIT))))
    out = tmp_path_factory.mktemp("utk_subset")
    chosen = []
    for split in ("train", "val", "test"):
        files = sorted(r["file"] for r in rows if r["split"] == split)
        chosen += [(f, split) for f in files[:: max(1, len(files) // 20)][:20]]
    (out / "images").mkdir()
    with open(out / "split.csv", "w") as f:
        f.write("file,split\n")
        for name, split in chosen:
            shutil.copy(UTK_DIR / name, out / "images" / name)
            f.write(f"{name},{split}\n")
    return out


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `agegender ARGS...` in a subprocess; with check, fail the test on a non-zero exit."""
    out = subprocess.run([sys.executable, "-m", "agegender.cli", *args], capture_output=True, text=True)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


@pytest.fixture(scope="session")
def prepared(utk_subset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 60-file UTKFace subset run through `agegender prepare` (real detector, real crops)."""
    out = tmp_path_factory.mktemp("prep") / "utk"
    cli("prepare", "utkface", str(utk_subset / "images"), "--split-file", str(utk_subset / "split.csv"), "-o",
        str(out), "--chunk-size", "16", "--no-progress")
    return out
