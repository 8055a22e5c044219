"""Shared fixtures: the real datasets beside the repo (../shared/datasets) and small real subsets; and the
one rule for anything a test needs that may be missing (a dataset, a package, a program, a download).

Outside CI a missing input skips the test with a one-line reason naming it. In CI (the environment
variable CI set, as .ci/run does) it fails the test with that line instead, and a CI session that skipped
anything at all fails: a green CI run has run every test.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("AGEGENDER_DATASETS", REPO.parent / "shared" / "datasets"))
UTK_DIR = DATASETS / "UTKFace"
UTK_SPLIT = DATASETS / "UTKFace-split.csv"
WIKI_MAT = DATASETS / "imdb_wiki" / "wiki.mat"
FRL_DIR = DATASETS / "frl_canada"
AAF_DIR = DATASETS / "AAF"


IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(what: str, hint: str = "") -> NoReturn:
    """`what` is not here: fail the test in CI, skip it elsewhere; either way one line saying what is missing."""
    reason = f"{what} is missing" + (f" ({hint})" if hint else "")
    if IN_CI:
        pytest.fail(f"CI: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def need(path: Path, what: str = "real dataset", hint: str = "set AGEGENDER_DATASETS") -> Path:
    """`path` if it exists; else `missing` (a dataset by default)."""
    if not path.exists():
        missing(f"{what} {path}", hint)
    return path


def need_module(name: str, hint: str = 'pip install -e ".[train,dev]"') -> ModuleType:
    """The imported module (instead of pytest.importorskip, which skips silently in CI too)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"Python module {name!r} ({exc})", hint)


def need_program(path_or_name: str, hint: str) -> Path:
    """The path of an executable (an absolute path, or a name looked up on PATH)."""
    found = shutil.which(path_or_name)
    if not found:
        missing(f"program {path_or_name}", hint)
    return Path(found)


BASE_INSTALL = os.environ.get("AGEGENDER_BASE_INSTALL") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "base_install: runs only against the installed wheel, in a venv without "
                            "extras (AGEGENDER_BASE_INSTALL=1, as .ci/run does); deselected elsewhere")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Outside the base install, tests marked base_install are deselected (not skipped: they run there)."""
    if BASE_INSTALL:
        return
    elsewhere = [item for item in items if item.get_closest_marker("base_install")]
    if elsewhere:
        config.hook.pytest_deselected(items=elsewhere)
        items[:] = [item for item in items if not item.get_closest_marker("base_install")]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI, a session that skipped any test fails (whatever skipped it: `missing`, a marker, a plugin)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if IN_CI and reporter else []
    if skipped and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    skipped = terminalreporter.stats.get("skipped", []) if IN_CI else []
    if skipped:
        terminalreporter.write_line(f"CI: {len(skipped)} test(s) skipped; a CI run must skip none, so it fails:",
                                    red=True)
        for rep in skipped:
            reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
            terminalreporter.write_line(f"  {rep.nodeid}: {reason}")


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


#: train-split files prepared with the golden test split: `export --int8 --calibration` draws its default
#: 512 calibration crops from a prepared dataset's train split
GOLDEN_TRAIN_FILES = 512


@pytest.fixture(scope="session")
def utk_golden(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """prepared(preprocessing) -> a prepared dataset of the fixed UTKFace test split (every file of it) and
    GOLDEN_TRAIN_FILES train files spread over that split, cut as `preprocessing` asks (crop mode, margin,
    crop size, detector), as `agegender prepare utkface` cuts them. Prepared once per way of cutting, for
    the whole session (RetinaFace on ~2,900 files)."""
    from agegender.data import CropSpec, prepare_dataset, read_utkface

    made: dict[CropSpec, Path] = {}

    def prepared(prep) -> Path:
        spec = CropSpec(crop=prep.crop, margin=prep.margin, size=prep.crop_size or prep.size, detector=prep.detector)
        if spec not in made:
            samples = read_utkface(need(UTK_DIR), need(UTK_SPLIT))
            train = [s for s in samples if s.split == "train"]
            train = train[:: max(1, len(train) // GOLDEN_TRAIN_FILES)][:GOLDEN_TRAIN_FILES]
            out = tmp_path_factory.mktemp("utk_golden") / "data"
            prepare_dataset([s for s in samples if s.split == "test"] + train, out, spec, workers=2, progress=False)
            made[spec] = out
        return made[spec]

    return prepared


@pytest.fixture(scope="session")
def photo_collection(utk_subset: Path, frl_images: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small photo collection in folders, bad files included: utk/ (the 60 UTKFace files), frl/ (the 40
    portraits), odd/ (a photo with 4 faces made of UTKFace faces, a grey image with none, a truncated JPEG, a
    text file named .jpg, an empty file); and list.txt naming all of them, a missing file and a comment."""
    import numpy as np
    from PIL import Image

    out = tmp_path_factory.mktemp("collection")
    for name, files in (("utk", sorted((utk_subset / "images").glob("*.jpg"))), ("frl", frl_images)):
        (out / name).mkdir()
        for f in files:
            shutil.copy(f, out / name / f.name)
    odd = out / "odd"
    odd.mkdir()
    faces = [np.asarray(Image.open(f).convert("RGB")) for f in sorted((utk_subset / "images").glob("*.jpg"))[:4]]
    grid = np.concatenate([np.concatenate(faces[:2], 1), np.concatenate(faces[2:], 1)], 0)
    Image.fromarray(np.pad(grid, ((100, 100), (100, 100), (0, 0)), constant_values=90)).save(odd / "four.jpg")
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(odd / "blank.png")
    data = frl_images[0].read_bytes()
    (odd / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (odd / "not_an_image.jpg").write_text("a text file\n")
    (odd / "empty.jpg").write_bytes(b"")
    files = [str(p) for d in ("utk", "frl", "odd") for p in sorted((out / d).iterdir())]
    (out / "list.txt").write_text("# the collection\n" + "\n".join([*files, str(out / "odd" / "missing.jpg")]) + "\n")
    return out


@pytest.fixture(scope="session")
def collection_parquet(photo_collection: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`predict @list.txt --format parquet` (local engine, 16 images to a part file) on photo_collection."""
    out = tmp_path_factory.mktemp("parquet") / "straight"
    run = cli("predict", f"@{photo_collection / 'list.txt'}", "--format", "parquet", "-o", str(out), "--part-size",
              "16", "--no-progress", check=False)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr  # 4 inputs cannot be read; the rest ran
    return out


@pytest.fixture(scope="session")
def collection_jsonl(photo_collection: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`predict @list.txt --format jsonl` (local engine) on photo_collection: a results file."""
    out = tmp_path_factory.mktemp("jsonl") / "results.jsonl"
    run = cli("predict", f"@{photo_collection / 'list.txt'}", "--format", "jsonl", "-o", str(out), "--no-progress",
              check=False)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    return out
