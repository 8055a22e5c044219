"""`predict --format parquet -o OUT` (local engine) on a real photo collection with bad files: the rows are
the JSON-lines results, one per face and one per image without a face or unreadable; rerunning skips what is
there; a run killed after two part files resumes to the rows of an uninterrupted run, each image once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agegender.inference.result_rows import ModelInfo, json_rows

from .conftest import cli, need_module
from .kill_points import kill_at

pq = need_module("pyarrow.parquet", 'pip install -e ".[parquet]"')

IMAGES = 106  # photo_collection's list.txt: 60 UTKFace files, 40 portraits, 5 odd files, 1 missing


def sorted_rows(rows) -> list[dict]:
    return sorted(rows, key=lambda r: (r["image"], -1 if r["face"] is None else r["face"]))


def dataset_rows(folder: Path) -> list[dict]:
    return sorted_rows(pq.read_table(folder).to_pylist())


def parts(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("part-*.parquet"))}


def predict_args(collection: Path, out: Path, *more: str, inputs: Path | None = None) -> list[str]:
    return ["predict", f"@{inputs or collection / 'list.txt'}", "--format", "parquet", "-o", str(out),
            "--part-size", "16", "--no-progress", *more]


def short_list(collection: Path, folder: Path) -> tuple[Path, set[str]]:
    """A list of 36 of the collection's inputs (20 UTKFace files, 10 portraits, the odd ones, the missing one)."""
    lines = (collection / "list.txt").read_text().splitlines()[1:]
    chosen = [*[s for s in lines if "/utk/" in s][:20], *[s for s in lines if "/frl/" in s][:10],
              *[s for s in lines if "/odd/" in s]]
    (folder / "short.txt").write_text("\n".join(chosen) + "\n")
    return folder / "short.txt", set(chosen)


@pytest.fixture()
def straight(collection_parquet) -> Path:
    return collection_parquet


def test_rows_are_the_jsonl_results_one_per_face(straight, collection_jsonl, photo_collection):
    from agegender.fileio import sha256_of
    from agegender.inference.parquet_results import arrow_schema
    from agegender.models.estimator import resolve_model_path

    lines = collection_jsonl.read_text().splitlines()
    assert len(lines) == IMAGES
    model = ModelInfo("default", "sha256:" + sha256_of(resolve_model_path("default"))[:12])
    rows = dataset_rows(straight)
    assert rows == sorted_rows(row for line in lines for row in json_rows(json.loads(line), model))
    by_image: dict[str, list[dict]] = {}
    for r in rows:
        by_image.setdefault(Path(r["image"]).name, []).append(r)
    assert len(by_image) == IMAGES
    assert [r["face"] for r in by_image["four.jpg"]] == [0, 1, 2, 3] and by_image["four.jpg"][0]["faces"] == 4
    blank = by_image["blank.png"]
    assert len(blank) == 1 and blank[0]["faces"] == 0 and blank[0]["face"] is None and blank[0]["error"] is None
    for name, why in (("truncated.jpg", "truncated"), ("not_an_image.jpg", "not an image"), ("empty.jpg", "empty"),
                      ("missing.jpg", "no such file")):
        (row,) = by_image[name]
        assert why in row["error"] and name in row["error"] and row["age"] is None, row
    portraits = [by_image[p.name] for p in (photo_collection / "frl").iterdir()]
    assert all(len(rows) == 1 and rows[0]["age"] > 0 for rows in portraits)  # one person in each
    assert len(parts(straight)) == -(-IMAGES // 16)  # whole images, 16 to a file
    assert all(pq.read_schema(straight / name).remove_metadata() == arrow_schema() for name in parts(straight))
    record = json.loads((straight / "_agegender.json").read_text())
    assert record["model"] == "default" and record["model_version"] == model.version and record["min_face"] == 10
    pandas = need_module("pandas", 'pip install -e ".[ray]"')
    assert len(pandas.read_parquet(straight)) == len(rows)  # the folder reads as one table elsewhere too


def test_rerun_skips_what_is_there(straight, photo_collection, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(straight, out)
    before = parts(out)
    run = cli(*predict_args(photo_collection, out), check=False)
    assert run.returncode == 1  # as the first run: some of these inputs cannot be read
    assert f"{IMAGES} of {IMAGES} images already in {out}; running the other 0" in run.stderr
    assert parts(out) == before


def test_other_settings_are_refused(straight, photo_collection, tmp_path):
    out = tmp_path / "other"
    shutil.copytree(straight, out)
    run = cli(*predict_args(photo_collection, out, "--threshold", "0.9"), check=False)
    assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "holds results made with other settings (score_threshold 0.6 -> 0.9)" in run.stderr
    run = cli("predict", str(photo_collection / "utk"), "--format", "parquet", "-o", str(photo_collection / "odd"),
              "--no-progress", check=False)
    assert run.returncode == 1 and "not an agegender results folder" in run.stderr


def test_killed_run_resumes_to_the_same_rows(straight, photo_collection, tmp_path):
    inputs, chosen = short_list(photo_collection, tmp_path)
    out = tmp_path / "killed"
    kill_at(predict_args(photo_collection, out, "--part-size", "8", inputs=inputs), "parts", 2)
    first = parts(out)
    assert len(first) == 2 and not list(out.glob(".part-*"))
    run = cli(*predict_args(photo_collection, out, "--part-size", "8", inputs=inputs), check=False)
    assert run.returncode == 1 and f"16 of {len(chosen)} images already in" in run.stderr
    assert {k: v for k, v in parts(out).items() if k in first} == first  # the killed run's parts kept as they were
    # nothing lost, nothing twice: the rows of the uninterrupted run for these images
    assert dataset_rows(out) == [r for r in dataset_rows(straight) if r["image"] in chosen]


def test_an_image_named_twice_runs_once(photo_collection, tmp_path):
    utk = sorted((photo_collection / "utk").iterdir())[:2]
    out = tmp_path / "twice"
    cli("predict", str(utk[0]), str(utk[1]), str(utk[0]), "--format", "parquet", "-o", str(out), "--no-progress")
    rows = dataset_rows(out)
    assert [r["image"] for r in rows] == sorted(map(str, utk))


def test_a_second_writer_is_refused(photo_collection, tmp_path):
    from agegender import Predictor
    from agegender.inference.parquet_results import ParquetResults
    from agegender.inference.result_rows import model_info
    from agegender.inference.settings import predictor_settings

    predictor = Predictor()
    out = tmp_path / "busy"
    with ParquetResults(out, model_info(predictor.estimator), predictor_settings(predictor)):
        run = cli("predict", str(photo_collection / "odd" / "blank.png"), "--format", "parquet", "-o", str(out),
                  "--no-progress", check=False)
    assert run.returncode == 1 and "another run is writing into this folder" in run.stderr
    assert not parts(out)
