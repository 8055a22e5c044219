"""Training throughput: images per second and the share of time spent waiting for data.

Trains a few epochs on a prepared dataset with the data in memory (--workers 0) and streamed from disk by
N loader processes, and prints one row per setting from the run's own history (`images_per_second`,
`data_wait_share`, averaged over the epochs after the first).

    python benchmarks/train_throughput.py data/utk --limit 4000 --workers 0 1 2 [--device cuda]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from agegender.extras import script_imports

with script_imports():  # without its extra: one line naming it, no traceback
    from agegender.training.loop import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="prepared dataset folder")
    ap.add_argument("--limit", type=int, default=4000, help="training samples per epoch")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--image-size", type=int, default=112)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    rows = []
    for w in a.workers:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(data=a.data, out=str(Path(tmp) / "run"), epochs=a.epochs, limit=a.limit,
                              image_size=a.image_size, batch_size=a.batch_size, workers=w, device=a.device)
            hist = train(cfg, progress=False, log=lambda *_: None)
        later = hist[1:] or hist
        ips = sum(h["images_per_second"] for h in later) / len(later)
        wait = sum(h["data_wait_share"] for h in later) / len(later)
        rows.append((w, ips, wait))
    print(f"\ntraining throughput on {a.data} ({a.limit} samples/epoch, {a.image_size} px, batch {a.batch_size}, "
          f"device {a.device})\n")
    print("| data | images/s | time waiting for data |")
    print("|---|---:|---:|")
    for w, ips, wait in rows:
        where = "in memory (decoded once)" if w == 0 else f"streamed, {w} loader process{'es' if w > 1 else ''}"
        print(f"| {where} | {ips:.0f} | {100 * wait:.0f}% |")


if __name__ == "__main__":
    main()
