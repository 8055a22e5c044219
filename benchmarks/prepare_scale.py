"""Prepare at IMDB-WIKI scale: throughput and memory of `agegender prepare` for 1 and 2 workers.

Builds a dataset in the real IMDB-WIKI layout (`wiki_crop/NN/*.jpg` + `wiki.mat` in the real schema,
written with scipy) with N entries whose images are whole photos made from real UTKFace faces (pasted
at random scales and places on textured backgrounds; a pool of distinct photos, hard-linked to N paths),
then times `agegender prepare wiki` on it, sampling the resident memory of the whole process tree.

    python benchmarks/prepare_scale.py --entries 100000 --workers 1 2 [--limit 20000] [--kill-after 20]

--kill-after S: SIGKILL the 2-worker run after S seconds, rerun it, and check it completes with the same
output as an uninterrupted run would have (same labels).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("AGEGENDER_DATASETS", REPO.parent / "shared" / "datasets"))


def make_layout(root: Path, entries: int, pool: int, seed: int = 0) -> Path:
    """Write root/wiki_crop/ with `entries` image paths (hard links to `pool` generated photos) and wiki.mat."""
    import cv2
    from scipy.io import savemat

    from agegender.detectors import create_detector
    from agegender.imageio import load_image, save_image

    rng = np.random.default_rng(seed)
    faces = sorted((DATASETS / "UTKFace").glob("*.jpg"))
    if not faces:
        raise SystemExit(f"no UTKFace images under {DATASETS}")
    det = create_detector("retinaface")
    crop = root / "wiki_crop"
    (crop / "pool").mkdir(parents=True, exist_ok=True)
    pool_boxes = []
    for k in range(pool):
        face = load_image(faces[int(rng.integers(len(faces)))])
        side = int(rng.integers(120, 260))
        h, w = int(side * rng.uniform(1.3, 1.8)), int(side * rng.uniform(1.3, 1.8))
        bg = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 6)
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        bg[y : y + side, x : x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        save_image(crop / "pool" / f"{k}.jpg", bg, quality=90)
        found = det.detect(bg)
        pool_boxes.append(found[0].box if found else (x, y, x + side, y + side))
    full_path, dob, taken, gender, score, second, loc, names = [], [], [], [], [], [], [], []
    for i in range(entries):
        k = int(rng.integers(pool))
        rel = f"{i % 100:02d}/{i}_1970-01-01_2000.jpg"
        dst = crop / rel
        dst.parent.mkdir(exist_ok=True)
        if not dst.exists():
            os.link(crop / "pool" / f"{k}.jpg", dst)
        year = int(rng.integers(1930, 2000))
        dob.append(719529 + int((year - 1970) * 365.25) + int(rng.integers(0, 365)))
        taken.append(min(2015, year + int(rng.integers(5, 80))))
        gender.append(float(rng.choice([0.0, 1.0, np.nan], p=[0.45, 0.45, 0.1])))
        score.append(float(rng.choice([-np.inf, rng.uniform(0, 6)], p=[0.2, 0.8])))
        second.append(float(rng.choice([np.nan, rng.uniform(0, 3)], p=[0.85, 0.15])))
        loc.append(np.array([pool_boxes[k]], np.float64))
        full_path.append(np.array([rel]))
        names.append(np.array([f"person {i}"]))

    def row(values, dtype=None):
        a = np.empty((1, entries), dtype=object if dtype is None else dtype)
        a[0, :] = values if dtype is None else np.asarray(values, dtype)
        return a

    wiki = {"dob": row(dob, np.float64), "photo_taken": row(taken, np.uint16), "full_path": row(full_path),
            "gender": row(gender, np.float64), "name": row(names), "face_location": row(loc),
            "face_score": row(score, np.float64), "second_face_score": row(second, np.float64)}
    savemat(crop / "wiki.mat", {"wiki": wiki})
    return crop


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return total / 1024


def run_prepare(crop: Path, out: Path, workers: int, limit: int, kill_after: float | None = None) -> dict:
    cmd = [sys.executable, "-m", "agegender.cli", "prepare", "wiki", str(crop), "-o", str(out), "--workers",
           str(workers), "--no-progress"] + (["--limit", str(limit)] if limit else [])
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    samples = []
    while proc.poll() is None:
        samples.append((time.time() - t0, tree_rss_mb(proc.pid)))
        if kill_after is not None and time.time() - t0 > kill_after:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"killed_at": time.time() - t0}
        time.sleep(0.5)
    output = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise SystemExit(f"prepare failed:\n{output}")
    seconds = time.time() - t0
    n = sum(1 for _ in open(out / "labels.csv")) - 1
    rss = [m for _, m in samples] or [0.0]
    q = [rss[int(len(rss) * f)] for f in (0.25, 0.5, 0.75)] + [rss[-1]]
    return {"seconds": seconds, "faces": n, "rss_peak": max(rss), "rss_quartiles": q, "output": output}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--pool", type=int, default=500, help="distinct generated photos")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--limit", type=int, default=0, help="prepare only the first N kept entries (0: all)")
    ap.add_argument("--kill-after", type=float, default=None)
    ap.add_argument("--work", default=None, help="folder for the generated data (default: a temp folder)")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="agegender-scale-"))
    crop = work / "wiki_crop"
    if not (crop / "wiki.mat").exists():
        t = time.time()
        make_layout(work, a.entries, a.pool)
        print(f"generated {a.entries} entries ({a.pool} distinct photos) in {time.time() - t:.0f}s under {work}")
    print("\n| workers | entries prepared | seconds | images/s | peak RSS (MB) | RSS at 25/50/75/100% (MB) |")
    print("|---:|---:|---:|---:|---:|---|")
    for w in a.workers:
        out = work / f"prepared-w{w}"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        r = run_prepare(crop, out, w, a.limit)
        q = " / ".join(f"{v:.0f}" for v in r["rss_quartiles"])
        rate = r["faces"] / r["seconds"]
        print(f"| {w} | {r['faces']} | {r['seconds']:.0f} | {rate:.1f} | {r['rss_peak']:.0f} | {q} |")
    if a.kill_after:
        out = work / "prepared-killed"
        k = run_prepare(crop, out, max(a.workers), a.limit, kill_after=a.kill_after)
        done = len(list((out / "parts").glob("*.csv")))
        r = run_prepare(crop, out, max(a.workers), a.limit)
        same = (out / "labels.csv").read_text() == (work / f"prepared-w{max(a.workers)}" / "labels.csv").read_text()
        print(f"\nkilled after {k['killed_at']:.0f}s with {done} chunks done; the rerun finished in "
              f"{r['seconds']:.0f}s; labels identical to the uninterrupted run: {same}")


if __name__ == "__main__":
    main()
