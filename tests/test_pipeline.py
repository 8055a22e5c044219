"""prepare -> train -> evaluate -> plot-history -> predict -> export, through the CLI, on real data."""

import json

import numpy as np

from .conftest import WIKI_MAT, cli, need, need_module

need_module("torch")


def test_prepare_wiki_dry_run_prints_counts():
    out = cli("prepare", "wiki", str(need(WIKI_MAT).parent), "--dry-run")
    for line in ("entries: 62328", "kept: 38138", "dropped (no_face): 18016", "dropped (second_face): 4070",
                 "dropped (low_face_score): 1319", "dropped (unknown_gender): 736", "dropped (age_out_of_range): 49"):
        assert line in out.stdout
    stricter = cli("prepare", "wiki", str(WIKI_MAT), "--dry-run", "--min-score", "3")
    assert "kept: 38138" not in stricter.stdout


def test_prepare_output_and_resume(prepared, utk_subset, tmp_path):
    meta = json.loads((prepared / "meta.json").read_text())
    assert meta["complete"] and meta["num_inputs"] == 60
    assert meta["num_samples"] + sum(meta["skipped"].values()) == 60
    assert meta["splits"]["train"] >= 18 and meta["preprocessing"]["crop"] == "align5"
    labels = (prepared / "labels.csv").read_text().splitlines()
    assert labels[0].startswith("file,age,gender,split,source,det_score") and len(labels) == meta["num_samples"] + 1
    assert (prepared / "summary.png").stat().st_size > 1000 and "train:" in (prepared / "summary.txt").read_text()
    # a killed run: chunk 1 never finished; rerunning redoes only that chunk, and the result is the same
    parts = prepared / "parts" / "00001.csv"
    parts.unlink()
    (prepared / "labels.csv").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in (prepared / "parts").iterdir()}
    cli("prepare", "utkface", str(utk_subset / "images"), "--split-file", str(utk_subset / "split.csv"), "-o",
        str(prepared), "--chunk-size", "16", "--no-progress")
    after = {p.name: p.stat().st_mtime_ns for p in (prepared / "parts").iterdir()}
    assert all(after[n] == t for n, t in before.items()) and "00001.csv" in after
    assert (prepared / "labels.csv").read_text().splitlines() == labels


def test_prepare_csv_skips_bad_files(tmp_path, frl_images):
    (tmp_path / "bad.jpg").write_text("not an image")
    rows = ["path,age,gender"] + [f"{p},{20 + i},female" for i, p in enumerate(frl_images[:3])]
    rows += ["bad.jpg,30,male", "missing.jpg,40,male"]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    out = cli("prepare", "csv", str(tmp_path / "labels.csv"), "-o", str(tmp_path / "ds"), "--no-progress")
    assert "prepared 3 faces" in out.stdout and "skipped (unreadable): 2" in out.stdout


def test_train_evaluate_plot_predict_export(prepared, tmp_path, frl_images):
    run = tmp_path / "run"
    cli("train", str(prepared), "-o", str(run), "--epochs", "2", "--batch-size", "8", "--image-size", "64",
        "--arch-kwargs", '{"widths": [8, 16, 16, 32], "blocks": [1, 1, 1, 1]}', "--no-progress", "--mixup", "0.2",
        "--erase", "0.3")
    hist = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_age_mae"]) for h in hist)
    # resume continues to a longer schedule without redoing epochs
    cli("train", str(prepared), "-o", str(run), "--epochs", "3", "--resume", "--no-progress")
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1, 2, 3]
    # a second run into the same folder without --resume is refused
    assert cli("train", str(prepared), "-o", str(run), check=False).returncode == 1
    cli("plot-history", str(run))
    assert (run / "history.png").stat().st_size > 5000
    out = cli("evaluate", str(run), str(prepared), "--split", "test", "--no-progress")
    report = json.loads((run / "eval-test" / "report.json").read_text())
    assert report["mode"] == "crops" and report["overall"]["n"] >= 15
    assert "age MAE" in out.stdout and (run / "eval-test" / "predicted_vs_true.png").exists()
    assert set(report["by_gender"]) <= {"male", "female"} and "by_race" in report
    cal = report["gender_calibration"]  # over the faces found, each bin's faces adding up to them
    found = round(report["overall"]["faces_found"] * report["overall"]["n"])
    assert sum(r["n"] for r in cal["gender_reliability"]) == found
    assert 0 <= cal["gender_ece"] <= 0.5 and (run / "eval-test" / "gender_reliability.png").stat().st_size > 5000
    assert "Expected calibration error" in (run / "eval-test" / "report.md").read_text()
    pred = cli("predict", str(frl_images[0]), "--model", str(run), "--format", "jsonl")
    assert len(json.loads(pred.stdout)["faces"]) == 1
    cli("export", str(run), "-o", str(tmp_path / "m.onnx"))
    from agegender.export.onnx_export import parity_check
    from agegender.models import load_estimator

    est = load_estimator(tmp_path / "m.onnx")
    # trained on the dataset's 112 px crops resized to 64: inference cuts at 112 and resizes the same way
    assert est.preprocessing.size == 64 and est.preprocessing.crop_size == 112
    assert "input 64px RGB (cut at 112px, then resized)" in cli("models", str(tmp_path / "m.onnx")).stdout
    from agegender.imageio import load_image

    crops = np.stack([load_image(p) for p in sorted((prepared / "images" / "00000").glob("*.jpg"))[:8]])
    import cv2

    crops = np.stack([cv2.resize(c, (64, 64), interpolation=cv2.INTER_AREA) for c in crops])
    diff = parity_check(run / "best.safetensors", tmp_path / "m.onnx", crops)
    assert diff["age_years"] < 1e-3 and diff["p_female"] < 1e-4
