"""The training loop: prepared dataset in, run folder out.

Run folder: args.json, history.json/.csv (per-epoch metrics), best.safetensors (lowest validation age
MAE, with the model's preprocessing record), last.safetensors, checkpoint.pt (for --resume; loads with
weights_only=True).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..data.dataset import PreparedDataset
from ..data.prepare import assign_split
from ..evaluation.metrics import summarize
from ..fileio import atomic_write_json, atomic_write_text
from ..models.config import ModelConfig, read_config
from ..models.estimator import resolve_model_path
from ..models.nets import AgeGenderNet, build_model
from ..models.torch_weights import load_model, save_model
from ..types import Preprocessing
from .augment import AugmentConfig, augment_batch, resize_batch
from .batches import CropSource, index_checksum
from .distill import mix_targets, teacher_targets
from .distributed import DistContext, all_gather, all_max, all_sum, barrier, setup, teardown
from .losses import age_gender_loss, gaussian_age_targets


@dataclass
class TrainConfig:
    data: str
    out: str
    arch: str = "resnet"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    image_size: int = 96
    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    schedule: str = "cosine"  # cosine | step | constant
    sigma: float = 2.0
    l1_weight: float = 0.05
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    balance: float = 0.0  # 0 = plain shuffling; 0.5 = sample ages with weight freq^-0.5
    train_split: str = "train"
    val_split: str = "val"
    val_fraction: float = 0.0  # >0: carve validation out of the training split instead
    limit: int = 0  # use at most this many training samples (smoke tests)
    ema: float = 0.0  # exponential moving average decay of the weights (0 = off)
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    threads: int = 0
    time_budget: float = 0.0  # >0: after epoch 1, cut the epoch count to fit this many seconds
    init: str = ""  # start from this trained model's weights (same architecture); "" = random
    teacher: str = ""  # model to distil from (built-in name or weights file); "" = labels only
    distill: float = 0.5  # weight of the teacher's targets against the labels

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        if isinstance(d.get("augment"), dict):
            d["augment"] = AugmentConfig(**d["augment"])
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _load_splits(cfg: TrainConfig) -> tuple[CropSource, CropSource, Preprocessing, dict[str, Any]]:
    """Training and validation samples (labels now, images on demand) and the model's preprocessing."""
    ds_train = PreparedDataset(cfg.data, cfg.train_split)
    if cfg.val_fraction > 0:
        is_val = np.array(
            [assign_split(r["file"], (1 - cfg.val_fraction, cfg.val_fraction, 0.0), cfg.seed) == "val"
             for r in ds_train.rows]
        )
        idx_tr, idx_va = np.flatnonzero(~is_val), np.flatnonzero(is_val)
        ds_val = ds_train
    else:
        ds_val = PreparedDataset(cfg.data, cfg.val_split)
        idx_tr, idx_va = np.arange(len(ds_train)), np.arange(len(ds_val))
    if len(idx_va) == 0:
        raise ValueError(f"{cfg.data}: no validation samples (split {cfg.val_split!r}); use --val-fraction")
    if cfg.limit:
        rng = np.random.default_rng(cfg.seed)
        idx_tr = np.sort(rng.permutation(idx_tr)[: cfg.limit])
        idx_va = np.sort(rng.permutation(idx_va)[: max(cfg.limit // 4, 8)])
    if len(idx_tr) == 0:
        raise ValueError(f"{cfg.data}: no training samples in split {cfg.train_split!r}")
    size = ds_train.preprocessing.size

    def source(ds: PreparedDataset, idx: np.ndarray) -> CropSource:
        return CropSource([ds.path(int(i)) for i in idx], ds.ages[idx], ds.genders[idx], size)

    ds_prep = ds_train.preprocessing
    # crops are stored at the dataset's size and resized to image_size in training: inference does the same
    crop_size = ds_prep.size if ds_prep.size != cfg.image_size else 0
    prep = Preprocessing(crop=ds_prep.crop, margin=ds_prep.margin, size=cfg.image_size, detector=ds_prep.detector,
                         crop_size=crop_size)
    return source(ds_train, idx_tr), source(ds_val, idx_va), prep, ds_train.meta


class _Schedule:
    def __init__(self, cfg: TrainConfig, steps_per_epoch: int) -> None:
        self.cfg, self.spe = cfg, steps_per_epoch
        self.total = cfg.epochs * steps_per_epoch
        self.warm = int(cfg.warmup_epochs * steps_per_epoch)

    def factor(self, step: int) -> float:
        if step < self.warm:
            return (step + 1) / self.warm
        if self.cfg.schedule == "constant":
            return 1.0
        t = (step - self.warm) / max(1, self.total - self.warm)
        if self.cfg.schedule == "step":
            return 0.1 ** int(t * 3)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def _targets(ages: torch.Tensor, genders: torch.Tensor, prep: Preprocessing, sigma: float):
    known_a = ~torch.isnan(ages)
    a = torch.nan_to_num(ages, nan=float(prep.age_min))
    dist = gaussian_age_targets(a, prep.num_ages, prep.age_min, sigma) * known_a.unsqueeze(1)
    g = torch.zeros(len(genders), 2, device=genders.device)
    known_g = genders >= 0
    g[known_g, genders[known_g]] = 1.0
    values = a.clamp(prep.age_min, prep.age_max)
    return g, dist, values


def _normalise(x: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    mean = torch.tensor(prep.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(prep.std, device=x.device).view(1, 3, 1, 1)
    if prep.color == "BGR":
        x = x.flip(1)
    return (x - mean) / std


@torch.no_grad()
def evaluate_split(model: torch.nn.Module, split: CropSource, prep: Preprocessing, ctx: DistContext,
                   batch_size: int = 256, sigma: float = 2.0, workers: int = 0) -> dict[str, float]:
    """Loss, gender accuracy, age MAE and CS@5 on a split (no augmentation); each rank takes a shard and
    the predictions are gathered, so every rank returns the same numbers."""
    model.eval()
    device, amp = ctx.device, ctx.device.type == "cuda"
    mine = torch.arange(ctx.rank, len(split), ctx.world)
    batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
    loss_sum, preds = 0.0, []
    grid = torch.arange(prep.age_min, prep.age_max + 1, device=device).float()
    for idx, (xb, ab, gb) in zip(batches, split.batches(batches, workers, pin=amp)):
        x = _normalise(resize_batch(xb.to(device, non_blocking=True), prep.size), prep)
        if amp:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            g, a = model(x)
        ab, gb = ab.to(device), gb.to(device)
        gt, dist, vals = _targets(ab, gb, prep, sigma)
        loss, _ = age_gender_loss(g, a, gt, dist, vals, prep.age_min)
        loss_sum += float(loss) * len(idx)
        age = (torch.softmax(a.float(), 1) @ grid).cpu().numpy()
        pf = torch.softmax(g.float(), 1)[:, 1].cpu().numpy()
        preds.append((idx.numpy(), age, pf))
    gathered = all_gather(ctx, (loss_sum, preds))
    n = len(split)
    pred_age, p_female = np.full(n, np.nan), np.full(n, np.nan)
    for _, rank_preds in gathered:
        for idx, age, pf in rank_preds:
            pred_age[idx], p_female[idx] = age, pf
    m = summarize(pred_age, p_female, split.ages.numpy(), split.genders.numpy())
    return {"loss": sum(ls for ls, _ in gathered) / max(n, 1), "age_mae": m["age_mae"], "cs5": m["cs5"],
            "gender_acc": m["gender_acc"]}


def _init_path(init: str) -> Path:
    """The .safetensors file of --init (a built-in name resolves to its .safetensors copy)."""
    path = resolve_model_path(init)
    if path.suffix == ".onnx":
        path = path.with_suffix(".safetensors")
    if not path.is_file():
        raise FileNotFoundError(f"--init {init}: needs a .safetensors model (not found: {path})")
    return path


def _load_init(net: AgeGenderNet, cfg: TrainConfig, prep: Preprocessing) -> None:
    """Copy the weights of a trained model (built-in name, .safetensors or run folder) into `net`; it must
    have the same architecture, age classes and crop (mode and margin); the input size may differ."""
    src, scfg = load_model(_init_path(cfg.init))
    sp = scfg.preprocessing
    if (scfg.arch, scfg.arch_kwargs) != (cfg.arch, dict(cfg.arch_kwargs)):
        raise ValueError(f"--init {cfg.init}: architecture {scfg.arch} {scfg.arch_kwargs} differs from this "
                         f"run's {cfg.arch} {cfg.arch_kwargs}")
    if not sp.same_cut(prep) or (sp.age_min, sp.age_max) != (prep.age_min, prep.age_max):
        raise ValueError(f"--init {cfg.init}: trained on {sp.crop} crops, margin {sp.margin}, ages "
                         f"{sp.age_min}..{sp.age_max}; this dataset has {prep.crop}, margin {prep.margin}")
    net.load_state_dict({k: v.float() for k, v in src.state_dict().items()})


def _sample_weights(ages: torch.Tensor, power: float) -> torch.Tensor | None:
    if power <= 0:
        return None
    a = torch.nan_to_num(ages, nan=30).clamp(0, 100).long()
    counts = torch.bincount(a, minlength=101).float().clamp_min(1)
    return counts[a] ** (-power)


def _write_history(out: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_json(out / "history.json", history)
    if history:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(history[0].keys()), lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        w.writerows(history)
        atomic_write_text(out / "history.csv", buf.getvalue())


def _model_config(
    cfg: TrainConfig, prep: Preprocessing, ds_meta: dict[str, Any], metrics: dict[str, Any]
) -> ModelConfig:
    card = {
        "trained_on": ds_meta.get("source", {}),
        "dataset": str(cfg.data),
        "train_split": cfg.train_split,
        "val": f"fraction {cfg.val_fraction}" if cfg.val_fraction else cfg.val_split,
        "recipe": {k: v for k, v in asdict(cfg).items() if k not in ("data", "out", "device", "workers", "threads")},
        "val_metrics": metrics,
    }
    return ModelConfig(arch=cfg.arch, preprocessing=prep, arch_kwargs=dict(cfg.arch_kwargs), card=card)


def _epoch_batches(n: int, cfg: TrainConfig, ctx: DistContext, epoch: int,
                   weights: torch.Tensor | None) -> list[torch.Tensor]:
    """This rank's index batches for an epoch. Every rank draws the same global order; each global batch
    of cfg.batch_size is cut into equal consecutive slices, one per rank."""
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    if weights is None:
        order = torch.randperm(n, generator=gen)
    else:
        order = torch.multinomial(weights, n, replacement=True, generator=gen)
    gb = min(cfg.batch_size, n - n % ctx.world) if n < cfg.batch_size else cfg.batch_size
    local = gb // ctx.world
    steps = max(1, n // gb)
    return [order[s * gb + ctx.rank * local : s * gb + (ctx.rank + 1) * local] for s in range(steps)]


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, log=print) -> list[dict[str, Any]]:
    """Train a model as `cfg` says; returns the per-epoch history. With resume, continues from
    out/checkpoint.pt (same config required). Under torchrun every rank calls this; rank 0 writes."""
    ctx = setup(cfg.device)
    try:
        return _train(cfg, resume, progress and ctx.is_main, log if ctx.is_main else (lambda *a, **k: None), ctx)
    finally:
        teardown(ctx)


def _train(cfg: TrainConfig, resume: bool, progress: bool, log, ctx: DistContext) -> list[dict[str, Any]]:
    out = Path(cfg.out)
    args_path = out / "args.json"
    if cfg.batch_size % ctx.world:
        raise ValueError(f"--batch-size {cfg.batch_size} must be divisible by the number of processes {ctx.world}")
    if resume:
        if not (out / "checkpoint.pt").is_file():
            raise FileNotFoundError(f"{out}: nothing to resume (no checkpoint.pt)")
        saved = TrainConfig.from_dict(json.loads(args_path.read_text()))
        saved.device, saved.workers, saved.threads = cfg.device, cfg.workers, cfg.threads
        saved.epochs = max(saved.epochs, cfg.epochs)
        cfg = saved
    elif (out / "checkpoint.pt").exists():
        raise FileExistsError(f"{out} already holds a training run; use --resume or another --out folder")
    if cfg.init and not resume and not cfg.arch_kwargs:  # the architecture comes with the weights
        init_cfg = read_config(str(_init_path(cfg.init)))
        cfg.arch, cfg.arch_kwargs = init_cfg.arch, dict(init_cfg.arch_kwargs)
    barrier(ctx)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args_path, asdict(cfg))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = ctx.device
    amp = device.type == "cuda"

    tr, va, prep, ds_meta = _load_splits(cfg)
    if cfg.workers <= 0:  # small data: decode once, keep in memory (on the GPU when there is one)
        tr.load_all("load train", progress, device)
        va.load_all("load val", progress)
    soft = None
    if cfg.teacher:
        if not 0.0 <= cfg.distill <= 1.0:
            raise ValueError(f"--distill must be within 0..1, got {cfg.distill}")
        soft = teacher_targets(cfg.teacher, tr, replace(prep, size=tr.size, crop_size=0), prep, progress=progress)
    net: AgeGenderNet = build_model(cfg.arch, num_ages=prep.num_ages, **cfg.arch_kwargs)
    if cfg.init and not resume:
        _load_init(net, cfg, prep)
    net = net.to(device)
    if amp:
        net = net.to(memory_format=torch.channels_last)
    model: torch.nn.Module = net
    if ctx.enabled:
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[ctx.local_rank] if amp else None)
    decay, no_decay = [], []
    for p in net.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    elif cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg.lr)
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r} (adamw or sgd)")
    ema = None
    if cfg.ema > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)

    n = len(tr)
    weights = _sample_weights(tr.ages, cfg.balance)
    steps = len(_epoch_batches(n, cfg, ctx, 0, weights))
    sched = _Schedule(cfg, steps)
    history: list[dict[str, Any]] = []
    start_epoch, best_mae = 0, float("inf")
    if resume:
        ck = torch.load(out / "checkpoint.pt", map_location=device, weights_only=True)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if ema is not None and "ema" in ck:
            ema.load_state_dict(ck["ema"])
        start_epoch, best_mae = int(ck["epoch"]), float(ck["best_mae"])
        history = json.loads((out / "history.json").read_text())[:start_epoch]
        log(f"resuming {out} at epoch {start_epoch + 1}/{cfg.epochs}")
    gen = torch.Generator(device=device)
    aug = cfg.augment
    grid = torch.arange(prep.age_min, prep.age_max + 1, device=device).float()
    t_start = time.time()
    epoch = start_epoch
    while epoch < cfg.epochs:
        t0 = time.time()
        torch.manual_seed(cfg.seed * 1000 + epoch)
        np.random.seed(cfg.seed * 1000 + epoch)
        gen.manual_seed(cfg.seed * 1000 + epoch * ctx.world + ctx.rank)
        index_batches = _epoch_batches(n, cfg, ctx, epoch, weights)
        model.train()
        sums = [0.0] * 7  # loss*n, correct, gender count, abs err, age count, samples, index checksum
        wait = 0.0
        bar = tqdm(total=len(index_batches), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not progress, leave=False, mininterval=1.0)
        batches = tr.batches(index_batches, cfg.workers, pin=amp)
        for it, idx in enumerate(index_batches):
            t_wait = time.time()
            xb, ab, gb = next(batches)
            wait += time.time() - t_wait
            xb, ab, gb = xb.to(device, non_blocking=True), ab.to(device), gb.to(device)
            x = _normalise(augment_batch(xb, prep.size, aug, gen), prep)
            gt, dist_t, vals = _targets(ab, gb, prep, cfg.sigma)
            if soft is not None:
                gt, dist_t, vals = mix_targets(gt, dist_t, vals, ~torch.isnan(ab), soft[0][idx].to(device),
                                               soft[1][idx].to(device), cfg.distill, prep.age_min)
            if aug.mixup > 0:
                lam = float(np.random.beta(aug.mixup, aug.mixup))
                perm = torch.randperm(len(idx), device=device)
                x = lam * x + (1 - lam) * x[perm]
                gt, dist_t, vals = (lam * gt + (1 - lam) * gt[perm], lam * dist_t + (1 - lam) * dist_t[perm],
                                    lam * vals + (1 - lam) * vals[perm])
            if amp:
                x = x.contiguous(memory_format=torch.channels_last)
            for gparam in opt.param_groups:
                gparam["lr"] = cfg.lr * sched.factor(epoch * steps + it)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                g, a = model(x)
            loss, _ = age_gender_loss(g, a, gt, dist_t, vals, prep.age_min, cfg.l1_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(net)
            with torch.no_grad():
                kg, ka = gb >= 0, ~torch.isnan(ab)
                pa = torch.softmax(a.float(), 1) @ grid
                sums[0] += float(loss.detach()) * len(idx)
                sums[1] += float(((g.float().argmax(1) == gb) & kg).sum())
                sums[2] += float(kg.sum())
                sums[3] += float((pa - ab).abs()[ka].sum())
                sums[4] += float(ka.sum())
                sums[5] += len(idx)
                sums[6] += index_checksum(idx)
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        bar.close()
        sums = all_sum(ctx, sums)
        train_seconds = time.time() - t0
        eval_model = ema.module if ema is not None else net
        val = evaluate_split(eval_model, va, prep, ctx, sigma=cfg.sigma, workers=cfg.workers)
        row = {
            "epoch": epoch + 1,
            "lr": round(cfg.lr * sched.factor((epoch + 1) * steps - 1), 8),
            "train_loss": sums[0] / max(1.0, sums[5]),
            "train_gender_acc": sums[1] / max(1.0, sums[2]),
            "train_age_mae": sums[3] / max(1.0, sums[4]),
            "val_loss": val["loss"],
            "val_gender_acc": val["gender_acc"],
            "val_age_mae": val["age_mae"],
            "val_cs5": val["cs5"],
            "samples": int(sums[5]),
            "data_checksum": sums[6],
            "images_per_second": round(sums[5] / max(train_seconds, 1e-9), 1),
            "data_wait_share": round(all_max(ctx, wait) / max(train_seconds, 1e-9), 3),
            "seconds": round(time.time() - t0, 1),
        }
        history.append(row)
        if cfg.time_budget > 0 and epoch == start_epoch == 0:
            per_epoch = all_max(ctx, time.time() - t_start)
            fit = max(2, int(cfg.time_budget / max(per_epoch, 1e-3)))
            if fit < cfg.epochs:
                log(f"time budget {cfg.time_budget:.0f}s: {per_epoch:.1f}s per epoch, training {fit} epochs")
                cfg.epochs = fit
                sched = _Schedule(cfg, steps)
                if ctx.is_main:
                    atomic_write_json(args_path, asdict(cfg))
        if ctx.is_main:
            best_mae = _save_epoch(out, cfg, prep, ds_meta, val, eval_model, net, opt, ema, epoch, best_mae, history)
        best_mae = min(best_mae, val["age_mae"])
        barrier(ctx)
        log(
            f"epoch {epoch + 1}/{cfg.epochs}  loss {row['train_loss']:.3f}  train MAE {row['train_age_mae']:.2f}  "
            f"val MAE {val['age_mae']:.2f}  val gender {val['gender_acc']:.3f}  CS@5 {val['cs5']:.3f}  "
            f"({row['seconds']}s, {row['images_per_second']:.0f} img/s, data wait {100 * row['data_wait_share']:.0f}%)"
        )
        epoch += 1
    return history


def _save_epoch(out: Path, cfg: TrainConfig, prep: Preprocessing, ds_meta: dict[str, Any], val: dict[str, float],
                eval_model: torch.nn.Module, net: torch.nn.Module, opt: torch.optim.Optimizer, ema: Any, epoch: int,
                best_mae: float, history: list[dict[str, Any]]) -> float:
    """Write best/last weights, the resumable checkpoint and the history (atomically); returns best MAE."""
    mcfg = _model_config(cfg, prep, ds_meta, {k: round(v, 4) for k, v in val.items()} | {"epoch": epoch + 1})
    cpu_model = build_model(cfg.arch, num_ages=prep.num_ages, **cfg.arch_kwargs)
    cpu_model.load_state_dict({k: v.float().cpu() for k, v in eval_model.state_dict().items()})
    if val["age_mae"] < best_mae:
        best_mae = val["age_mae"]
        save_model(out / "best.safetensors", cpu_model, mcfg)
    save_model(out / "last.safetensors", cpu_model, mcfg)
    ck = {"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1, "best_mae": best_mae}
    if ema is not None:
        ck["ema"] = ema.state_dict()
    # history first: a kill between the two leaves a history one epoch ahead, which --resume trims to the
    # checkpoint's epoch (the other order would lose that epoch's row)
    _write_history(out, history)
    tmp = out / ".checkpoint.pt.tmp"
    torch.save(ck, tmp)
    os.replace(tmp, out / "checkpoint.pt")
    return best_mae


__all__ = ["TrainConfig", "evaluate_split", "train"]
