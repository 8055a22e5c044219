"""Knowledge distillation: the teacher's targets on real crops, the target blend, and `train --teacher`."""

import importlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from agegender.data.dataset import PreparedDataset
from agegender.models import builtin_models, read_config
from agegender.training.batches import CropSource
from agegender.training.distill import (
    load_teacher_answers,
    mix_targets,
    parse_age_weights,
    sharpen,
    soft_targets,
    teacher_targets,
    weight_by_age,
)
from agegender.training.losses import gaussian_age_targets

from .conftest import REPO, cli


@pytest.fixture(scope="module")
def fast_cut(utk_subset, tmp_path_factory) -> Path:
    """The 60-file UTKFace subset prepared as the built-in `fast` cuts faces (crop mode, margin, crop size),
    so that it can be the teacher and the starting point of these runs whatever its cut is."""
    prep = read_config(str(builtin_models()["fast"])).preprocessing
    out = tmp_path_factory.mktemp("fast_cut") / "utk"
    cli("prepare", "utkface", str(utk_subset / "images"), "--split-file", str(utk_subset / "split.csv"), "-o",
        str(out), "--crop", prep.crop, "--margin", str(prep.margin), "--size", str(prep.crop_size or prep.size),
        "--no-progress")
    return out


def _train_source(prepared) -> tuple[CropSource, PreparedDataset]:
    ds = PreparedDataset(prepared, "train")
    return CropSource([ds.path(i) for i in range(len(ds))], ds.ages, ds.genders, ds.preprocessing.size), ds


def test_teacher_targets_are_the_teachers_real_predictions(fast_cut):
    src, ds = _train_source(fast_cut)
    prep = ds.preprocessing
    ages, female = teacher_targets("fast", src, prep, replace(prep, size=64), batch_size=7, progress=False)
    assert ages.shape == (len(src), 101) and female.shape == (len(src),)
    assert torch.allclose(ages.sum(1), torch.ones(len(src)), atol=1e-4)
    expected = ages @ torch.arange(101).float()
    # a real teacher on real faces: close to the labels (the built-in `fast` is ~5.5 years MAE on UTKFace)
    assert float((expected - src.ages).abs().mean()) < 8.0
    known = src.genders >= 0
    assert float(((female > 0.5).long() == src.genders)[known].float().mean()) >= 0.8
    # streamed from disk (no crops in memory) gives the same targets
    src.load_all("load", progress=False)
    ages2, female2 = teacher_targets("fast", src, prep, replace(prep, size=64), progress=False)
    assert torch.allclose(ages, ages2, atol=1e-5) and torch.allclose(female, female2, atol=1e-5)


def test_gender_teacher_gives_the_gender_targets(fast_cut, tmp_path):
    """`train --gender-teacher`: P(female) from a second model, the age distributions still from --teacher;
    each teacher's real answers kept in the run folder under its own key."""
    src, ds = _train_source(fast_cut)
    prep = ds.preprocessing
    student = replace(prep, size=48)
    ages, female = soft_targets(tmp_path, "fast", src, prep, student, gender_teacher="default", progress=False)
    fast_ages, fast_female = teacher_targets("fast", src, prep, student, progress=False)
    default_ages, default_female = teacher_targets("default", src, prep, student, progress=False)
    assert torch.allclose(ages, fast_ages, atol=1e-5) and torch.allclose(female, default_female, atol=1e-5)
    assert float((female - fast_female).abs().max()) > 0.05  # two real models disagree somewhere on 60 faces
    assert torch.allclose(torch.from_numpy(load_teacher_answers(tmp_path / "gender_teacher.npz", "default",
                                                                src.paths)[1]), default_female, atol=1e-5)
    load_teacher_answers(tmp_path / "teacher.npz", "fast", src.paths)
    # sharpening acts on the age targets only
    sharp_ages, sharp_female = soft_targets(tmp_path, "fast", src, prep, student, 0.5, "default", progress=False)
    assert torch.allclose(sharp_ages, sharpen(fast_ages, 0.5), atol=1e-5) and torch.equal(sharp_female, female)
    assert not torch.allclose(default_ages, fast_ages, atol=1e-3)


def test_teacher_must_match_the_datasets_crops(fast_cut, tmp_path):
    from agegender.models.torch_weights import load_model, save_model

    src, ds = _train_source(fast_cut)
    # crops narrower than the teacher's cannot hold its view: `fast`'s weights with a record asking for a
    # margin 0.2 wider than these crops'
    net, cfg = load_model(builtin_models()["fast"].with_suffix(".safetensors"))
    cfg.preprocessing = replace(cfg.preprocessing, margin=ds.preprocessing.margin + 0.2)
    save_model(tmp_path / "wide.safetensors", net, cfg)
    with pytest.raises(ValueError, match="margin"):
        teacher_targets(str(tmp_path / "wide.safetensors"), src, ds.preprocessing, ds.preprocessing, progress=False)
    other = "square" if ds.preprocessing.crop == "align5" else "align5"
    with pytest.raises(ValueError, match=ds.preprocessing.crop):  # another crop mode
        teacher_targets("fast", src, replace(ds.preprocessing, crop=other), ds.preprocessing, progress=False)
    with pytest.raises(ValueError, match="ages"):
        teacher_targets("fast", src, ds.preprocessing, replace(ds.preprocessing, age_max=80), progress=False)
    with pytest.raises(ValueError, match="ages"):
        teacher_targets("fast", src, ds.preprocessing, replace(ds.preprocessing, age_min=5), progress=False)


def test_teacher_with_a_narrower_age_range_fills_the_students_classes(fast_cut):
    """A teacher predicting 0..100 for a student of 0..104: its distribution lands on the student's classes
    of the same ages, and the ages it cannot predict get probability 0."""
    src, ds = _train_source(fast_cut)
    prep = ds.preprocessing
    same, _ = teacher_targets("fast", src, prep, prep, progress=False)
    wider, female = teacher_targets("fast", src, prep, replace(prep, age_max=104), progress=False)
    assert wider.shape == (len(src), 105) and female.shape == (len(src),)
    assert torch.equal(wider[:, :101], same) and not wider[:, 101:].any()


def test_mix_targets_blends_and_fills_unlabelled():
    ages = torch.tensor([20.0, 50.0, 0.0])
    known_age = torch.tensor([True, True, False])
    dist = gaussian_age_targets(ages, 101) * known_age.unsqueeze(1)
    gender = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # male, female, unknown
    t_age = torch.softmax(torch.randn(3, 101, generator=torch.Generator().manual_seed(0)), 1)
    t_female = torch.tensor([0.2, 0.9, 0.6])
    g0, d0, v0 = mix_targets(gender, dist, ages, known_age, t_age, t_female, 0.0)
    assert torch.allclose(g0[:2], gender[:2]) and torch.allclose(d0[:2], dist[:2])
    g1, d1, _ = mix_targets(gender, dist, ages, known_age, t_age, t_female, 1.0)
    assert torch.allclose(d1, t_age) and torch.allclose(g1[:, 1], t_female)
    g, d, v = mix_targets(gender, dist, ages, known_age, t_age, t_female, 0.25)
    assert torch.allclose(d.sum(1), torch.ones(3), atol=1e-5) and torch.allclose(g.sum(1), torch.ones(3))
    assert torch.allclose(g[0], torch.tensor([0.75 + 0.25 * 0.8, 0.25 * 0.2]))
    # the unlabelled sample learns from the teacher alone; labelled ones keep their true age for the L1 term
    assert torch.allclose(d[2], t_age[2]) and torch.allclose(g[2], torch.tensor([0.4, 0.6]))
    assert v[0] == 20 and v[1] == 50 and np.isclose(float(v[2]), float(t_age[2] @ torch.arange(101).float()))
    # gender can take its own weight: here labels only for gender, the teacher alone for age
    g2, d2, _ = mix_targets(gender, dist, ages, known_age, t_age, t_female, 1.0, gender_weight=0.0)
    assert torch.allclose(d2, t_age) and torch.allclose(g2[:2], gender[:2])
    assert torch.allclose(g2[2], torch.tensor([0.4, 0.6]))  # no label: still the teacher's


def test_teacher_weight_by_labelled_age():
    assert parse_age_weights("") == () and parse_age_weights("60:0.3, 30:0.5") == ((30.0, 0.5), (60.0, 0.3))
    for bad in ("30", "30:1.5", "a:0.2"):
        with pytest.raises(ValueError, match="--distill-by-age"):
            parse_age_weights(bad)
    ages = torch.tensor([5.0, 29.9, 30.0, 45.0, 70.0, float("nan")])
    w = weight_by_age(ages, 0.7, parse_age_weights("30:0.5,60:0.3"))
    assert torch.allclose(w, torch.tensor([0.7, 0.7, 0.5, 0.5, 0.3, 0.7]))
    assert weight_by_age(ages, 0.7, ()) == 0.7
    # per-sample weights blend each row with its own weight; the gender weight stays separate
    dist = gaussian_age_targets(torch.tensor([20.0, 50.0]), 101)
    t_age = torch.softmax(torch.randn(2, 101, generator=torch.Generator().manual_seed(1)), 1)
    gender = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    g, d, _ = mix_targets(gender, dist, torch.tensor([20.0, 50.0]), torch.tensor([True, True]), t_age,
                          torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]), gender_weight=0.0)
    assert torch.allclose(d[0], t_age[0]) and torch.allclose(d[1], dist[1]) and torch.equal(g, gender)


def test_train_with_a_teacher(fast_cut, tmp_path):
    run = tmp_path / "student"
    cli("train", str(fast_cut), "-o", str(run), "--epochs", "1", "--batch-size", "8", "--image-size", "48",
        "--arch-kwargs", '{"widths": [8, 16, 16, 32], "blocks": [1, 1, 1, 1]}', "--teacher", "fast",
        "--distill", "0.7", "--distill-gender", "0.2", "--distill-by-age", "30:0.5", "--l1-weight", "0.3",
        "--gender-weight", "2", "--teacher-temperature", "0.5", "--gender-teacher", "default", "--threads", "1",
        "--no-progress")
    args = json.loads((run / "args.json").read_text())
    assert args["teacher"] == "fast" and args["distill"] == 0.7 and args["distill_gender"] == 0.2
    assert args["l1_weight"] == 0.3 and args["gender_weight"] == 2.0 and args["teacher_temperature"] == 0.5
    assert args["distill_by_age"] == "30:0.5" and args["gender_teacher"] == "default"
    assert (run / "teacher.npz").is_file() and (run / "gender_teacher.npz").is_file()
    hist = json.loads((run / "history.json").read_text())
    assert len(hist) == 1 and np.isfinite(hist[0]["train_loss"])
    # scripts/teacher_bias.py reads the run's teacher answers against its training labels, band by band
    sys.path.insert(0, str(REPO / "scripts"))
    rows = importlib.import_module("teacher_bias").teacher_table(run, (1.0, 0.5))
    cells = [[c.strip().split(" ")[0] for c in r.split("|")[2:-1]] for r in rows[2:]]
    assert len(rows) == 6 and cells[2] == cells[0]  # temperature 1 reads as the teacher's own expected value
    assert any(c != "-" for c in cells[0]) and cells[3] != cells[0]
    bad = cli("train", str(fast_cut), "-o", str(tmp_path / "bad"), "--teacher", "fast", "--distill", "1.5",
              "--no-progress", check=False)
    assert bad.returncode != 0 and "--distill" in bad.stderr
    bad = cli("train", str(fast_cut), "-o", str(tmp_path / "bad2"), "--teacher", "fast", "--distill-gender", "-0.1",
              "--no-progress", check=False)
    assert bad.returncode != 0 and "--distill-gender must be within" in bad.stderr
    bad = cli("train", str(fast_cut), "-o", str(tmp_path / "bad3"), "--l1-weight", "-0.1", "--no-progress",
              check=False)
    assert bad.returncode != 0 and "--l1-weight must be >= 0" in bad.stderr
    bad = cli("train", str(fast_cut), "-o", str(tmp_path / "bad4"), "--gender-weight", "-1", "--no-progress",
              check=False)
    assert bad.returncode != 0 and "--gender-weight must be >= 0" in bad.stderr
    bad = cli("train", str(fast_cut), "-o", str(tmp_path / "bad5"), "--teacher", "fast", "--teacher-temperature", "0",
              "--no-progress", check=False)
    assert bad.returncode != 0 and "--teacher-temperature must be > 0" in bad.stderr
    bad = cli("train", str(fast_cut), "-o", str(tmp_path / "bad6"), "--gender-teacher", "default", "--no-progress",
              check=False)
    assert bad.returncode != 0 and "--gender-teacher needs --teacher" in bad.stderr


def test_train_init_from_a_trained_model(fast_cut, tmp_path):
    """--init starts from a built-in model's weights (`fast`, a ResNet cut like these crops): its first epoch at
    a tiny learning rate scores like the model itself on val, far better than a random start; another
    architecture is refused."""
    common = ["--epochs", "1", "--batch-size", "8", "--image-size", "80", "--lr", "1e-6", "--warmup-epochs", "0",
              "--threads", "1", "--no-progress"]
    cli("train", str(fast_cut), "-o", str(tmp_path / "ft"), "--init", "fast", *common)  # its architecture too
    default_arch = '{"widths": [16, 32, 64, 128], "blocks": [1, 2, 2, 1]}'
    cli("train", str(fast_cut), "-o", str(tmp_path / "scratch"), *common, "--arch-kwargs", default_arch)
    assert json.loads((tmp_path / "ft" / "args.json").read_text())["arch_kwargs"] == json.loads(default_arch)
    ft = json.loads((tmp_path / "ft" / "history.json").read_text())[0]
    scratch = json.loads((tmp_path / "scratch" / "history.json").read_text())[0]
    assert ft["val_age_mae"] < 10 and scratch["val_age_mae"] > 15, (ft, scratch)
    bad = cli("train", str(fast_cut), "-o", str(tmp_path / "bad"), "--init", "fast", "--epochs", "1",
              "--arch-kwargs", '{"widths": [8, 16, 16, 32], "blocks": [1, 1, 1, 1]}', "--no-progress", check=False)
    assert bad.returncode != 0 and "architecture" in bad.stderr


def test_init_adapts_a_model_cut_another_way_but_refuses_other_ages():
    """--init from `fast` into a run on crops cut the other way (square <-> 5-point aligned): the weights are
    copied exactly and the note says which cut the run adapts them to; a run predicting other ages is
    refused."""
    from safetensors.torch import load_file

    from agegender.models.config import read_config
    from agegender.models.estimator import builtin_models
    from agegender.models.nets import build_model
    from agegender.training.init_weights import load_init

    path = builtin_models()["fast"].with_suffix(".safetensors")
    cfg = read_config(str(path))
    own = cfg.preprocessing
    other = (replace(own, crop="align5", margin=0.25, crop_size=112, level=False, level_slack=0.0)
             if own.crop == "square" else replace(own, crop="square", margin=0.0, crop_size=140))
    net = build_model(cfg.arch, num_ages=own.num_ages, **cfg.arch_kwargs)
    note = load_init(net, "fast", cfg.arch, cfg.arch_kwargs, other)
    assert f"were {own.crop}" in note and f"to {other.crop}" in note, note
    stored = {k: v.float() for k, v in load_file(str(path)).items()}
    assert all(torch.equal(v, stored[k]) for k, v in net.state_dict().items() if k in stored)
    with pytest.raises(ValueError, match="ages"):
        load_init(net, "fast", cfg.arch, cfg.arch_kwargs, replace(other, age_max=99))


def test_sharpening_a_teacher_moves_its_mass_towards_the_mode():
    """sharpen: rows stay distributions; temperature 1 changes nothing; below 1 a right-skewed age distribution
    (mode 18, a long tail to 40) narrows and its mean falls towards the mode, above 1 it widens; the mode and the
    classes with probability 0 stay where they are; a temperature of 0 or less is refused."""
    grid = torch.arange(101.0)
    skew = torch.exp(-0.5 * ((grid - 18) / torch.where(grid < 18, 2.0, 8.0)) ** 2)
    skew[60:] = 0.0
    dist = torch.stack([skew / skew.sum(), gaussian_age_targets(torch.tensor([50.0]), 101)[0]])
    assert sharpen(dist, 1.0) is dist

    def stats(d):
        mean = d @ grid
        return mean, (d @ grid**2 - mean**2).sqrt()

    mean, sd = stats(dist)
    for t in (0.5, 0.7, 2.0):
        out = sharpen(dist, t)
        m, s = stats(out)
        assert torch.allclose(out.sum(1), torch.ones(2), atol=1e-6) and bool((out[0, 60:] == 0).all())
        assert torch.equal(out.argmax(1), dist.argmax(1))
        assert abs(float(m[1]) - 50.0) < 1e-3  # a symmetric row keeps its mean
        if t < 1:
            assert 18 < float(m[0]) < float(mean[0]) and float(s[0]) < float(sd[0])
        else:
            assert float(m[0]) > float(mean[0]) and float(s[0]) > float(sd[0])
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="--teacher-temperature"):
            sharpen(dist, bad)
