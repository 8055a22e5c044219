"""The summary of a prepared dataset (as the original's dataset notebook gave): counts, age histogram
and gender balance per split, as text and as a PNG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..extras import MissingExtra, require
from ..fileio import atomic_write_text
from .dataset import PreparedDataset

AGE_BINS = [0, 10, 20, 30, 40, 50, 60, 70, 80, 200]


def summary_lines(root: str | os.PathLike[str]) -> list[str]:
    """Per split: count, gender balance, age mean/median and counts per decade."""
    lines = []
    full = PreparedDataset(root)
    splits = [s for s in ("train", "val", "test") if s in set(full.column("split"))] or [None]
    labels = [f"{a}-{b - 1}" if b < 200 else f"{a}+" for a, b in zip(AGE_BINS[:-1], AGE_BINS[1:])]
    for split in splits:
        ds = PreparedDataset(root, split) if split else full
        ages, genders = ds.ages, ds.genders
        known = ages[~np.isnan(ages)]
        n_f, n_m = int((genders == 1).sum()), int((genders == 0).sum())
        lines.append(f"{split or 'all'}: {len(ds)} faces; male {n_m}, female {n_f}, unknown gender "
                     f"{len(ds) - n_m - n_f}; age mean {known.mean():.1f}, median {np.median(known):.0f}"
                     if known.size else f"{split or 'all'}: {len(ds)} faces")
        hist, _ = np.histogram(known, bins=AGE_BINS)
        lines.append("  ages " + "  ".join(f"{lab}: {c}" for lab, c in zip(labels, hist)))
    return lines


def plot_summary(root: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Age histograms (by gender) per split in one PNG."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = PreparedDataset(root)
    splits = [s for s in ("train", "val", "test") if s in set(full.column("split"))] or [None]
    fig, axes = plt.subplots(1, len(splits), figsize=(5 * len(splits), 3.6), squeeze=False)
    for ax, split in zip(axes[0], splits):
        ds = PreparedDataset(root, split) if split else full
        bins = np.arange(0, 102, 2)
        for g, name, color in ((0, "male", "#4287f5"), (1, "female", "#eb408c")):
            a = ds.ages[(ds.genders == g) & ~np.isnan(ds.ages)]
            ax.hist(np.clip(a, 0, 100), bins=bins, alpha=0.6, label=f"{name} ({len(a)})", color=color)
        ax.set_title(f"{split or 'all'}: {len(ds)} faces")
        ax.set_xlabel("age (years)")
        ax.set_ylabel("faces")
        ax.legend()
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_summary(root: str | os.PathLike[str]) -> list[str]:
    """Write summary.txt and summary.png into the dataset folder; returns the text lines."""
    lines = summary_lines(root)
    atomic_write_text(Path(root) / "summary.txt", "\n".join(lines) + "\n")
    try:
        plot_summary(root, Path(root) / "summary.png")
        lines.append(f"summary plot: {Path(root) / 'summary.png'}")
    except MissingExtra as exc:
        lines.append(f"(summary.png skipped: {exc})")
    return lines
