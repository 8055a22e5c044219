"""Output ensembles of fine-tunes that share their frozen lower layers (models/ensemble.py, training/wise.py
`ensemble`): the pure averaging rule, and real networks (the built-in default's MobileNet-v1) on real face
crops, through torch, a saved file and the ONNX export; members that cannot share are refused."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from agegender.inference.predictor import Predictor
from agegender.lazyimage import LazyImage
from agegender.models import builtin_models

from .conftest import cli

torch = pytest.importorskip("torch")

SHARED = 7  # the default's recipe freezes (and so shares) its first 7 layers


def test_the_mean_probability_logits_soften_to_the_mean_of_the_softmaxes():
    from agegender.models.ensemble import mean_probability_logits

    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(5, 100, generator=g) * s for s in (1.0, 4.0, 0.2)]
    want = torch.stack([z.softmax(1) for z in logits]).mean(0)
    assert torch.allclose(mean_probability_logits(logits).softmax(1), want, atol=1e-6)
    assert torch.allclose(mean_probability_logits(logits[:1]).softmax(1), logits[0].softmax(1), atol=1e-6)
    # extreme logits stay finite (averaged in log space)
    assert torch.isfinite(mean_probability_logits([torch.full((1, 3), 1e4), torch.zeros(1, 3)])).all()


@pytest.fixture(scope="module")
def base():
    """A MobileNet-v1 of the built-in default (its first member when the default is an ensemble)."""
    from agegender.models.torch_weights import load_model

    net, cfg = load_model(builtin_models()["default"].with_suffix(".safetensors"))
    if cfg.arch == "ensemble":
        net, cfg = net.member(0, cfg)
    assert cfg.arch == "mobilenet_v1"
    return net.eval(), cfg


@pytest.fixture(scope="module")
def crops(base, frl_images) -> np.ndarray:
    """Real face crops (RetinaFace on FRL portraits), cut as the default cuts them."""
    pred = Predictor("default")
    out = []
    for path in frl_images[:6]:
        image = LazyImage.open(str(path))
        out.append(pred.crop(image, pred.detect(image)[0][:1]))
    return np.concatenate(out)


def _variant(base, tmp_path, name: str, first_layer: int, seed: int):
    """A copy of the base network with every weight from backbone layer `first_layer` up (and the heads) moved
    by 5% noise: another 'fine-tune' of the same start, saved to a file."""
    from agegender.models.nets import build_model
    from agegender.models.torch_weights import save_model

    net, cfg = base
    other = build_model(cfg.arch, num_ages=cfg.preprocessing.num_ages, **cfg.arch_kwargs)
    g = torch.Generator().manual_seed(seed)
    keep = tuple(f"backbone.layers.{i}." for i in range(first_layer))
    state = {k: v if k.startswith(keep) else v * (1 + 0.05 * torch.randn(v.shape, generator=g))
             for k, v in net.state_dict().items()}
    other.load_state_dict(state)
    path = tmp_path / f"{name}.safetensors"
    save_model(path, other.eval(), replace(cfg, card={"name": name, "recipe": {"seed": seed}}))
    return other.eval(), path


def _probs(net, crops, prep) -> tuple[torch.Tensor, torch.Tensor]:
    from agegender.align import to_network_input

    with torch.no_grad():
        g, a = net(torch.from_numpy(to_network_input(crops, prep)))
    return g.softmax(1), a.softmax(1)


def test_an_ensemble_averages_its_members_on_real_faces_in_torch_a_file_and_onnx(base, crops, tmp_path):
    from agegender.export.onnx_export import export_onnx
    from agegender.models.estimator import OnnxEstimator, TorchEstimator
    from agegender.models.torch_weights import load_model, save_model
    from agegender.training.wise import ensemble

    net, cfg = base
    other, path = _variant(base, tmp_path, "other", SHARED, seed=1)
    ens, ecfg = ensemble(net, cfg, [path], SHARED)
    prep = cfg.preprocessing
    (g1, a1), (g2, a2), (ge, ae) = _probs(net, crops, prep), _probs(other, crops, prep), _probs(ens, crops, prep)
    assert torch.allclose(ae, (a1 + a2) / 2, atol=1e-5) and torch.allclose(ge, (g1 + g2) / 2, atol=1e-5)
    ages = ae.double() @ torch.arange(prep.age_min, prep.age_max + 1, dtype=torch.float64)
    assert (ages - a1.double() @ torch.arange(prep.age_min, prep.age_max + 1, dtype=torch.float64)).abs().max() > 0.1
    # the record: arch "ensemble" over the base, the partner's name and recipe on the card
    assert ecfg.arch == "ensemble" and ecfg.arch_kwargs == {"base": "mobilenet_v1", "base_kwargs": cfg.arch_kwargs,
                                                            "members": 2, "shared": SHARED}
    assert ecfg.card["ensemble_with"] == [{"file": "other.safetensors", "name": "other", "recipe": {"seed": 1}}]
    # saved, loaded and exported, it computes the same ages
    save_model(tmp_path / "ens.safetensors", ens, ecfg)
    export_onnx(ens, ecfg, tmp_path / "ens.onnx")
    from_file = TorchEstimator(tmp_path / "ens.safetensors").estimate(crops)
    from_onnx = OnnxEstimator(tmp_path / "ens.onnx").estimate(crops)
    assert np.abs(from_file.ages - ages.numpy()).max() < 1e-3
    assert np.abs(from_onnx.ages - from_file.ages).max() < 1e-2
    assert np.abs(from_onnx.p_female - from_file.p_female).max() < 1e-3
    assert load_model(tmp_path / "ens.safetensors")[0].member(1, ecfg)[1].arch == "mobilenet_v1"
    listed = cli("models", str(tmp_path / "ens.onnx")).stdout
    assert "ensemble of 2 x mobilenet_v1" in listed and "first 7 layers shared" in listed
    # computing the shared layers once changes nothing against running each member whole
    whole = ensemble(net, cfg, [path], 0)[0]
    assert torch.allclose(_probs(whole, crops, prep)[1], ae, atol=1e-6)


def test_an_ensemble_splits_at_its_shared_layers_for_frozen_training(base, crops, tmp_path):
    from agegender.align import to_network_input
    from agegender.training.frozen import split_net
    from agegender.training.wise import ensemble

    net, cfg = base
    ens, _ = ensemble(net, cfg, [_variant(base, tmp_path, "other", SHARED, seed=2)[1]], SHARED)
    x = torch.from_numpy(to_network_input(crops, cfg.preprocessing))
    lower, upper = split_net(ens, 5)
    with torch.no_grad():
        assert all(torch.allclose(u, w, atol=1e-5) for u, w in zip(upper(lower(x)), ens(x)))
    with pytest.raises(ValueError, match="shared layers"):
        split_net(ens, SHARED + 1)


def test_members_that_cannot_share_or_differ_are_refused(base, tmp_path):
    from agegender.models.torch_weights import save_model
    from agegender.training.wise import ensemble

    net, cfg = base
    _, moved_low = _variant(base, tmp_path, "low", 2, seed=3)  # its layers 2.. differ: trained below 7
    with pytest.raises(ValueError, match="first 7 layers differ"):
        ensemble(net, cfg, [moved_low], SHARED)
    assert ensemble(net, cfg, [moved_low], 2)[1].arch_kwargs["shared"] == 2  # it can share the first two
    with pytest.raises(ValueError, match="architecture or preprocessing"):
        ensemble(net, cfg, [builtin_models()["fast"].with_suffix(".safetensors")], SHARED)
    wider = tmp_path / "wider.safetensors"
    save_model(wider, net, replace(cfg, preprocessing=replace(cfg.preprocessing, margin=0.2)))
    with pytest.raises(ValueError, match="architecture or preprocessing"):
        ensemble(net, cfg, [wider], SHARED)
