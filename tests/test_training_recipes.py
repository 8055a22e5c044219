"""Training recipes for generalising models, on real crops: several datasets with per-source validation,
the CPU recipe (frozen layers, cached augmented views), a narrower model margin, camera-like
augmentations, weight anchoring and WiSE-FT interpolation, and the refusal of a peer that saw our test data."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from agegender.data import CropSpec, PreparedDataset, prepare_dataset, read_aaf
from agegender.models import builtin_models, read_config

from .conftest import AAF_DIR, cli, need

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def aaf_small(tmp_path_factory) -> str:
    """40 real All-Age-Faces files (30 train, 10 val, spread over ages), prepared like `prepared`."""
    samples = read_aaf(need(AAF_DIR))
    train = [s for s in samples if s.split == "train"][::330][:30]
    val = [s for s in samples if s.split == "val"][::120][:10]
    out = tmp_path_factory.mktemp("aaf") / "aaf"
    prepare_dataset(train + val, out, CropSpec(), progress=False)
    return str(out)


@pytest.fixture(scope="module")
def real_crops(prepared) -> np.ndarray:
    ds = PreparedDataset(prepared, "val")
    return np.stack([ds.image(i) for i in range(min(8, len(ds)))])


def _state(path) -> dict:
    from safetensors.torch import load_file

    return {k: v.float() for k, v in load_file(str(path)).items()}


@pytest.mark.slow
def test_cached_views_on_two_sources_freeze_the_lower_layers_and_resume(prepared, aaf_small, tmp_path):
    run = tmp_path / "run"
    args = ["train", str(prepared), aaf_small, "-o", str(run), "--init", "fast", "--image-size", "64",
            "--freeze", "4", "--cache-views", "2", "--camera", "--balance-sources", "--balance", "0.5",
            "--batch-size", "16", "--lr", "1e-3", "--no-progress"]
    out = cli(*args, "--epochs", "2")
    hist = json.loads((run / "history.json").read_text())
    sources = [f"val_age_mae@{name}" for name in ("utk", "aaf")]
    assert all(k in hist[-1] for k in sources) and "val_age_bias" in hist[-1]
    # the headline is the mean over the two sources (each counts alike, whatever its size)
    assert hist[-1]["val_age_mae"] == pytest.approx(np.mean([hist[-1][k] for k in sources]))
    assert "aaf" in out.stdout and "utk" in out.stdout
    feats = run / "features"
    assert {p.name for p in feats.iterdir()} >= {"lower.onnx", "train_v0.npy", "train_v1.npy", "val_v0.npy"}
    v0, v1 = np.load(feats / "train_v0.npy"), np.load(feats / "train_v1.npy")
    assert v0.dtype == np.float16 and v0.shape == v1.shape and np.abs(v0 - v1).mean() > 1e-3  # augmented view
    default = _state(builtin_models()["fast"].with_suffix(".safetensors"))
    best = _state(run / "best.safetensors")
    lower = [k for k in default if k.startswith("backbone.features.") and int(k.split(".")[2]) < 4]
    upper = [k for k in default if k.startswith("backbone.features.") and int(k.split(".")[2]) >= 4
             and k.endswith("weight")]
    assert lower and all(torch.equal(best[k], default[k]) for k in lower)  # frozen: exactly --init's
    assert any(not torch.allclose(best[k], default[k]) for k in upper)  # trained
    stamps = {p.name: p.stat().st_mtime_ns for p in feats.iterdir()}
    cli(*args, "--epochs", "3", "--resume")
    assert len(json.loads((run / "history.json").read_text())) == 3
    assert {p.name: p.stat().st_mtime_ns for p in feats.iterdir()} == stamps  # the cache is reused, not redone


def test_a_narrower_margin_is_cut_from_the_stored_crops_and_recorded(prepared, tmp_path, frl_images):
    run = tmp_path / "run"
    cli("train", str(prepared), "-o", str(run), "--epochs", "1", "--batch-size", "8", "--image-size", "64",
        "--margin", "0.1", "--arch-kwargs", '{"widths": [8, 16, 16, 32], "blocks": [1, 1, 1, 1]}', "--no-progress")
    prep = read_config(str(run / "best.safetensors")).preprocessing
    assert prep.margin == 0.1 and prep.crop_size == round(112 * 1.2 / 1.5) and prep.size == 64
    out = cli("predict", str(frl_images[0]), "--model", str(run / "best.safetensors"), "--format", "jsonl")
    assert len(json.loads(out.stdout)["faces"]) == 1
    cli("evaluate", str(run / "best.safetensors"), str(prepared), "--split", "test", "-o", str(tmp_path / "ev"))
    assert json.loads((tmp_path / "ev" / "report.json").read_text())["mode"] == "crops"
    bad = cli("train", str(prepared), "-o", str(tmp_path / "wide"), "--margin", "0.4", "--epochs", "1", check=False)
    assert bad.returncode == 1 and "wider than" in bad.stderr


def test_camera_augmentations_change_real_crops_as_their_names_say(real_crops):
    from agegender.training.camera import SEPIA, CameraAugment, camera_augment, camera_batch, down_up, recompress

    crop = real_crops[0]
    rng = np.random.default_rng(0)
    a = camera_batch(real_crops, np.random.default_rng(1), CameraAugment())
    b = camera_batch(real_crops, np.random.default_rng(1), CameraAugment())
    assert a.shape == real_crops.shape and a.dtype == np.uint8 and np.array_equal(a, b)  # seeded: repeatable
    assert not np.array_equal(a, real_crops)
    assert np.array_equal(camera_augment(crop, rng, CameraAugment.none()), crop)  # all off: untouched
    grey = camera_augment(crop, rng, replace(CameraAugment.none(), p_grey=1.0))
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    sepia = camera_augment(crop, rng, replace(CameraAugment.none(), p_sepia=1.0))
    assert (sepia[..., 0].astype(int) >= sepia[..., 2]).mean() > 0.95 and SEPIA.shape == (3, 3)  # warm tones
    q25, q95 = recompress(crop, 25), recompress(crop, 95)
    assert np.abs(q25.astype(int) - crop).mean() > np.abs(q95.astype(int) - crop).mean()
    soft = down_up(crop, 0.25)
    assert soft.shape == crop.shape and np.abs(np.diff(soft.astype(int), axis=1)).mean() < np.abs(
        np.diff(crop.astype(int), axis=1)).mean()  # less fine detail


def test_camera_options_set_the_augmentations_and_are_recorded(prepared, tmp_path):
    """--camera-options reach the run (args.json keeps them, unset fields at their defaults); a field
    CameraAugment does not have is refused in one line, before any work."""
    run = tmp_path / "run"
    opts = '{"p_grey": 1.0, "p_sepia": 0.0, "jpeg_quality": [30, 60]}'
    cli("train", str(prepared), "-o", str(run), "--init", "fast", "--image-size", "64", "--freeze", "4",
        "--cache-views", "2", "--camera-options", opts, "--epochs", "1", "--batch-size", "16", "--no-progress")
    camera = json.loads((run / "args.json").read_text())["camera"]
    assert camera["p_grey"] == 1.0 and camera["jpeg_quality"] == [30, 60] and camera["p_blur"] == 0.2
    bad = cli("train", str(prepared), "-o", str(tmp_path / "bad"), "--camera-options", '{"p_gray": 1}', check=False)
    assert bad.returncode != 0 and "p_gray" in bad.stderr and "p_grey" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_wise_interpolation_runs_from_the_start_to_the_finetuned_model(prepared, tmp_path, real_crops):
    from agegender.models.estimator import TorchEstimator
    from agegender.models.torch_weights import save_model
    from agegender.training.wise import wise_interpolate

    run = tmp_path / "run"
    cli("train", str(prepared), "-o", str(run), "--init", "fast", "--image-size", "80", "--epochs", "1",
        "--batch-size", "8", "--lr", "3e-3", "--anchor", "1e-3", "--no-progress")
    crops = real_crops
    ages = {}
    for alpha in (0.0, 0.5, 1.0):
        net, cfg = wise_interpolate(run / "best.safetensors", "fast", alpha)
        assert cfg.card["wise_alpha"] == alpha
        save_model(tmp_path / f"w{alpha}.safetensors", net, cfg)
        ages[alpha] = TorchEstimator(tmp_path / f"w{alpha}.safetensors").estimate(crops).ages
    start = TorchEstimator(builtin_models()["fast"].with_suffix(".safetensors"))
    tuned = TorchEstimator(run / "best.safetensors")
    assert np.abs(ages[0.0] - start.estimate(crops).ages).max() < 1e-3
    assert np.abs(ages[1.0] - tuned.estimate(crops).ages).max() < 1e-3
    assert np.abs(ages[1.0] - ages[0.0]).max() > 0.05  # training moved it
    with pytest.raises(ValueError, match="0..1"):
        wise_interpolate(run / "best.safetensors", "fast", 1.5)


def test_a_soup_of_the_start_and_the_finetuned_model_is_their_wise_blend(prepared, tmp_path, real_crops):
    """soup(tuned, start, w) and wise_interpolate(tuned, start, 1 - w) are the same weights, computed two ways;
    the record names its partner and the partner's recipe; other architectures and shares are refused."""
    from agegender.models.estimator import TorchEstimator
    from agegender.models.torch_weights import load_model, save_model
    from agegender.training.wise import soup, wise_interpolate

    run = tmp_path / "run"
    cli("train", str(prepared), "-o", str(run), "--init", "fast", "--image-size", "80", "--epochs", "1",
        "--batch-size", "8", "--lr", "3e-3", "--no-progress")
    start = builtin_models()["fast"].with_suffix(".safetensors")
    ages = {}
    for name, (net, cfg) in {"wise": wise_interpolate(run / "best.safetensors", "fast", 0.7),
                             "soup": soup(*load_model(run / "best.safetensors"), start, 0.3)}.items():
        save_model(tmp_path / f"{name}.safetensors", net, cfg)
        ages[name] = TorchEstimator(tmp_path / f"{name}.safetensors").estimate(real_crops).ages
    assert np.abs(ages["soup"] - ages["wise"]).max() < 1e-3
    tuned = TorchEstimator(run / "best.safetensors").estimate(real_crops).ages
    assert np.abs(ages["soup"] - tuned).max() > 0.01  # the share moved it
    card = load_model(tmp_path / "soup.safetensors")[1].card
    assert card["soup_weight"] == 0.3 and card["soup_with"]["file"] == "fast.safetensors"
    assert card["soup_with"]["recipe"] == read_config(str(start)).card["recipe"]
    with pytest.raises(ValueError, match="architecture"):
        soup(*load_model(run / "best.safetensors"), builtin_models()["default"].with_suffix(".safetensors"), 0.5)
    with pytest.raises(ValueError, match="0..1"):
        soup(*load_model(run / "best.safetensors"), start, -0.1)
