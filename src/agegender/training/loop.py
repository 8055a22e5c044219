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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.dataset import PreparedDataset
from ..data.prepare import assign_split
from ..fileio import atomic_write_json, atomic_write_text
from ..models.config import ModelConfig
from ..models.nets import AgeGenderNet, build_model
from ..models.torch_weights import save_model
from ..types import Preprocessing
from .augment import AugmentConfig, augment_batch, resize_batch
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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        if isinstance(d.get("augment"), dict):
            d["augment"] = AugmentConfig(**d["augment"])
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_images(ds: PreparedDataset, desc: str, progress: bool = True) -> np.ndarray:
    """All crops of a prepared dataset in one (N, S, S, 3) uint8 array (decoded once)."""
    size = ds.preprocessing.size
    out = np.empty((len(ds), size, size, 3), np.uint8)
    for i in tqdm(range(len(ds)), desc=desc, unit="img", disable=not progress, mininterval=1.0):
        img = ds.image(i)
        if img.shape[:2] != (size, size):
            import cv2

            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        out[i] = img
    return out


@dataclass
class Split:
    images: torch.Tensor  # (N, S, S, 3) uint8
    ages: torch.Tensor  # (N,) float, NaN unknown
    genders: torch.Tensor  # (N,) long, -1 unknown


def _split_data(cfg: TrainConfig, progress: bool) -> tuple[Split, Split, Preprocessing, dict[str, Any]]:
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

    def take(ds: PreparedDataset, idx: np.ndarray, desc: str) -> Split:
        sub = PreparedDataset.__new__(PreparedDataset)
        sub.__dict__.update(ds.__dict__)
        sub.rows = [ds.rows[i] for i in idx]
        return Split(
            torch.from_numpy(load_images(sub, desc, progress)),
            torch.from_numpy(ds.ages[idx].copy()),
            torch.from_numpy(ds.genders[idx].copy()),
        )

    tr = take(ds_train, idx_tr, "load train")
    va = take(ds_val, idx_va, "load val")
    ds_prep = ds_train.preprocessing
    prep = Preprocessing(crop=ds_prep.crop, margin=ds_prep.margin, size=cfg.image_size, detector=ds_prep.detector)
    return tr, va, prep, ds_train.meta


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
def evaluate_split(model: torch.nn.Module, split: Split, prep: Preprocessing, device: torch.device,
                   batch_size: int = 256, amp: bool = False, sigma: float = 2.0) -> dict[str, float]:
    """Loss, gender accuracy, age MAE and CS@5 of a model on a loaded split (no augmentation)."""
    model.eval()
    n = len(split.ages)
    tot_loss, ages_pred, pf = 0.0, [], []
    for i in range(0, n, batch_size):
        xb = split.images[i : i + batch_size].to(device, non_blocking=True)
        x = _normalise(resize_batch(xb, prep.size), prep)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            g, a = model(x)
        ab, gb = split.ages[i : i + batch_size].to(device), split.genders[i : i + batch_size].to(device)
        gt, dist, vals = _targets(ab, gb, prep, sigma)
        loss, _ = age_gender_loss(g, a, gt, dist, vals, prep.age_min)
        tot_loss += float(loss) * len(ab)
        pa = torch.softmax(a.float(), 1)
        ages_pred.append((pa @ torch.arange(prep.age_min, prep.age_max + 1, device=device).float()).cpu())
        pf.append(torch.softmax(g.float(), 1)[:, 1].cpu())
    pred = torch.cat(ages_pred).numpy()
    p_female = torch.cat(pf).numpy()
    ages = split.ages.numpy()
    genders = split.genders.numpy()
    ka, kg = ~np.isnan(ages), genders >= 0
    err = np.abs(pred[ka] - ages[ka])
    return {
        "loss": tot_loss / max(n, 1),
        "age_mae": float(err.mean()) if err.size else float("nan"),
        "cs5": float((err <= 5).mean()) if err.size else float("nan"),
        "gender_acc": float(((p_female[kg] >= 0.5).astype(int) == genders[kg]).mean()) if kg.any() else float("nan"),
    }


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
        w = csv.DictWriter(buf, fieldnames=list(history[0].keys()), lineterminator="\n")
        w.writeheader()
        w.writerows(history)
        atomic_write_text(out / "history.csv", buf.getvalue())


def _model_config(cfg: TrainConfig, prep: Preprocessing, ds_meta: dict[str, Any], metrics: dict[str, Any]) -> ModelConfig:
    card = {
        "trained_on": ds_meta.get("source", {}),
        "dataset": str(cfg.data),
        "train_split": cfg.train_split,
        "val": f"fraction {cfg.val_fraction}" if cfg.val_fraction else cfg.val_split,
        "recipe": {k: v for k, v in asdict(cfg).items() if k not in ("data", "out", "device", "workers", "threads")},
        "val_metrics": metrics,
    }
    return ModelConfig(arch=cfg.arch, preprocessing=prep, arch_kwargs=dict(cfg.arch_kwargs), card=card)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, log=print) -> list[dict[str, Any]]:
    """Train a model as `cfg` says; returns the per-epoch history. With resume, continues from
    out/checkpoint.pt (same config required)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    args_path = out / "args.json"
    if resume:
        if not (out / "checkpoint.pt").is_file():
            raise FileNotFoundError(f"{out}: nothing to resume (no checkpoint.pt)")
        saved = TrainConfig.from_dict(json.loads(args_path.read_text()))
        saved.device, saved.workers, saved.threads = cfg.device, cfg.workers, cfg.threads
        if cfg.epochs > saved.epochs:
            saved.epochs = cfg.epochs
        cfg = saved
    elif (out / "checkpoint.pt").exists():
        raise FileExistsError(f"{out} already holds a training run; use --resume or another --out folder")
    atomic_write_json(args_path, asdict(cfg))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = pick_device(cfg.device)
    amp = device.type == "cuda"

    tr, va, prep, ds_meta = _split_data(cfg, progress)
    model: AgeGenderNet = build_model(cfg.arch, num_ages=prep.num_ages, **cfg.arch_kwargs).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        tr_images = tr.images.to(device)
    else:
        tr_images = tr.images
    decay, no_decay = [], []
    for n_, p in model.named_parameters():
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

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)

    n = len(tr.ages)
    steps = max(1, n // cfg.batch_size) if n >= cfg.batch_size else 1
    sched = _Schedule(cfg, steps)
    history: list[dict[str, Any]] = []
    start_epoch, best_mae = 0, float("inf")
    if resume:
        ck = torch.load(out / "checkpoint.pt", map_location=device, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if ema is not None and "ema" in ck:
            ema.load_state_dict(ck["ema"])
        start_epoch, best_mae = int(ck["epoch"]), float(ck["best_mae"])
        history = json.loads((out / "history.json").read_text())[:start_epoch]
        log(f"resuming {out} at epoch {start_epoch + 1}/{cfg.epochs}")
    weights = _sample_weights(tr.ages, cfg.balance)
    gen = torch.Generator(device=device)
    aug = cfg.augment

    t_start = time.time()
    epoch = start_epoch
    while epoch < cfg.epochs:
        t0 = time.time()
        torch.manual_seed(cfg.seed * 1000 + epoch)
        gen.manual_seed(cfg.seed * 1000 + epoch)
        if weights is None:
            order = torch.randperm(n)
        else:
            order = torch.multinomial(weights, n, replacement=True)
        model.train()
        sums = {"loss": 0.0, "correct": 0.0, "gcount": 0.0, "abs": 0.0, "acount": 0.0}
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=not progress,
                   leave=False, mininterval=1.0)
        for it in bar:
            idx = order[it * cfg.batch_size : (it + 1) * cfg.batch_size]
            xb = tr_images[idx.to(tr_images.device)].to(device, non_blocking=True)
            ab, gb = tr.ages[idx].to(device), tr.genders[idx].to(device)
            x = _normalise(augment_batch(xb, prep.size, aug, gen), prep)
            gt, dist, vals = _targets(ab, gb, prep, cfg.sigma)
            if aug.mixup > 0:
                lam = float(np.random.beta(aug.mixup, aug.mixup))
                perm = torch.randperm(len(idx), device=device)
                x = lam * x + (1 - lam) * x[perm]
                gt, dist, vals = (lam * gt + (1 - lam) * gt[perm], lam * dist + (1 - lam) * dist[perm],
                                  lam * vals + (1 - lam) * vals[perm])
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            for gparam in opt.param_groups:
                gparam["lr"] = cfg.lr * sched.factor(epoch * steps + it)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                g, a = model(x)
            loss, _ = age_gender_loss(g, a, gt, dist, vals, prep.age_min, cfg.l1_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            with torch.no_grad():
                kg = gb >= 0
                sums["loss"] += float(loss) * len(idx)
                sums["correct"] += float(((g.float().argmax(1) == gb) & kg).sum())
                sums["gcount"] += float(kg.sum())
                ka = ~torch.isnan(ab)
                pa = torch.softmax(a.float(), 1) @ torch.arange(prep.age_min, prep.age_max + 1, device=device).float()
                sums["abs"] += float((pa - ab).abs()[ka].sum())
                sums["acount"] += float(ka.sum())
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        bar.close()
        eval_model = ema.module if ema is not None else model
        val = evaluate_split(eval_model, va, prep, device, amp=amp, sigma=cfg.sigma)
        row = {
            "epoch": epoch + 1,
            "lr": round(cfg.lr * sched.factor((epoch + 1) * steps - 1), 8),
            "train_loss": sums["loss"] / max(1, steps * cfg.batch_size if n >= cfg.batch_size else n),
            "train_gender_acc": sums["correct"] / max(1.0, sums["gcount"]),
            "train_age_mae": sums["abs"] / max(1.0, sums["acount"]),
            "val_loss": val["loss"],
            "val_gender_acc": val["gender_acc"],
            "val_age_mae": val["age_mae"],
            "val_cs5": val["cs5"],
            "seconds": round(time.time() - t0, 1),
        }
        history.append(row)
        if cfg.time_budget > 0 and epoch == start_epoch == 0:
            per_epoch = time.time() - t_start
            fit = max(2, int(cfg.time_budget / max(per_epoch, 1e-3)))
            if fit < cfg.epochs:
                log(f"time budget {cfg.time_budget:.0f}s: {per_epoch:.1f}s per epoch, training {fit} epochs")
                cfg.epochs = fit
                sched = _Schedule(cfg, steps)
                atomic_write_json(args_path, asdict(cfg))
        mcfg = _model_config(cfg, prep, ds_meta, {k: round(v, 4) for k, v in val.items()} | {"epoch": epoch + 1})
        cpu_model = build_model(cfg.arch, num_ages=prep.num_ages, **cfg.arch_kwargs)
        cpu_model.load_state_dict({k: v.float().cpu() for k, v in eval_model.state_dict().items()})
        if val["age_mae"] < best_mae:
            best_mae = val["age_mae"]
            save_model(out / "best.safetensors", cpu_model, mcfg)
        save_model(out / "last.safetensors", cpu_model, mcfg)
        ck = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1, "best_mae": best_mae}
        if ema is not None:
            ck["ema"] = ema.state_dict()
        tmp = out / ".checkpoint.pt.tmp"
        torch.save(ck, tmp)
        os.replace(tmp, out / "checkpoint.pt")
        _write_history(out, history)
        log(
            f"epoch {epoch + 1}/{cfg.epochs}  loss {row['train_loss']:.3f}  train MAE {row['train_age_mae']:.2f}  "
            f"val MAE {val['age_mae']:.2f}  val gender {val['gender_acc']:.3f}  CS@5 {val['cs5']:.3f}  "
            f"({row['seconds']}s)"
        )
        epoch += 1
    return history


__all__ = ["TrainConfig", "train", "evaluate_split", "F"]
