"""Pure numpy decoders from network outputs to ages and genders (no framework needed).

Age is read as the expected value of the age softmax (DEX); gender as P(female). `median_age` is the
distribution's median, a readout measured against the expected value (scripts/readout_probe.py), not yet used
by any built-in model.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along `axis`."""
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def expected_age(age_probs: np.ndarray, age_min: int = 0) -> np.ndarray:
    """(N, K) class probabilities over ages age_min..age_min+K-1 -> (N,) expected age in years."""
    ages = np.arange(age_min, age_min + age_probs.shape[1], dtype=np.float64)
    return (age_probs.astype(np.float64) @ ages).astype(np.float32)


def median_age(age_probs: np.ndarray, age_min: int = 0) -> np.ndarray:
    """(N, K) class probabilities over ages age_min..age_min+K-1 -> (N,) median age in years.

    Class k stands for the year-wide interval [age_min + k - 0.5, age_min + k + 0.5); the median is interpolated
    linearly inside the class where the cumulative probability reaches 0.5, so it moves smoothly with the
    probabilities. Rows need not sum exactly to 1 (each is normalised first).
    """
    p = age_probs.astype(np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    cdf = np.cumsum(p, axis=1)
    k = np.minimum((cdf < 0.5).sum(axis=1), p.shape[1] - 1)  # first class whose cumulative probability >= 0.5
    rows = np.arange(len(p))
    below = cdf[rows, k] - p[rows, k]
    inside = np.divide(0.5 - below, p[rows, k], out=np.full(len(p), 0.5), where=p[rows, k] > 0)
    return (age_min + k - 0.5 + np.clip(inside, 0.0, 1.0)).astype(np.float32)


def female_probability(gender_probs: np.ndarray, female_index: int = 1) -> np.ndarray:
    """(N, 2) gender probabilities -> (N,) P(female), whichever output index means female."""
    return gender_probs[:, female_index].astype(np.float32)
