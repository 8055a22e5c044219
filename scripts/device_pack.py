"""Pack what a whole-network fine-tune of the default needs into parts small enough for one lent-GPU call each.

A device call carries at most 64 MiB of working tree, the tracked files included (docs/training-at-scale.md).
This writes, under -o (default `device/`, which git must ignore):

- `stage/`: the train and val splits of each prepared dataset, repacked (`agegender.data.repack`: WebP, the
  centre at --margin, the face keeping its pixels) at the same relative path, e.g. `data/utk-sq`; the teacher's
  answers (`teacher.npz` of a CPU run on those datasets) re-keyed for the repacked crops
  (`agegender.training.distill.rekey_teacher_cache`), so the GPU runs reuse them; the --init and --teacher
  files; and `runs/device.json`, which says where each is. Every path in it is relative to the repo root.
- `partK/part.zip` (K = 1..N): those files, stored (not compressed), each zip at most --part-mib.
- `plan.md`: the device calls, in order: each of the first N-1 unpacks one part on the warm machine (what it
  unpacks is ignored by git there, so later calls keep it); the last unpacks the last part and trains
  (`scripts/device_finetune.sh`).

    python scripts/device_pack.py data/utk-sq data/aaf-sq --answers runs/d5seed2/teacher.npz \\
        --teacher work/faceres-deep.onnx --init work/faceres-deep.safetensors

Rerunning resumes: repacked crops already written are kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

from agegender.extras import script_imports

with script_imports():  # without its extra: one line naming it, no traceback
    from agegender.data.dataset import PreparedDataset
    from agegender.data.repack import repack_dataset
    from agegender.training.distill import load_teacher_answers, rekey_teacher_cache

MIB = 1 << 20
CALL_LIMIT_MIB = 64
PLAN_JSON = "runs/device.json"
ANSWERS = "runs/device-teacher.npz"


def train_paths(roots: list[str], split: str = "train", read_from: Path | None = None) -> list[Path]:
    """The crops a training run on `roots` (as its command names them) computes teacher answers for, in
    order; read_from: read the datasets' labels below this folder instead (a staged copy)."""
    out: list[Path] = []
    for root in roots:
        ds = PreparedDataset((read_from or Path()) / root, split)
        out += [Path(root) / r["file"] for r in ds.rows]
    return out


def tracked_mib(repo: Path) -> float:
    """Size of the git-tracked files (they travel with every device call)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout.split(b"\0")
    return sum((repo / n.decode()).stat().st_size for n in names if n and (repo / n.decode()).is_file()) / MIB


def relative_inside(path: str) -> str:
    """`path` relative to the repo root (the working folder); ValueError if it lies outside (the device
    has only the repo)."""
    p = Path(path)
    if p.is_absolute() or ".." in p.parts:
        raise ValueError(f"{path}: give a path inside the repository, relative to its root (the device "
                         "has only the repo; copy it into an ignored folder there)")
    return str(p)


def stage(args: argparse.Namespace, stage_dir: Path) -> dict:
    """Write the repacked datasets, the re-keyed answers, the model files and runs/device.json under stage_dir."""
    data = [relative_inside(d) for d in args.data]
    load_teacher_answers(Path(args.answers), args.teacher, train_paths(data))  # before minutes of repacking
    for d in data:
        n = repack_dataset(d, stage_dir / d, splits=["train", "val"], fmt="webp", quality=args.quality,
                           margin=args.margin, progress=not args.no_progress)
        print(f"{d}: {n} train and val crops repacked")
    rekey_teacher_cache(Path(args.answers), stage_dir / ANSWERS, args.teacher, train_paths(data),
                        train_paths(data, read_from=stage_dir))
    plan = {"data": data, "init": relative_inside(args.init), "teacher": relative_inside(args.teacher),
            "answers": ANSWERS}
    for key in ("init", "teacher"):
        (stage_dir / plan[key]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plan[key], stage_dir / plan[key])
    (stage_dir / PLAN_JSON).write_text(json.dumps(plan, indent=1) + "\n")
    return plan


def split_into_parts(stage_dir: Path, out: Path, part_bytes: int) -> list[Path]:
    """Zip (stored) every file under stage_dir into out/partK/part.zip, each at most part_bytes; the small
    files (labels, records, models, answers) first, so part 1 says what the rest is for."""
    files = sorted((p for p in stage_dir.rglob("*") if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: (p.suffix == ".webp", str(p)))
    parts: list[Path] = []
    zf: zipfile.ZipFile | None = None
    size = 0
    for f in files:
        n = f.stat().st_size + 100 + 2 * len(str(f.relative_to(stage_dir)))  # headers of the zip
        if n > part_bytes:
            raise ValueError(f"{f}: {n / MIB:.1f} MiB, more than a part may hold ({part_bytes / MIB:.1f} MiB)")
        if zf is None or size + n > part_bytes:
            if zf is not None:
                zf.close()
            parts.append(out / f"part{len(parts) + 1}" / "part.zip")
            parts[-1].parent.mkdir(parents=True, exist_ok=True)
            zf, size = zipfile.ZipFile(parts[-1], "w", zipfile.ZIP_STORED), 0
        zf.write(f, str(f.relative_to(stage_dir)))
        size += n
    if zf is not None:
        zf.close()
    return parts


def write_plan(out: Path, parts: list[Path]) -> Path:
    """out/plan.md: the device calls that move the parts and train, one after another on a warm machine."""
    lines = ["# Device calls, in order (each as soon as the last returns: a machine goes back after 30 s idle)", ""]
    for k, p in enumerate(parts, 1):
        cmd = f"bash scripts/device_finetune.sh unpack {p.parent}"
        if k == len(parts):
            cmd += " && bash scripts/device_finetune.sh train"
        lines.append(f"{k}. carry `[\"{p.parent}\"]`, timeout_s {600 if k == len(parts) else 120}: `{cmd}`")
    lines += ["", "Then here: `bash scripts/device_finetune.sh receive FILES_AT` (the reply's files_at) and",
              "`scripts/wise_sweep.py` on each run it unpacks under runs/."]
    (out / "plan.md").write_text("\n".join(lines) + "\n")
    return out / "plan.md"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="+", help="prepared datasets, as the CPU run's train command named them")
    ap.add_argument("--answers", required=True, help="that run's teacher.npz")
    ap.add_argument("--teacher", required=True, help="the teacher file it was computed with")
    ap.add_argument("--init", required=True, help="the weights the fine-tune starts from")
    ap.add_argument("-o", "--out", default="device")
    ap.add_argument("--margin", type=float, default=0.1, help="the repacked crops' margin (default 0.1)")
    ap.add_argument("--quality", type=int, default=75, help="WebP quality (default 75)")
    ap.add_argument("--part-mib", type=float, default=0.0,
                    help="largest part (default: 64 MiB less the tracked files and 2 MiB)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    if not Path(".git").exists():
        ap.error("run from the repository root")
    part_mib = args.part_mib or CALL_LIMIT_MIB - tracked_mib(Path()) - 2
    try:
        stage(args, out / "stage")
    except (ValueError, FileNotFoundError) as e:  # a path outside the repo, answers of another run, no dataset
        ap.error(str(e))
    for old in out.glob("part*/part.zip"):
        old.unlink()
    parts = split_into_parts(out / "stage", out, int(part_mib * MIB))
    for p in parts:
        print(f"{p}: {p.stat().st_size / MIB:.1f} MiB")
    print(f"{len(parts)} parts of at most {part_mib:.1f} MiB; the calls: {write_plan(out, parts)}")


if __name__ == "__main__":
    main()
