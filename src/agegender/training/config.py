"""TrainConfig: every option of a training run (written to the run folder's args.json, read back by --resume)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from .augment import AugmentConfig
from .camera import CameraAugment


@dataclass
class TrainConfig:
    data: list[str]  # prepared dataset folders, prepared alike (crop mode, margin, size)
    out: str
    arch: str = "resnet"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    image_size: int = 96
    margin: float = -1.0  # <0: the stored crops' margin; else a narrower one, cut from their centre
    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    schedule: str = "cosine"  # cosine | step | constant
    sigma: float = 2.0
    l1_weight: float = 0.05
    gender_weight: float = 1.0  # weight of the gender loss against the age loss
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    camera: CameraAugment | None = None  # camera-like augmentations (JPEG, blur, lighting, ...); None = off
    balance: float = 0.0  # 0 = plain shuffling; 0.5 = sample ages with weight freq^-0.5 (within each source)
    balance_sources: bool = False  # draw every dataset of `data` with the same total weight
    train_split: str = "train"
    val_split: str = "val"
    val_fraction: float = 0.0  # >0: carve validation out of the training split instead
    limit: int = 0  # use at most this many training samples per dataset (smoke tests)
    ema: float = 0.0  # exponential moving average decay of the weights (0 = off)
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    threads: int = 0
    time_budget: float = 0.0  # >0: after epoch 1, cut the epoch count to fit this many seconds
    init: str = ""  # start from this trained model's weights (same architecture); "" = random
    teacher: str = ""  # model to distil from (built-in name or weights file); "" = labels only
    distill: float = 0.5  # weight of the teacher's targets against the labels
    distill_gender: float | None = None  # the gender targets' own weight; None = distill
    gender_teacher: str = ""  # the gender targets' teacher (built-in name or weights file); "" = teacher
    teacher_temperature: float = 1.0  # <1: the teacher's age distributions sharpened (p ** (1/T), renormalised)
    distill_by_age: str = ""  # "AGE:W[,AGE:W]": from each labelled age upward the age targets' teacher weight
    anchor: float = 0.0  # >0: L2 pull of the trained weights towards --init's (L2-SP), this strength
    freeze: int = 0  # >0: keep the backbone's first `freeze` layers as --init gave them
    cache_views: int = 0  # >0 (with freeze): train on the frozen layers' cached output for this many views

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        if isinstance(d.get("data"), str):  # args.json of runs made before several datasets were allowed
            d["data"] = [d["data"]]
        if isinstance(d.get("augment"), dict):
            d["augment"] = AugmentConfig(**d["augment"])
        if isinstance(d.get("camera"), dict):
            d["camera"] = CameraAugment.from_dict(d["camera"])
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
