"""PNG plots: training curves, predicted vs true age, error by age."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..extras import require


def _plt():
    """matplotlib.pyplot on the Agg backend; MissingExtra (an ImportError) naming the 'plots' extra."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(run: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Loss, gender accuracy and age MAE per epoch (train and validation) side by side."""
    run = Path(run)
    hist_path = run / "history.json" if run.is_dir() else run
    if not hist_path.is_file():
        raise FileNotFoundError(f"{hist_path}: no training history (run 'agegender train' first)")
    history: list[dict[str, Any]] = json.loads(hist_path.read_text())
    if not history:
        raise ValueError(f"{hist_path}: history is empty")
    plt = _plt()
    ep = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = (("loss", "loss", False), ("gender_acc", "gender accuracy", True), ("age_mae", "age MAE (years)", False))
    for ax, (key, title, higher_better) in zip(axes, panels):
        tr = [h[f"train_{key}"] for h in history]
        va = [h[f"val_{key}"] for h in history]
        ax.plot(ep, tr, label="train", color="#888888")
        ax.plot(ep, va, label="validation", color="#d62728")
        best = int(np.nanargmax(va) if higher_better else np.nanargmin(va))
        ax.scatter([ep[best]], [va[best]], color="#d62728", zorder=3)
        ax.annotate(f"{va[best]:.3f}" if higher_better else f"{va[best]:.2f}", (ep[best], va[best]),
                    textcoords="offset points", xytext=(4, 6))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"training history: {run.name if run.is_dir() else run.parent.name}")
    fig.tight_layout()
    out_path = Path(out) if out else (run if run.is_dir() else run.parent) / "history.png"
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def plot_predicted_vs_true(pred: np.ndarray, true: np.ndarray, out: str | os.PathLike[str], title: str = "") -> Path:
    plt = _plt()
    ok = ~np.isnan(pred) & ~np.isnan(true)
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.scatter(true[ok], pred[ok], s=4, alpha=0.35)
    hi = max(100.0, float(np.nanmax(true)) if ok.any() else 100.0)
    ax.plot([0, hi], [0, hi], color="k", lw=1)
    ax.set_xlabel("true age")
    ax.set_ylabel("predicted age")
    ax.set_title(title or "predicted vs true age")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def plot_error_by_group(groups: dict[str, dict[str, Any]], out: str | os.PathLike[str], title: str = "") -> Path:
    """Bars of age MAE per group, with gender accuracy written over each bar."""
    plt = _plt()
    names = list(groups)
    maes = [groups[n]["age_mae"] for n in names]
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(names) + 2), 4))
    bars = ax.bar(names, maes, color="#4c72b0")
    for b, n in zip(bars, names):
        g = groups[n].get("gender_acc")
        label = f"n={groups[n]['n']}" + (f"\n{100 * g:.0f}% g" if g == g and g is not None else "")
        ax.annotate(label, (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("age MAE (years)")
    ax.set_title(title or "age error by group")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def plot_reliability(rows: list[dict[str, Any]], out: str | os.PathLike[str], title: str = "") -> Path:
    """Reliability diagram of the gender probability: per confidence bin (`metrics.gender_calibration`'s
    rows), how often the gender given was right against the stated probability, dots sized by faces."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0.5, 1.0], [0.5, 1.0], color="k", lw=1, label="calibrated")
    conf = [r["confidence"] for r in rows]
    acc = [r["accuracy"] for r in rows]
    n = np.array([r["n"] for r in rows], np.float64)
    ax.plot(conf, acc, color="#4c72b0", lw=1)
    ax.scatter(conf, acc, s=20 + 200 * n / max(n.max(), 1.0) if len(n) else 20, color="#4c72b0", zorder=3,
               label="faces per bin")
    for c, a, k in zip(conf, acc, n):
        ax.annotate(f"{k:.0f}", (c, a), textcoords="offset points", xytext=(6, -10), fontsize=8)
    ax.set_xlabel("stated probability of the gender given")
    ax.set_ylabel("share right")
    ax.set_xlim(0.48, 1.01)
    ax.set_ylim(0.0, 1.02)
    ax.set_title(title or "gender probability calibration")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)
