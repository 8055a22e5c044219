"""How far a measured number can be trusted: bootstrap intervals over faces, and paired differences of two
models measured on the same faces.

Every function takes per-face losses (absolute age errors in years, or 0/1 gender mistakes) and resamples
the faces with replacement. The intervals cover the noise of *which faces were measured* (40 portraits move
an MAE by half a year); they do not cover the noise of training (two seeds of one recipe differ as well).
Pure numpy and seeded: the same input gives the same interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: resamples per interval; 2,000 put the 2.5% and 97.5% percentiles within a few hundredths of a year here
N_BOOT = 2000


@dataclass(frozen=True)
class Difference:
    """B's mean loss minus A's on the same faces (negative: B is better), its percentile interval and the
    share of resamples in which B was better. `samples`: the bootstrap differences, shape (n_boot,)."""

    diff: float
    low: float
    high: float
    p_b_better: float
    n: int
    samples: np.ndarray

    @property
    def clear(self) -> bool:
        """True when the interval leaves out zero: one model is better on these faces beyond their sampling."""
        return self.low > 0 or self.high < 0


def resample_indices(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """(n_boot, n) indices of n faces drawn with replacement."""
    if n < 1:
        raise ValueError("need at least one face to resample")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def interval(loss: np.ndarray, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `loss` (shape (N,), NaN entries left out)."""
    loss = np.asarray(loss, np.float64)
    loss = loss[~np.isnan(loss)]
    means = loss[resample_indices(len(loss), n_boot, seed)].mean(axis=1)
    return _percentiles(means, level)


def paired_difference(loss_a: np.ndarray, loss_b: np.ndarray, level: float = 0.95, n_boot: int = N_BOOT,
                      seed: int = 0) -> Difference:
    """mean(loss_b) - mean(loss_a) over the faces both have a loss for (shapes (N,), NaN: no face found),
    resampling faces jointly so that what both models find hard cancels out."""
    a, b = np.asarray(loss_a, np.float64), np.asarray(loss_b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired losses need one entry per face for both models, got {a.shape} and {b.shape}")
    ok = ~np.isnan(a) & ~np.isnan(b)
    d = b[ok] - a[ok]
    samples = d[resample_indices(len(d), n_boot, seed)].mean(axis=1)
    low, high = _percentiles(samples, level)
    return Difference(float(d.mean()), low, high, float((samples < 0).mean()), int(ok.sum()), samples)


def mean_of_differences(parts: list[Difference], level: float = 0.95) -> Difference:
    """The difference of a mean over several sets (e.g. the mean age MAE of UTKFace val, AAF val and FRL):
    each set resampled on its own, the resamples averaged set by set."""
    if not parts or len({len(p.samples) for p in parts}) != 1:
        raise ValueError("need differences with the same number of resamples")
    samples = np.mean([p.samples for p in parts], axis=0)
    low, high = _percentiles(samples, level)
    return Difference(float(np.mean([p.diff for p in parts])), low, high, float((samples < 0).mean()),
                      sum(p.n for p in parts), samples)


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must be within (0, 1), got {level}")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)
