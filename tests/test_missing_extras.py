"""Every command without its optional packages: it works, or exits with 2 and one line naming the extra.

Two ways to run, the same cases:
- in the base install (CI builds the wheel, installs it with no extras in a venv of its own and runs
  this file there with AGEGENDER_BASE_INSTALL=1): the packages are really absent, and a case whose
  package is present fails instead of passing by accident;
- in the full development venv: each case's packages are blocked in the child process the way Python
  itself does it (`sys.modules[name] = None` makes `import name` raise ModuleNotFoundError), so the
  suite checks every message on every run.
Adding a command with an extra: add a row to MISSING (and to the README's "Command line" table).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import DATASETS, REPO, need

BASE_INSTALL = os.environ.get("AGEGENDER_BASE_INSTALL") == "1"


def run_without(absent: list[str], code: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Python `code` in a child process in which the modules `absent` cannot be imported.

    In the base install they must really be absent; in a full venv they are blocked in the child.
    """
    present = [m for m in absent if installed(m)]
    if BASE_INSTALL and present:
        pytest.fail(f"AGEGENDER_BASE_INSTALL=1 but {', '.join(present)} installed: not a base install")
    # all of them blocked, also where absent: a bare folder of that name in the working directory (Ray's
    # /tmp/ray, say) would otherwise import as an empty namespace package
    block = f"import sys\nfor name in {absent!r}:\n    sys.modules[name] = None\n"
    return subprocess.run([sys.executable, "-c", block + code], capture_output=True, text=True, cwd=cwd, timeout=300)


def installed(module: str) -> bool:
    """Whether `module` is an installed package or module (not just a folder of that name on sys.path)."""
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.origin is not None


def run_cli(argv: list[str], absent: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`agegender ARGV` in a child process in which the modules `absent` cannot be imported."""
    return run_without(absent, f"from agegender.cli import main\nsys.exit(main({argv!r}))\n", cwd)


def assert_one_line_hint(out: subprocess.CompletedProcess, command: str, extra: str) -> None:
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text
    assert out.returncode == 2, text
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith(f"agegender {command}: ") and f'pip install "agegender[{extra}]"' in lines[0], lines


@pytest.fixture()
def paths(tmp_path: Path) -> dict[str, str]:
    """Arguments the cases name: a scratch folder, a run with a real history, the built-in weights."""
    import agegender

    run = tmp_path / "run"
    run.mkdir()
    row = {"epoch": 1, "train_loss": 2.5, "val_loss": 2.7, "train_gender_acc": 0.8, "val_gender_acc": 0.78,
           "train_age_mae": 9.1, "val_age_mae": 9.8}
    (run / "history.json").write_text(json.dumps([row, row | {"epoch": 2, "val_age_mae": 8.7}]))
    return {"tmp": str(tmp_path), "run": str(run), "weights": str(Path(agegender.__file__).parent / "weights"),
            "imdb_wiki": str(DATASETS / "imdb_wiki")}


#: (command line, the packages it needs that the base install lacks, the extra the message must name)
MISSING = [
    (["train", "{tmp}/data", "-o", "{tmp}/out"], ["torch"], "train"),
    (["plot-history", "{run}"], ["matplotlib"], "plots"),
    (["prepare", "wiki", "{imdb_wiki}", "--dry-run"], ["scipy"], "prepare"),
    (["evaluate", "{weights}/default.safetensors", "{tmp}/data"], ["torch"], "train"),
    (["export", "{weights}/default.safetensors", "-o", "{tmp}/d.onnx"], ["torch"], "train"),
    (["export", "default", "-o", "{tmp}/q.onnx", "--int8", "--calibration", "{tmp}/data"], ["onnx"], "export"),
    (["import-keras", "{tmp}/weights.28-3.73.hdf5", "-o", "{tmp}/k.safetensors"], ["h5py"], "keras"),
    (["import-tfjs", "{tmp}/model.json", "-o", "{tmp}/t.onnx"], ["torch"], "train"),
    (["serve", "--port", "0"], ["uvicorn", "fastapi"], "serve"),
    (["predict", "--detector", "dlib-hog", "--no-progress"], ["dlib"], "dlib"),
    (["predict", "--engine", "ray", "--no-progress"], ["ray"], "ray"),
    (["predict", "--format", "parquet", "-o", "{tmp}/results", "--no-progress"], ["pyarrow"], "parquet"),
    (["report", "{tmp}/results.parquet", "-o", "{tmp}/report"], ["pyarrow"], "parquet"),
    (["report", "{tmp}/results.jsonl", "-o", "{tmp}/report"], ["matplotlib"], "plots"),
]


@pytest.mark.parametrize("argv, absent, extra", MISSING, ids=[" ".join(c[0][:2]) for c in MISSING])
def test_missing_extra_is_one_line(argv, absent, extra, paths):
    if "{imdb_wiki}" in argv:
        need(DATASETS / "imdb_wiki" / "wiki.mat")
    out = run_cli([a.format(**paths) for a in argv], absent)
    assert_one_line_hint(out, argv[0], extra)


#: the repo's scripts that need an extra (`agegender.extras.script_imports` around their imports): (path, the
#: packages it needs that the base install lacks, the extra the message must name)
SCRIPTS = [
    ("scripts/make_builtin_model.py", ["torch"], "train"),
    ("scripts/wise_sweep.py", ["torch"], "train"),
    ("scripts/readout_probe.py", ["torch"], "train"),  # through make_builtin_model
    ("scripts/teacher_bias.py", ["torch"], "train"),
    ("scripts/device_pack.py", ["torch"], "train"),
    ("benchmarks/train_throughput.py", ["torch"], "train"),
]


@pytest.mark.parametrize("script, absent, extra", SCRIPTS, ids=[c[0] for c in SCRIPTS])
def test_script_without_its_extra_is_one_line(script, absent, extra):
    """`python SCRIPT --help` without the script's extra: exit 2, one line naming the script and the extra."""
    path = str(REPO / script)
    out = run_without(absent, f"import runpy\nsys.argv = [{path!r}, '--help']\nrunpy.run_path({path!r}, "
                              "run_name='__main__')\n")
    text = out.stdout + out.stderr
    assert "Traceback" not in text and out.returncode == 2, text
    assert out.stderr.strip().splitlines() == [
        f'{Path(script).name}: needs PyTorch: pip install "agegender[{extra}]"'], text


def test_calibration_write_without_onnx_is_one_line_before_any_work():
    """`calibrate_age_range.py MODEL --write` without onnx stops at once (before minutes of measuring): exit 2,
    one line naming the extra."""
    path = str(REPO / "scripts" / "calibrate_age_range.py")
    out = run_without(["onnx"], f"import runpy\nsys.argv = [{path!r}, 'default', '--write']\n"
                                f"runpy.run_path({path!r}, run_name='__main__')\n")
    text = out.stdout + out.stderr
    assert "Traceback" not in text and out.returncode == 2, text
    assert out.stderr.strip().splitlines() == [
        'calibrate_age_range.py: --write needs onnx: pip install "agegender[export]"'], text


#: everything optional: what a base install lacks
ALL_OPTIONAL = ["torch", "scipy", "matplotlib", "h5py", "onnx", "fastapi", "uvicorn", "dlib", "pyarrow", "ray",
                "pi_heif", "pillow_heif"]


def test_heic_without_its_extra_is_one_line_and_the_batch_goes_on(tmp_path):
    """A phone's folder (a HEIC photo named as iPhones name them, and a JPEG) without a HEIF reader: the JPEG
    is estimated, the HEIC gets one error line naming the extra, and the exit status says an input failed."""
    import agegender

    folder = tmp_path / "phone"
    folder.mkdir()
    shutil.copy(REPO / "tests" / "fixtures" / "phone_photo.heic", folder / "IMG_0001.HEIC")
    shutil.copy(Path(agegender.__file__).parent / "assets" / "example.jpg", folder / "IMG_0002.jpg")
    out = run_cli(["predict", str(folder), "--format", "jsonl", "--no-progress"], ["pi_heif", "pillow_heif"])
    assert "Traceback" not in out.stderr and out.returncode == 1, out.stderr
    rows = {Path(r["image"]).name: r for r in map(json.loads, out.stdout.splitlines())}
    assert len(rows["IMG_0002.jpg"]["faces"]) == 1 and "error" not in rows["IMG_0002.jpg"]
    reason = 'HEIC/HEIF image (phone photo): reading it needs pi-heif: pip install "agegender[heif]"'
    assert rows["IMG_0001.HEIC"]["error"] == f"{folder / 'IMG_0001.HEIC'}: {reason}"
    errors = [line for line in out.stderr.splitlines() if line.startswith("agegender predict: ")]
    assert errors == [f"agegender predict: {folder / 'IMG_0001.HEIC'}: {reason}"], out.stderr


def test_every_command_has_help_without_extras():
    """`agegender --help` and `agegender CMD --help` for every command it lists, nothing optional installed
    (one child process runs them all)."""
    code = """
import contextlib, io, json
from agegender.cli import build_parser, main
sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
codes = {}
for argv in [["--help"]] + [[c, "--help"] for c in sub.choices]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            main(argv)
        except SystemExit as exc:
            codes[" ".join(argv)] = [exc.code, buf.getvalue().startswith("usage: agegender")]
print(json.dumps(codes))
"""
    out = run_without(ALL_OPTIONAL, code)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    codes = json.loads(out.stdout)
    assert len(codes) >= 13 and "info --help" in codes and "serve --help" in codes, codes
    assert all(c == [0, True] for c in codes.values()), codes


def test_models_info_and_builtin_export_without_extras(paths):
    """`models`, `info` and `export default` (the built-in ONNX file, copied) need nothing optional."""
    out = run_cli(["models"], ALL_OPTIONAL)
    assert out.returncode == 0 and "default:" in out.stdout and "fast:" in out.stdout, out.stderr
    out = run_cli(["info"], ALL_OPTIONAL)
    assert out.returncode == 0 and "onnxruntime" in out.stdout, out.stderr
    target = Path(paths["tmp"]) / "default.onnx"
    out = run_cli(["export", "default", "-o", str(target)], ALL_OPTIONAL)
    assert out.returncode == 0, out.stderr
    assert target.read_bytes() == (Path(paths["weights"]) / "default.onnx").read_bytes()


def test_prepare_and_evaluate_without_matplotlib(utk_subset, tmp_path):
    """prepare and evaluate (built-in model, prepared crops) work without matplotlib; the plots are
    skipped with a line saying what to install."""
    data = tmp_path / "utk"
    out = run_cli(["prepare", "utkface", str(utk_subset / "images"), "--split-file", str(utk_subset / "split.csv"),
                   "-o", str(data), "--no-progress"], ["matplotlib", "torch"])
    assert out.returncode == 0, out.stderr
    assert 'summary.png skipped: needs matplotlib: pip install "agegender[plots]"' in out.stdout
    report_dir = tmp_path / "eval"
    out = run_cli(["evaluate", "default", str(data), "--split", "test", "-o", str(report_dir), "--no-progress"],
                  ["matplotlib", "torch"])
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines()[-1] == \
        'agegender evaluate: plots skipped: needs matplotlib: pip install "agegender[plots]"'
    report = json.loads((report_dir / "report.json").read_text())
    assert report["plots"] == [] and report["overall"]["n"] == 20 and report["overall"]["age_mae"] < 12
    assert not list(report_dir.glob("*.png"))


def test_demo_and_download_without_extras(utk_subset, tmp_path):
    """The headless demo on a folder and `download --file` (a local archive: no network) need nothing optional."""
    import tarfile

    photos = sorted((utk_subset / "images").glob("*.jpg"))[:3]
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photos:
        (folder / p.name).write_bytes(p.read_bytes())
    out = run_cli(["demo", "--dir", str(folder), "--no-window", "--jsonl", str(tmp_path / "frames.jsonl"),
                   "--no-progress"], ALL_OPTIONAL)
    assert out.returncode == 0, out.stderr
    frames = [json.loads(line) for line in (tmp_path / "frames.jsonl").read_text().splitlines()]
    assert len(frames) == 3 and all(len(f["faces"]) >= 1 for f in frames)

    archive = tmp_path / "UTKFace.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for p in photos:
            tar.add(p, arcname=f"UTKFace/{p.name}")
    out = run_cli(["download", "utkface", "--file", str(archive), "-o", str(tmp_path / "datasets"), "--no-progress"],
                  ALL_OPTIONAL)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "datasets" / "UTKFace").glob("*.jpg")) == [p.name for p in photos]
