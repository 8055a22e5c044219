"""Weights files: every built-in model's two runtimes agree and carry the same record and a card with its
test numbers (tests/test_model_goldens.py checks those numbers); bad weights files give clear errors."""

import json

import numpy as np
import pytest

from agegender.align import crop_faces
from agegender.detectors import create_detector
from agegender.imageio import load_image
from agegender.models import builtin_models, load_estimator, read_config

from .conftest import need_module

torch = need_module("torch")
from safetensors.torch import load_file, save_file  # noqa: E402

BUILTINS = sorted(builtin_models())
CARD_METRICS = ("n", "faces_found", "age_mae", "cs5", "gender_acc")


@pytest.fixture(scope="module")
def portraits(frl_images) -> list[np.ndarray]:
    return [load_image(p) for p in frl_images[:8]]


def test_builtins_are_onnx_with_their_record_and_card():
    assert "default" in BUILTINS  # what Predictor() and every --model default load
    for name in BUILTINS:
        path = builtin_models()[name]
        assert path.suffix == ".onnx", name
        cfg = read_config(str(path))
        assert read_config(str(path.with_suffix(".safetensors"))).to_json() == cfg.to_json(), name
        for key in ("test_metrics", "test_metrics_crops"):
            assert set(CARD_METRICS) <= set(cfg.card.get(key, {})), (name, key, cfg.card.get(key))


@pytest.mark.parametrize("name", BUILTINS)
def test_onnx_and_torch_agree_on_real_crops(name, portraits):
    path = builtin_models()[name]
    onnx_est, torch_est = load_estimator(name), load_estimator(path.with_suffix(".safetensors"))
    det = create_detector("retinaface")
    crops = np.stack([crop_faces(img, det.detect(img)[:1], onnx_est.preprocessing)[0] for img in portraits])
    a, b = onnx_est.estimate(crops), torch_est.estimate(crops)
    assert np.abs(a.ages - b.ages).max() < 1e-3
    assert np.abs(a.p_female - b.p_female).max() < 1e-4
    assert a.ages.std() > 0.5  # real, varied answers


def test_bad_weights_files_name_the_file(tmp_path):
    src = builtin_models()["default"].with_suffix(".safetensors")
    state = load_file(str(src))
    from safetensors import safe_open

    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
    # no preprocessing record
    p1 = tmp_path / "norecord.safetensors"
    save_file(state, str(p1))
    with pytest.raises(ValueError, match="norecord.safetensors.*no agegender preprocessing record"):
        load_estimator(p1)
    # a newer format
    rec = json.loads(meta["agegender"])
    rec["format_version"] = 99
    p2 = tmp_path / "newer.safetensors"
    save_file(state, str(p2), {"agegender": json.dumps(rec)})
    with pytest.raises(ValueError, match="newer.safetensors.*newer"):
        load_estimator(p2)
    # weights of another shape than the record's architecture has (one tensor a row larger)
    key = next(k for k, v in state.items() if v.ndim >= 1)
    grown = dict(state) | {key: torch.cat([state[key], state[key][:1]])}
    p3 = tmp_path / "shape.safetensors"
    save_file(grown, str(p3), meta)
    with pytest.raises(ValueError, match="shape.safetensors.*do not fit"):
        load_estimator(p3)
    # not a weights file at all
    p4 = tmp_path / "junk.safetensors"
    p4.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="junk.safetensors"):
        load_estimator(p4)


def test_half_weights_keep_exactly_what_float16_holds(tmp_path):
    """store_weights_half: a weight float16 holds exactly is stored as float16 behind a Cast, one it would
    round (e.g. a batch norm folded into a convolution) stays float32; the graph answers exactly as before."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from agegender.models.onnx_graph import store_weights_half

    rng = np.random.default_rng(0)
    exact = rng.standard_normal((64, 64)).astype(np.float16).astype(np.float32)  # float16 values
    rounded = exact * np.float32(1.0 + 2.0**-13)  # between float16 neighbours: float16 would round it
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "exact"], ["h"]), helper.make_node("MatMul", ["h", "rounded"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [numpy_helper.from_array(exact, "exact"), numpy_helper.from_array(rounded, "rounded")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = rng.standard_normal((1, 64)).astype(np.float32)

    def run(m) -> np.ndarray:
        onnx.save(m, str(tmp_path / "m.onnx"))
        return ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    before = run(model)
    assert store_weights_half(model) == 1
    kinds = {i.name: i.data_type for i in model.graph.initializer}
    assert kinds == {"exact__half": TensorProto.FLOAT16, "rounded": TensorProto.FLOAT}
    assert np.array_equal(run(model), before)


def test_models_command_shows_each_cards_data_licence_and_measured_sets():
    """`agegender models` lists, under each built-in model, its card's data note, licence and the numbers of
    every set it was measured on, as the card holds them."""
    from .conftest import cli

    blocks: dict[str, str] = {}
    for line in cli("models").stdout.splitlines():
        if not line.startswith(" "):
            name = line.split(":", 1)[0]
        blocks[name] = blocks.get(name, "") + line + "\n"
    for name in BUILTINS:
        c = read_config(str(builtin_models()[name])).card
        expected = [f"data: {c['data']}", f"licence: {c['licence']}",
                    f"UTKFace test, end to end: age_mae {c['test_metrics']['age_mae']}"]
        expected += [f"{label}: age_mae {c[key]['age_mae']}" for key, label in
                     (("aaf_val_metrics", "All-Age-Faces val, end to end"), ("frl_metrics", "FRL Canada, end to end"))
                     if key in c]
        for needle in expected:
            assert needle in blocks[name], (name, needle)
