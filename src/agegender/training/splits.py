"""What a training run learns from: the training and validation samples of one or more prepared datasets,
which dataset each sample comes from, and the preprocessing record the trained model will carry.

Several datasets (e.g. UTKFace and All-Age-Faces, prepared alike) are concatenated; `sample_weights` can then
draw them so that neither source nor any age band dominates, and validation is reported per source.
A model may use a narrower margin than the stored crops (their centre is cut out; the record's crop_size
says at what size, so inference cuts its faces the same way).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..align import margin_cut
from ..data.dataset import PreparedDataset
from ..data.prepare import assign_split
from ..types import Preprocessing
from .batches import CropSource


@dataclass
class TrainData:
    """train, val: labelled crops (stored size); train_source, val_source: (N,) index into `sources`;
    data_prep: how the stored crops were cut; prep: the model's record; cut: side of the centre region of a
    stored crop that the model sees (== the stored size unless the margin is narrower)."""

    train: CropSource
    val: CropSource
    train_source: np.ndarray
    val_source: np.ndarray
    sources: list[str]
    data_prep: Preprocessing
    prep: Preprocessing
    cut: int
    meta: list[dict[str, Any]]


def _split_indices(ds: PreparedDataset, val_ds: PreparedDataset | None, cfg: Any) -> tuple[np.ndarray, np.ndarray]:
    if val_ds is not None:
        return np.arange(len(ds)), np.arange(len(val_ds))
    is_val = np.array([assign_split(r["file"], (1 - cfg.val_fraction, cfg.val_fraction, 0.0), cfg.seed) == "val"
                       for r in ds.rows], bool)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def student_preprocessing(data_prep: Preprocessing, image_size: int, margin: float | None) -> tuple[Preprocessing, int]:
    """(the model's record, the centre cut of a stored crop in pixels) for a model at `image_size` with
    `margin` (None: the stored crops' own). A margin wider than the stored one cannot be cut."""
    m = data_prep.margin if margin is None else float(margin)
    cut = margin_cut(data_prep, m)
    prep = Preprocessing(crop=data_prep.crop, margin=m, size=image_size, detector=data_prep.detector,
                         crop_size=cut if cut != image_size else 0)
    return prep, cut


def load_train_data(cfg: Any) -> TrainData:  # cfg: TrainConfig
    """Training and validation samples of every dataset in cfg.data (labels now, images on demand)."""
    parts: list[tuple[CropSource, CropSource]] = []
    tr_src, va_src, metas = [], [], []
    data_prep: Preprocessing | None = None
    rng = np.random.default_rng(cfg.seed)
    for k, root in enumerate(cfg.data):
        ds = PreparedDataset(root, cfg.train_split)
        val_ds = None if cfg.val_fraction > 0 else PreparedDataset(root, cfg.val_split)
        p = ds.preprocessing
        if data_prep is not None and (not p.same_cut(data_prep) or p.size != data_prep.size):
            raise ValueError(f"{root}: crops are {p.crop}/margin {p.margin}/{p.size}px, unlike {cfg.data[0]} "
                             f"({data_prep.crop}/margin {data_prep.margin}/{data_prep.size}px): prepare them alike")
        data_prep = p
        idx_tr, idx_va = _split_indices(ds, val_ds, cfg)
        if cfg.limit:
            idx_tr = np.sort(rng.permutation(idx_tr)[: cfg.limit])
            idx_va = np.sort(rng.permutation(idx_va)[: max(cfg.limit // 4, 8)])
        if len(idx_va) == 0:
            raise ValueError(f"{root}: no validation samples (split {cfg.val_split!r}); use --val-fraction")
        if len(idx_tr) == 0:
            raise ValueError(f"{root}: no training samples in split {cfg.train_split!r}")
        parts.append((_source(ds, idx_tr), _source(val_ds or ds, idx_va)))
        tr_src.append(np.full(len(idx_tr), k))
        va_src.append(np.full(len(idx_va), k))
        metas.append(ds.meta)
    assert data_prep is not None
    prep, cut = student_preprocessing(data_prep, cfg.image_size, None if cfg.margin < 0 else cfg.margin)
    return TrainData(_concat([a for a, _ in parts]), _concat([b for _, b in parts]), np.concatenate(tr_src),
                     np.concatenate(va_src), [Path(d).name for d in cfg.data], data_prep, prep, cut, metas)


def _source(ds: PreparedDataset, idx: np.ndarray) -> CropSource:
    return CropSource([ds.path(int(i)) for i in idx], ds.ages[idx], ds.genders[idx], ds.preprocessing.size)


def _concat(sources: list[CropSource]) -> CropSource:
    if len(sources) == 1:
        return sources[0]
    return CropSource([p for s in sources for p in s.paths], np.concatenate([s.ages.numpy() for s in sources]),
                      np.concatenate([s.genders.numpy() for s in sources]), sources[0].size)


def sample_weights(ages: torch.Tensor, sources: np.ndarray, power: float, balance_sources: bool) -> torch.Tensor | None:
    """Per-sample drawing weights: within each source, age (per year) frequency ** -power; with
    balance_sources, each source then carries the same total weight. None when both are off."""
    if power <= 0 and not balance_sources:
        return None
    a = torch.nan_to_num(ages, nan=30).clamp(0, 100).long()
    src = torch.from_numpy(np.asarray(sources, np.int64))
    w = torch.ones(len(a))
    for s in torch.unique(src):
        m = src == s
        if power > 0:
            counts = torch.bincount(a[m], minlength=101).float().clamp_min(1)
            w[m] = counts[a[m]] ** (-power)
        if balance_sources:
            w[m] = w[m] / w[m].sum()
    return w
