"""What `predict --engine ray` costs and buys on this machine: images/s of the Ray path with 1 and 2 workers
against the local threaded pipeline, on the same real images, and the Ray start-up cost.

    python benchmarks/ray_throughput.py [--utk 400] [--portraits 40]

(a) In one process, after a warm-up pass that puts the files in the page cache, with a local Ray cluster
    running (`ray.init`, this machine's CPUs; its start timed): the local pipeline (`predict_stream`, 2
    threads, one onnxruntime thread per session, as `agegender predict` and each Ray worker run it) and
    `ray_predict` with 1 and 2 workers, taking turns for --repeat rounds. Each run is once on 1 image (its
    start-up: the model loads; for Ray also the actors' start, which every run pays) and once on all of
    them; the medians, images/s over all, and excluding the start-up.
(b) The command line end to end, each in a fresh process, writing Parquet: `agegender predict` (local),
    `--engine ray` starting its own local cluster, and `--engine ray --address` on a running cluster;
    wall time and peak resident memory of the command's process tree and of the Ray cluster's processes.
The machine's load average is printed before and after: on a shared machine read the numbers within one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prepare_scale import tree_rss_mb

REPO = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("AGEGENDER_DATASETS", REPO.parent / "shared" / "datasets"))


def inputs(utk: int, portraits: int) -> list[str]:
    """`utk` UTKFace files spread over the set, then `portraits` of the 40 frl_canada portraits."""
    files = sorted((DATASETS / "UTKFace").glob("*.jpg"))
    chosen = files[:: max(1, len(files) // utk)][:utk] if utk else []
    chosen += sorted((DATASETS / "frl_canada" / "images").glob("*.jpg"))[:portraits]
    if len(chosen) < utk + portraits:
        raise SystemExit(f"found {len(chosen)} of the {utk + portraits} images under {DATASETS}")
    return [str(p) for p in chosen]


def seconds(run, paths: list[str]) -> float:
    """Seconds for run(paths) (an iterator of results) to yield a result for every path."""
    t0 = time.perf_counter()
    count = sum(1 for _ in run(paths))
    assert count == len(paths), (count, len(paths))
    return time.perf_counter() - t0


def in_process(paths: list[str], repeat: int) -> tuple[list[tuple[str, dict[str, float]]], float, float]:
    """(a): rows (system, median timings over `repeat` rounds, the systems taking turns in each), the Ray
    cluster's start-up seconds and those of the first run on it (1 image: the workers' first imports, left
    out of the rows)."""
    import ray

    from agegender.inference.batch import predict_stream
    from agegender.inference.ray_engine import connect, ray_predict
    from agegender.inference.settings import PredictorSpec

    for p in paths:  # warm the page cache: every system reads the files from memory
        Path(p).read_bytes()
    systems = [
        ("local pipeline (as `predict` runs it: 2 threads, 1 onnxruntime thread per session)",
         lambda ps: predict_stream(PredictorSpec(threads=1).build(), ps, workers=2)),
        *[(f"ray, {w} worker{'s' if w > 1 else ''}",
           lambda ps, w=w: ray_predict(ps, PredictorSpec(), num_workers=w, preserve_order=False)) for w in (1, 2)],
    ]
    t0 = time.perf_counter()
    connect(num_cpus=os.cpu_count())
    cluster = time.perf_counter() - t0
    try:
        first_run = seconds(systems[1][1], paths[:1])
        times: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in systems}
        for _ in range(repeat):
            for name, run in systems:
                times[name].append((seconds(run, paths[:1]), seconds(run, paths)))
    finally:
        ray.shutdown()
    rows = []
    for name, pairs in times.items():
        one, total = (statistics.median(t[k] for t in pairs) for k in (0, 1))
        rows.append((name, {"first": one, "total": total, "rate": len(paths) / total,
                            "rate_after_first": (len(paths) - 1) / (total - one) if total > one else float("nan")}))
    return rows, cluster, first_run


def run_cli(args: list[str], with_cluster: bool = False) -> tuple[float, float]:
    """`agegender ARGS` in a fresh process: (wall seconds, peak resident MB of its process tree; with_cluster:
    plus the processes of the Ray cluster this process started)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "agegender.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    peak = 0.0
    while proc.poll() is None:
        # all of this process's descendants (the command, the cluster's processes) but not this process itself
        rss = tree_rss_mb(os.getpid()) - tree_rss_mb_self() if with_cluster else tree_rss_mb(proc.pid)
        peak = max(peak, rss)
        time.sleep(0.2)
    seconds = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in (0, 1) or "Traceback" in err:
        raise SystemExit(f"agegender {' '.join(args[:3])} ... failed:\n{err[-3000:]}")
    return seconds, peak


def tree_rss_mb_self() -> float:
    """Resident memory of this process alone, in MB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def end_to_end(paths: list[str], work: Path) -> list[tuple[str, float, float]]:
    """(b): rows (command, wall seconds, peak MB)."""
    import ray

    listing = work / "inputs.txt"
    listing.write_text("\n".join(paths) + "\n")
    base = ["predict", f"@{listing}", "--format", "parquet", "--no-progress"]
    rows = []
    for name, more in (("agegender predict (local)", []),
                       ("--engine ray (starts its own cluster)", ["--engine", "ray"])):
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        rows.append((name, *run_cli([*base, "-o", str(out), *more])))
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        address = ray.get_runtime_context().gcs_address
        for workers in (1, 2):
            out = work / "out"
            shutil.rmtree(out, ignore_errors=True)
            rows.append((f"--engine ray --address (running cluster), --num-workers {workers}",
                         *run_cli([*base, "-o", str(out), "--engine", "ray", "--address", address, "--num-workers",
                                   str(workers)], with_cluster=True)))
    finally:
        ray.shutdown()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utk", type=int, default=400, help="UTKFace files (200x200)")
    ap.add_argument("--portraits", type=int, default=40, help="frl_canada portraits (1350x1800), at most 40")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of (a); the medians are printed")
    a = ap.parse_args(argv)
    paths = inputs(a.utk, a.portraits)
    load_before = os.getloadavg()
    rows, cluster, first_run = in_process(paths, a.repeat)
    with tempfile.TemporaryDirectory(prefix="agegender-ray-bench-") as work:
        cli_rows = end_to_end(paths, Path(work))
    load_after = os.getloadavg()
    print(f"\n{len(paths)} images ({a.utk} UTKFace, {a.portraits} portraits), {os.cpu_count()} CPUs; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after\n")
    print(f"median of {a.repeat} rounds, the systems taking turns:\n")
    print("| system | start-up s (a run on 1 image) | wall s | images/s | images/s excluding start-up |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {r['first']:.1f} | {r['total']:.1f} | {r['rate']:.1f} | {r['rate_after_first']:.1f} |")
    print(f"\nlocal Ray cluster start (ray.init, {os.cpu_count()} CPUs): {cluster:.1f} s; the first run on it "
          f"(1 image, 1 worker; not in the table): {first_run:.1f} s\n")
    print("| command (Parquet out) | wall s | images/s | peak memory MB (process tree) |")
    print("|---|---:|---:|---:|")
    for name, seconds, peak in cli_rows:
        print(f"| {name} | {seconds:.1f} | {len(paths) / seconds:.1f} | {peak:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
