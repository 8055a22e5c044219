"""`agegender train` and `agegender plot-history`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from .args import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an age and gender model on prepared datasets")
    p.add_argument("data", nargs="+", help="prepared dataset folder(s), prepared alike (crop mode, margin, size)")
    p.add_argument("-o", "--out", required=True, help="run folder (history, checkpoints, best model)")
    p.add_argument("--arch", default="resnet", help="backbone: resnet (default), wrn or mobilenet_v1")
    p.add_argument("--arch-kwargs", default="{}", help='backbone options as JSON, e.g. \'{"widths": [32,64,128,256]}\'')
    p.add_argument("--depth", type=int, help="wrn: depth (6n+4)")
    p.add_argument("--width", type=int, help="wrn: width factor k")
    p.add_argument("--image-size", type=positive_int, default=96)
    p.add_argument("--margin", type=float, default=-1.0,
                   help="crop margin of the model, narrower than the prepared crops' (their centre is used; "
                        "default: theirs)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="default 30; with --resume, lengthen the run to this many (default: its own)")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--schedule", choices=["cosine", "step", "constant"], default="cosine")
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--sigma", type=float, default=2.0, help="age label spread (years)")
    p.add_argument("--l1-weight", type=float, default=0.05,
                   help="weight of the L1 term on the expected age (years) beside the age targets' KL")
    p.add_argument("--gender-weight", type=float, default=1.0, help="weight of the gender loss against the age loss")
    p.add_argument("--no-flip", action="store_true")
    p.add_argument("--scale", type=float, default=0.10)
    p.add_argument("--shift", type=float, default=0.06)
    p.add_argument("--rotate", type=float, default=10.0)
    p.add_argument("--color", type=float, default=0.3)
    p.add_argument("--mixup", type=float, default=0.0, help="mixup alpha (0 = off)")
    p.add_argument("--erase", type=float, default=0.0, help="random erasing probability")
    p.add_argument("--camera", action="store_true",
                   help="camera-like augmentations: crop jitter, JPEG, blur, down-up scaling, grey/sepia, lighting")
    p.add_argument("--camera-options", default="",
                   help="with --camera (implied): its probabilities and strengths as JSON, e.g. "
                   "'{\"p_grey\": 0.4, \"p_sepia\": 0.2}' (fields of training.camera.CameraAugment)")
    p.add_argument("--balance", type=float, default=0.0, help="age-balanced sampling power (0 = off, 0.5 = sqrt)")
    p.add_argument("--balance-sources", action="store_true",
                   help="with several datasets: draw each with the same total weight")
    p.add_argument("--ema", type=float, default=0.0, help="weight EMA decay (0 = off)")
    p.add_argument("--init", default="",
                   help="start from a trained model's weights (built-in name, .safetensors or run folder; "
                        "its architecture unless --arch-kwargs says otherwise), e.g. to fine-tune on your own data")
    p.add_argument("--teacher", default="", help="distil from this trained model (built-in name or weights file)")
    p.add_argument("--distill", type=float, default=0.5,
                   help="with --teacher: weight of the teacher's targets against the labels (0..1)")
    p.add_argument("--distill-gender", type=float, default=None, metavar="W",
                   help="with --teacher: the gender targets' own weight (0..1); default: --distill's")
    p.add_argument("--gender-teacher", default="", metavar="MODEL",
                   help="with --teacher: take the gender targets' P(female) from this model instead (e.g. a student "
                        "that reads gender better than --teacher)")
    p.add_argument("--teacher-temperature", type=float, default=1.0, metavar="T",
                   help="with --teacher: sharpen (T < 1) or flatten (T > 1) its age distributions, p ** (1/T)")
    p.add_argument("--distill-by-age", default="", metavar="AGE:W[,AGE:W]",
                   help="with --teacher: from each labelled age upward the age targets take this teacher weight "
                        "(e.g. 30:0.5); below the first, --distill's")
    p.add_argument("--anchor", type=float, default=0.0,
                   help="with --init: pull the trained weights towards the initial ones (L2-SP) with this weight")
    p.add_argument("--freeze", type=int, default=0, metavar="K",
                   help="keep the backbone's first K layers as --init gave them (train the rest)")
    p.add_argument("--cache-views", type=int, default=0, metavar="V",
                   help="with --freeze, the CPU recipe: compute the frozen layers once (ONNX Runtime) for V views "
                        "of each face (the first clean, the others augmented) and train on those")
    p.add_argument("--val-fraction", type=float, default=0.0, help="carve validation from train (0: use split)")
    p.add_argument("--val-split", default="val")
    p.add_argument("--limit", type=int, default=0, help="at most N training samples (smoke tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0: torch's default)")
    p.add_argument("--workers", type=int, default=0,
                   help="data loader processes streaming crops from disk (0: decode all once into memory)")
    p.add_argument("--time-budget", type=float, default=0.0,
                   help="seconds: after the first epoch, cut --epochs to fit (the LR schedule follows)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)


def camera_config(on: bool, options: str):
    """--camera / --camera-options -> a CameraAugment (None when neither is given); unknown fields and
    bad JSON exit with one line."""
    from ..training.camera import CameraAugment

    if not options:
        return CameraAugment() if on else None
    try:
        fields = json.loads(options)
        if not isinstance(fields, dict):
            raise ValueError("not a JSON object")
        return CameraAugment.from_dict(fields)
    except (ValueError, TypeError) as exc:
        known = ", ".join(f.name for f in dataclasses.fields(CameraAugment))
        raise SystemExit(f"error: --camera-options {options!r}: {exc} (fields: {known})") from None


def cmd_train(a: argparse.Namespace) -> int:
    from ..training.augment import AugmentConfig
    from ..training.loop import TrainConfig, train

    kwargs = json.loads(a.arch_kwargs)
    if a.depth:
        kwargs["depth"] = a.depth
    if a.width:
        kwargs["width"] = a.width
    if a.arch == "wrn":
        kwargs.setdefault("input_size", a.image_size)
    aug = AugmentConfig(flip=not a.no_flip, scale=a.scale, shift=a.shift, rotate=a.rotate, color=a.color,
                        mixup=a.mixup, erase=a.erase)
    cfg = TrainConfig(
        data=a.data, out=a.out, arch=a.arch, arch_kwargs=kwargs, image_size=a.image_size, margin=a.margin,
        epochs=30 if a.epochs is None else a.epochs, camera=camera_config(a.camera, a.camera_options),
        balance_sources=a.balance_sources,
        freeze=a.freeze, cache_views=a.cache_views, anchor=a.anchor,
        batch_size=a.batch_size, optimizer=a.optimizer, lr=a.lr, weight_decay=a.weight_decay,
        warmup_epochs=a.warmup_epochs, schedule=a.schedule, sigma=a.sigma, l1_weight=a.l1_weight,
        gender_weight=a.gender_weight, augment=aug, balance=a.balance,
        val_split=a.val_split, val_fraction=a.val_fraction, limit=a.limit, ema=a.ema, seed=a.seed,
        device=a.device, threads=a.threads, workers=a.workers, time_budget=a.time_budget,
        init=a.init, teacher=a.teacher, distill=a.distill, distill_gender=a.distill_gender,
        teacher_temperature=a.teacher_temperature, gender_teacher=a.gender_teacher,
        distill_by_age=a.distill_by_age,
    )
    train(cfg, resume=a.resume, progress=not a.no_progress, extend_to=a.epochs if a.resume else None)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks
        print(f"best model: {Path(a.out) / 'best.safetensors'}")
    return 0


def add_plot_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot-history", help="plot a run's loss, gender accuracy and age MAE curves (PNG)")
    p.add_argument("run", help="training run folder (holds history.json)")
    p.add_argument("-o", "--out", help="PNG path (default: RUN/history.png)")
    p.set_defaults(func=cmd_plot)


def cmd_plot(a: argparse.Namespace) -> int:
    from ..evaluation.plots import plot_history

    path = plot_history(a.run, a.out)
    print(f"wrote {path}")
    return 0
