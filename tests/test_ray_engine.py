"""`predict --engine ray` on a real Ray cluster that this module starts (2 CPUs on this machine, stopped at
the end), against the local pipeline on the same real photos (UTKFace subset, the 40 portraits, bad files):
the same rows; a worker killed in the middle of a batch loses nothing; a driver killed after its first part
file resumes to the same rows, each image once."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from .conftest import cli, need_module
from .kill_points import kill_a_ray_worker, kill_at
from .test_parquet_results import dataset_rows, parts, short_list

ray = need_module("ray", 'pip install -e ".[ray]"')
need_module("ray.data", 'pip install -e ".[ray]"')
need_module("pyarrow.parquet", 'pip install -e ".[ray]"')

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> str:
    """A local Ray cluster of 2 CPUs for this module; its address (HOST:PORT)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def ours(pid: int) -> bool:
    """Whether `pid` is a worker of the cluster this process started (its parent is our raylet)."""
    def parent(p: int) -> int:
        return int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])

    def command(p: int) -> str:
        return Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")

    raylet = parent(pid)
    return parent(raylet) == os.getpid() and "raylet" in command(raylet) and "MapWorker" in command(pid)


@pytest.fixture()
def local(collection_parquet) -> Path:
    """The local pipeline's Parquet results of the whole collection."""
    return collection_parquet


def ray_args(inputs: Path, address: str, *more: str) -> list[str]:
    return ["predict", f"@{inputs}", "--engine", "ray", "--address", address, "--no-progress", *more]


def test_ray_rows_equal_the_local_pipelines(cluster, local, photo_collection, tmp_path):
    out = tmp_path / "ray"
    run = cli(*ray_args(photo_collection / "list.txt", cluster, "--num-workers", "2", "--format", "parquet", "-o",
                        str(out), "--part-size", "32"), check=False)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("agegender predict: ")]
    assert len(errors) == 4 and all(any(n in e for e in errors) for n in ("truncated", "not_an_image", "empty",
                                                                            "missing"))
    rows = dataset_rows(out)
    assert rows == dataset_rows(local)  # every column of every row: boxes, scores, ages, genders, errors, model
    assert len({r["image"] for r in rows}) == 106 and len(parts(out)) == 4  # 106 images, 32 to a file
    assert json.loads((out / "_agegender.json").read_text()) == json.loads((local / "_agegender.json").read_text())
    assert ray.data.read_parquet(str(out)).count() == len(rows)  # a dataset Ray reads back


def test_a_killed_worker_loses_nothing(cluster, photo_collection, tmp_path):
    """A worker SIGKILLed in the middle of its first batch: Ray restarts it and runs the batch again; the JSON
    lines are the local pipeline's, in input order, each image once."""
    inputs, _ = short_list(photo_collection, tmp_path)
    expected = cli("predict", f"@{inputs}", "--format", "jsonl", "--no-progress", check=False).stdout
    out = tmp_path / "ray.jsonl"
    run = kill_a_ray_worker(ray_args(inputs, cluster, "--num-workers", "2", "--format", "jsonl", "-o", str(out)),
                            tmp_path / "paused-worker", ours)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert out.read_text() == expected and len(expected.splitlines()) == 36


def test_a_killed_driver_resumes(cluster, local, photo_collection, tmp_path):
    """The driver SIGKILLed right after its first part file; the same command again runs only the rest."""
    inputs, chosen = short_list(photo_collection, tmp_path)
    out = tmp_path / "resumed"
    args = ray_args(inputs, cluster, "--format", "parquet", "-o", str(out), "--part-size", "8")
    kill_at(args, "parts", 1)
    first = parts(out)
    assert len(first) == 1
    run = cli(*args, check=False)
    assert run.returncode == 1 and f"8 of {len(chosen)} images already in" in run.stderr, run.stderr
    assert {k: v for k, v in parts(out).items() if k in first} == first
    assert dataset_rows(out) == [r for r in dataset_rows(local) if r["image"] in chosen]
    shutil.rmtree(out)


def test_no_cluster_at_the_address_is_one_line(photo_collection):
    """An address where nothing listens: one line at once (Ray alone would retry for minutes)."""
    import socket

    with socket.socket() as s:  # a loopback port that was free a moment ago and is closed now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = cli(*ray_args(photo_collection / "list.txt", f"127.0.0.1:{port}"), check=False)
    assert run.returncode == 1 and run.stderr.strip().splitlines() == [
        f"agegender predict: error: no Ray cluster at 127.0.0.1:{port} (Connection refused): start one there with "
        "'ray start --head', or leave out --address for a local one"], run.stderr
