"""What a training run writes into its folder: history, best/last weights with their record, checkpoint."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..fileio import atomic_write_json, atomic_write_text
from ..models.config import ModelConfig
from ..models.nets import build_model
from ..models.torch_weights import save_model
from ..types import Preprocessing
from .config import TrainConfig


def write_history(out: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_json(out / "history.json", history)
    if history:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(history[0].keys()), lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        w.writerows(history)
        atomic_write_text(out / "history.csv", buf.getvalue())


def model_config(cfg: TrainConfig, prep: Preprocessing, metas: list[dict[str, Any]], metrics: dict[str, Any]
                 ) -> ModelConfig:
    card = {
        "trained_on": [m.get("source", {}) for m in metas] if len(metas) > 1 else metas[0].get("source", {}),
        "dataset": [str(d) for d in cfg.data] if len(cfg.data) > 1 else str(cfg.data[0]),
        "train_split": cfg.train_split,
        "val": f"fraction {cfg.val_fraction}" if cfg.val_fraction else cfg.val_split,
        "recipe": {k: v for k, v in asdict(cfg).items() if k not in ("data", "out", "device", "workers", "threads")},
        "val_metrics": metrics,
    }
    return ModelConfig(arch=cfg.arch, preprocessing=prep, arch_kwargs=dict(cfg.arch_kwargs), card=card)


def save_epoch(out: Path, cfg: TrainConfig, prep: Preprocessing, metas: list[dict[str, Any]], val: dict[str, float],
               eval_model: torch.nn.Module, net: torch.nn.Module, opt: torch.optim.Optimizer, ema: Any, epoch: int,
               best_mae: float, history: list[dict[str, Any]]) -> float:
    """Write best/last weights, the resumable checkpoint and the history (atomically); returns best MAE."""
    mcfg = model_config(cfg, prep, metas, {k: round(v, 4) for k, v in val.items()} | {"epoch": epoch + 1})
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
    write_history(out, history)
    tmp = out / ".checkpoint.pt.tmp"
    torch.save(ck, tmp)
    os.replace(tmp, out / "checkpoint.pt")
    return best_mae
