"""The training loop: prepared datasets in, run folder out.

Run folder: args.json, history.json/.csv (per-epoch metrics, validation per source when there are several
datasets), best.safetensors (lowest validation age MAE - the mean over sources - with the model's
preprocessing record), last.safetensors, checkpoint.pt (for --resume; loads with weights_only=True), and
with --cache-views the cached features of the frozen layers (features/).

Two recipes share the loop: the whole network on augmented crops, or (--freeze K --cache-views V, the CPU
recipe of training/frozen.py) the layers above K on cached features of V augmented views.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..evaluation.metrics import breakdown, summarize
from ..fileio import atomic_write_json
from ..models.config import read_config
from ..models.nets import AgeGenderNet, build_model
from ..types import Preprocessing
from .batches import index_checksum
from .config import TrainConfig
from .distill import mix_targets, parse_age_weights, soft_targets, weight_by_age
from .distributed import DistContext, all_gather, all_max, all_sum, barrier, setup, teardown
from .frozen import FeatureCache, split_net, trainable_parameters
from .init_weights import init_architecture, init_path, load_init
from .inputs import FeatureInputs, ImageInputs
from .losses import age_gender_loss, gaussian_age_targets
from .run_files import save_epoch
from .splits import TrainData, load_train_data, sample_weights

Forward = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


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


@torch.no_grad()
def evaluate_split(forward: Forward, inputs: Any, prep: Preprocessing, ctx: DistContext, sources: np.ndarray,
                   names: list[str], batch_size: int = 256, sigma: float = 2.0) -> dict[str, float]:
    """Loss, gender accuracy, age MAE, CS@5 and bias on a validation split (ImageInputs without augmentation,
    or FeatureInputs). Each rank takes a shard and the predictions are gathered, so every rank returns the
    same numbers. With several sources, the headline numbers are the means over sources (each source counts
    alike), and each source's own numbers follow as KEY@SOURCE."""
    amp = ctx.device.type == "cuda"
    mine = torch.arange(ctx.rank, len(inputs), ctx.world)
    batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
    loss_sum, preds = 0.0, []
    grid = torch.arange(prep.age_min, prep.age_max + 1, device=ctx.device).float()
    for idx, x, ab, gb in inputs.batches(batches):
        if amp and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=amp):
            g, a = forward(x)
        gt, dist, vals = _targets(ab, gb, prep, sigma)
        loss, _ = age_gender_loss(g, a, gt, dist, vals, prep.age_min)
        loss_sum += float(loss) * len(idx)
        preds.append((idx.numpy(), (torch.softmax(a.float(), 1) @ grid).cpu().numpy(),
                      torch.softmax(g.float(), 1)[:, 1].cpu().numpy()))
    gathered = all_gather(ctx, (loss_sum, preds))
    n = len(inputs)
    pred_age, p_female = np.full(n, np.nan), np.full(n, np.nan)
    for _, rank_preds in gathered:
        for idx, age, pf in rank_preds:
            pred_age[idx], p_female[idx] = age, pf
    out = {"loss": sum(ls for ls, _ in gathered) / max(n, 1)}
    ages, genders = inputs.ages.numpy(), inputs.genders.numpy()
    keys = ("age_mae", "cs5", "gender_acc", "age_bias")
    if len(names) == 1:
        m = summarize(pred_age, p_female, ages, genders)
        return out | {k: m[k] for k in keys}
    per = breakdown([names[s] for s in sources], pred_age, p_female, ages, genders)
    out |= {k: float(np.mean([per[s][k] for s in names])) for k in keys}
    return out | {f"{k}@{s}": per[s][k] for s in names for k in keys}


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, log=print,
          extend_to: int | None = None) -> list[dict[str, Any]]:
    """Train a model as `cfg` says; returns the per-epoch history. With resume, continues the run in
    cfg.out from its checkpoint.pt under the config saved there (only cfg's device, workers and threads
    apply); extend_to lengthens it to that many epochs. Under torchrun every rank calls this; rank 0 writes."""
    ctx = setup(cfg.device)
    try:
        log = log if ctx.is_main else (lambda *a, **k: None)
        return _train(cfg, resume, progress and ctx.is_main, log, ctx, extend_to)
    finally:
        teardown(ctx)


def _resolve(cfg: TrainConfig, resume: bool, ctx: DistContext, extend_to: int | None = None) -> TrainConfig:
    """The run's config: the saved one when resuming; the architecture of --init when none is given."""
    out = Path(cfg.out)
    if cfg.batch_size % ctx.world:
        raise ValueError(f"--batch-size {cfg.batch_size} must be divisible by the number of processes {ctx.world}")
    if cfg.cache_views and not cfg.freeze:
        raise ValueError("--cache-views needs --freeze K (the layers whose output is cached)")
    if cfg.cache_views and ctx.enabled:
        raise ValueError("--cache-views is the single-process CPU recipe; under torchrun use --freeze alone")
    if resume:
        if not (out / "checkpoint.pt").is_file():
            raise FileNotFoundError(f"{out}: nothing to resume (no checkpoint.pt)")
        saved = TrainConfig.from_dict(json.loads((out / "args.json").read_text()))
        saved.device, saved.workers, saved.threads = cfg.device, cfg.workers, cfg.threads
        saved.epochs = max(saved.epochs, extend_to or 0)
        return saved
    if (out / "checkpoint.pt").exists():
        raise FileExistsError(f"{out} already holds a training run; use --resume or another --out folder")
    if cfg.init and not cfg.arch_kwargs:  # the architecture comes with the weights
        cfg.arch, cfg.arch_kwargs = init_architecture(cfg.init)
    return cfg


def _model_preprocessing(cfg: TrainConfig, data: TrainData) -> Preprocessing:
    """The record: the data's cut at the run's size; input format and age classes from --init if given."""
    if not cfg.init:
        return data.prep
    ip = read_config(str(init_path(cfg.init))).preprocessing
    return replace(data.prep, color=ip.color, mean=ip.mean, std=ip.std, age_min=ip.age_min, age_max=ip.age_max)


@dataclass
class _Run:
    """Everything an epoch needs."""

    cfg: TrainConfig
    ctx: DistContext
    data: TrainData
    prep: Preprocessing
    net: AgeGenderNet
    forward: Forward  # what the training step calls (the DDP model, or the layers above the frozen ones)
    train_in: Any  # ImageInputs | FeatureInputs
    val_in: Any
    opt: torch.optim.Optimizer
    ema: Any
    soft: tuple[torch.Tensor, torch.Tensor] | None
    weights: torch.Tensor | None
    steps: int
    sched: _Schedule
    gen: torch.Generator
    anchor: list[tuple[torch.nn.Parameter, torch.Tensor]] | None = None  # (parameter, its --init value)
    lower: torch.nn.Module | None = None  # the frozen layers (kept in eval mode: batch-norm statistics stay)
    age_steps: tuple[tuple[float, float], ...] = ()  # --distill-by-age, parsed: ((age_from, weight), ...)


def _inputs(cfg: TrainConfig, data: TrainData, prep: Preprocessing, net: AgeGenderNet, ctx: DistContext,
            gen: torch.Generator, progress: bool) -> tuple[Forward | None, Any, Any, Any]:
    """(forward on cached features or None, train inputs, val inputs, frozen lower part or None)."""
    device = ctx.device
    lower = None
    upper_forward = None
    if cfg.freeze:
        lower, upper_forward = split_net(net, cfg.freeze)
    if cfg.cache_views:
        cache = FeatureCache(Path(cfg.out) / "features", lower, prep, data.data_prep, cfg.threads)
        views = [cache.view("train", data.train, j, cfg.camera if j else None, cfg.seed, progress)
                 for j in range(cfg.cache_views)]
        val = cache.view("val", data.val, 0, None, cfg.seed, progress)
        return (upper_forward, FeatureInputs(views, data.train.ages, data.train.genders, device),
                FeatureInputs([val], data.val.ages, data.val.genders, device), lower)
    if cfg.workers <= 0:  # small data: decode once, keep in memory (on the GPU when there is one)
        data.train.load_all("load train", progress, device)
        data.val.load_all("load val", progress)
    train_in = ImageInputs(data.train, prep, data.cut, device, cfg.workers, cfg.augment, cfg.camera, gen, cfg.seed)
    return None, train_in, ImageInputs(data.val, prep, data.cut, device, cfg.workers), lower


def _optimizer(cfg: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r} (adamw or sgd)")


def _build(cfg: TrainConfig, resume: bool, progress: bool, log, ctx: DistContext) -> _Run:
    for flag, w in (("--l1-weight", cfg.l1_weight), ("--gender-weight", cfg.gender_weight)):
        if w < 0:
            raise ValueError(f"{flag} must be >= 0, got {w}")
    data = load_train_data(cfg)
    prep = _model_preprocessing(cfg, data)
    soft, age_steps = None, ()
    if cfg.teacher:
        for flag, w in (("--distill", cfg.distill), ("--distill-gender", cfg.distill_gender)):
            if w is not None and not 0.0 <= w <= 1.0:
                raise ValueError(f"{flag} must be within 0..1, got {w}")
        age_steps = parse_age_weights(cfg.distill_by_age)  # a bad spec is refused before the teacher's long pass
        soft = soft_targets(Path(cfg.out), cfg.teacher, data.train, data.data_prep, prep, cfg.teacher_temperature,
                            cfg.gender_teacher, progress)
    elif cfg.gender_teacher:
        raise ValueError("--gender-teacher needs --teacher (the age targets' teacher; it may be the same model)")
    net: AgeGenderNet = build_model(cfg.arch, num_ages=prep.num_ages, **cfg.arch_kwargs)
    if cfg.init and not resume:
        note = load_init(net, cfg.init, cfg.arch, cfg.arch_kwargs, prep)
        if note:
            log(note)
    net = net.to(ctx.device)
    if ctx.device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    gen = torch.Generator(device=ctx.device)
    upper_forward, train_in, val_in, lower = _inputs(cfg, data, prep, net, ctx, gen, progress)
    params = trainable_parameters(net, lower) if lower is not None else list(net.parameters())
    forward: Forward = net
    if ctx.enabled:
        ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
        forward = torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)
    if upper_forward is not None:
        forward = upper_forward
    ema = None
    if cfg.ema > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    weights = sample_weights(data.train.ages, data.train_source, cfg.balance, cfg.balance_sources)
    steps = len(_epoch_batches(len(data.train), cfg, ctx, 0, weights))
    anchor = None
    if cfg.anchor > 0:
        if not cfg.init:
            raise ValueError("--anchor pulls the weights towards --init's: give --init")
        anchor = [(p, p.detach().clone()) for p in params if p.ndim > 1]  # weights, not biases (as decay)
    return _Run(cfg, ctx, data, prep, net, forward, train_in, val_in, _optimizer(cfg, params), ema, soft, weights,
                steps, _Schedule(cfg, steps), gen, anchor, lower, age_steps)


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


def _step(r: _Run, idx: torch.Tensor, x: torch.Tensor, ab: torch.Tensor, gb: torch.Tensor, lr: float
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimisation step on a batch; returns (loss on the targets, gender logits, age logits), detached."""
    cfg, prep, device = r.cfg, r.prep, r.ctx.device
    gt, dist_t, vals = _targets(ab, gb, prep, cfg.sigma)
    if r.soft is not None:
        weight = weight_by_age(ab, cfg.distill, r.age_steps)
        gt, dist_t, vals = mix_targets(gt, dist_t, vals, ~torch.isnan(ab), r.soft[0][idx].to(device),
                                       r.soft[1][idx].to(device), weight, prep.age_min, cfg.distill_gender)
    if cfg.augment.mixup > 0:
        lam = float(np.random.beta(cfg.augment.mixup, cfg.augment.mixup))
        perm = torch.randperm(len(idx), device=device)
        x = lam * x + (1 - lam) * x[perm]
        gt, dist_t, vals = (lam * gt + (1 - lam) * gt[perm], lam * dist_t + (1 - lam) * dist_t[perm],
                            lam * vals + (1 - lam) * vals[perm])
    amp = device.type == "cuda"
    if amp and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    for group in r.opt.param_groups:
        group["lr"] = lr
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        g, a = r.forward(x)
    loss, _ = age_gender_loss(g, a, gt, dist_t, vals, prep.age_min, cfg.l1_weight, cfg.gender_weight)
    total = loss + cfg.anchor * sum(((p - p0) ** 2).sum() for p, p0 in r.anchor) if r.anchor else loss
    r.opt.zero_grad(set_to_none=True)
    total.backward()
    r.opt.step()
    if r.ema is not None:
        r.ema.update_parameters(r.net)
    return loss.detach(), g.detach(), a.detach()


def _train_epoch(r: _Run, epoch: int, progress: bool) -> tuple[list[float], float]:
    """One pass over this epoch's batches; returns the summed statistics and the data wait in seconds."""
    cfg, device = r.cfg, r.ctx.device
    torch.manual_seed(cfg.seed * 1000 + epoch)
    np.random.seed(cfg.seed * 1000 + epoch)
    r.gen.manual_seed(cfg.seed * 1000 + epoch * r.ctx.world + r.ctx.rank)
    index_batches = _epoch_batches(len(r.data.train), cfg, r.ctx, epoch, r.weights)
    r.net.train()
    if r.lower is not None:
        r.lower.eval()
    sums = [0.0] * 7  # loss*n, correct, gender count, abs err, age count, samples, index checksum
    grid = torch.arange(r.prep.age_min, r.prep.age_max + 1, device=device).float()
    r.train_in.wait = 0.0
    bar = tqdm(total=len(index_batches), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
               disable=not progress, leave=False, mininterval=1.0)
    for it, (idx, x, ab, gb) in enumerate(r.train_in.batches(index_batches, epoch)):
        loss, g, a = _step(r, idx, x, ab, gb, cfg.lr * r.sched.factor(epoch * r.steps + it))
        kg, ka = gb >= 0, ~torch.isnan(ab)
        pa = torch.softmax(a.float(), 1) @ grid
        sums[0] += float(loss) * len(idx)
        sums[1] += float(((g.float().argmax(1) == gb) & kg).sum())
        sums[2] += float(kg.sum())
        sums[3] += float((pa - ab).abs()[ka].sum())
        sums[4] += float(ka.sum())
        sums[5] += len(idx)
        sums[6] += index_checksum(idx)
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss):.3f}")
    bar.close()
    return all_sum(r.ctx, sums), r.train_in.wait


def _eval_forward(r: _Run) -> tuple[torch.nn.Module, Forward]:
    """(the module whose weights are saved, the forward validation runs): the EMA copy when there is one."""
    model = r.ema.module if r.ema is not None else r.net
    if r.cfg.cache_views:
        return model, split_net(model, r.cfg.freeze)[1]
    return model, model


def _history_row(r: _Run, epoch: int, sums: list[float], wait: float, val: dict[str, float], t0: float,
                 train_seconds: float) -> dict[str, Any]:
    row = {
        "epoch": epoch + 1,
        "lr": round(r.cfg.lr * r.sched.factor((epoch + 1) * r.steps - 1), 8),
        "train_loss": sums[0] / max(1.0, sums[5]),
        "train_gender_acc": sums[1] / max(1.0, sums[2]),
        "train_age_mae": sums[3] / max(1.0, sums[4]),
        "val_loss": val["loss"],
        "val_gender_acc": val["gender_acc"],
        "val_age_mae": val["age_mae"],
        "val_cs5": val["cs5"],
    }
    row |= {f"val_{k}": v for k, v in val.items() if "@" in k or k == "age_bias"}
    return row | {
        "samples": int(sums[5]),
        "data_checksum": sums[6],
        "images_per_second": round(sums[5] / max(train_seconds, 1e-9), 1),
        "data_wait_share": round(all_max(r.ctx, wait) / max(train_seconds, 1e-9), 3),
        "seconds": round(time.time() - t0, 1),
    }


def _restore(r: _Run, out: Path, log) -> tuple[int, float, list[dict[str, Any]]]:
    ck = torch.load(out / "checkpoint.pt", map_location=r.ctx.device, weights_only=True)
    r.net.load_state_dict(ck["model"])
    r.opt.load_state_dict(ck["optimizer"])
    if r.ema is not None and "ema" in ck:
        r.ema.load_state_dict(ck["ema"])
    start = int(ck["epoch"])
    log(f"resuming {out} at epoch {start + 1}/{r.cfg.epochs}")
    return start, float(ck["best_mae"]), json.loads((out / "history.json").read_text())[:start]


def _fit_time_budget(r: _Run, per_epoch: float, args_path: Path, log) -> None:
    fit = max(2, int(r.cfg.time_budget / max(per_epoch, 1e-3)))
    if fit < r.cfg.epochs:
        log(f"time budget {r.cfg.time_budget:.0f}s: {per_epoch:.1f}s per epoch, training {fit} epochs")
        r.cfg.epochs = fit
        r.sched = _Schedule(r.cfg, r.steps)
        if r.ctx.is_main:
            atomic_write_json(args_path, asdict(r.cfg))


def _log_epoch(log, r: _Run, epoch: int, row: dict[str, Any], val: dict[str, float]) -> None:
    per_source = "".join(f"  {s} {val[f'age_mae@{s}']:.2f}/{val[f'gender_acc@{s}']:.3f}" for s in r.data.sources
                         if f"age_mae@{s}" in val)
    log(f"epoch {epoch + 1}/{r.cfg.epochs}  loss {row['train_loss']:.3f}  train MAE {row['train_age_mae']:.2f}  "
        f"val MAE {val['age_mae']:.2f}  val gender {val['gender_acc']:.3f}  CS@5 {val['cs5']:.3f}{per_source}  "
        f"({row['seconds']}s, {row['images_per_second']:.0f} img/s, data wait {100 * row['data_wait_share']:.0f}%)")


def _train(cfg: TrainConfig, resume: bool, progress: bool, log, ctx: DistContext,
           extend_to: int | None = None) -> list[dict[str, Any]]:
    out = Path(cfg.out)
    args_path = out / "args.json"
    cfg = _resolve(cfg, resume, ctx, extend_to)
    barrier(ctx)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args_path, asdict(cfg))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    r = _build(cfg, resume, progress, log, ctx)
    start_epoch, best_mae, history = _restore(r, out, log) if resume else (0, float("inf"), [])
    t_start = time.time()
    epoch = start_epoch
    while epoch < r.cfg.epochs:
        t0 = time.time()
        sums, wait = _train_epoch(r, epoch, progress)
        train_seconds = time.time() - t0
        eval_model, eval_forward = _eval_forward(r)
        eval_model.eval()
        val = evaluate_split(eval_forward, r.val_in, r.prep, ctx, r.data.val_source, r.data.sources,
                             sigma=r.cfg.sigma)
        row = _history_row(r, epoch, sums, wait, val, t0, train_seconds)
        history.append(row)
        if r.cfg.time_budget > 0 and epoch == start_epoch == 0:
            _fit_time_budget(r, all_max(ctx, time.time() - t_start), args_path, log)
        if ctx.is_main:
            best_mae = save_epoch(out, r.cfg, r.prep, r.data.meta, val, eval_model, r.net, r.opt, r.ema, epoch,
                                  best_mae, history)
        best_mae = min(best_mae, val["age_mae"])
        barrier(ctx)
        _log_epoch(log, r, epoch, row, val)
        epoch += 1
    return history


__all__ = ["TrainConfig", "evaluate_split", "train"]
