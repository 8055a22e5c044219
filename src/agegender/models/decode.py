"""Pure numpy decoders from network outputs to ages and genders (no framework needed).

Age is read as the expected value of the age softmax (DEX); gender as P(female). `median_age` is the
distribution's median, a readout measured against the expected value (scripts/readout_probe.py), not yet used
by any built-in model. `age_range` is the central interval of the (tempered) distribution that a model's
record calibrates to hold the true age at a stated rate.
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
    """(N, K) class probabilities over ages age_min..age_min+K-1 -> (N,) median age in years (`age_quantile`
    at 0.5)."""
    return age_quantile(age_probs, 0.5, age_min)


def age_quantile(age_probs: np.ndarray, q: float, age_min: int = 0) -> np.ndarray:
    """(N, K) class probabilities over ages age_min..age_min+K-1 -> (N,) the q-quantile (0 < q < 1) in years.

    Class k stands for the year-wide interval [age_min + k - 0.5, age_min + k + 0.5); the quantile is
    interpolated linearly inside the class where the cumulative probability reaches q, so it moves smoothly
    with the probabilities. Rows need not sum exactly to 1 (each is normalised first).
    """
    p = age_probs.astype(np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    cdf = np.cumsum(p, axis=1)
    k = np.minimum((cdf < q).sum(axis=1), p.shape[1] - 1)  # first class whose cumulative probability >= q
    rows = np.arange(len(p))
    below = cdf[rows, k] - p[rows, k]
    inside = np.divide(q - below, p[rows, k], out=np.full(len(p), 0.5), where=p[rows, k] > 0)
    return (age_min + k - 0.5 + np.clip(inside, 0.0, 1.0)).astype(np.float32)


def age_range(age_probs: np.ndarray, level: float, temperature: float = 1.0,
              age_min: int = 0) -> np.ndarray:
    """(N, K) class probabilities -> (N, 2) the central `level` interval of the age distribution in years:
    its (1 - level) / 2 and (1 + level) / 2 quantiles, after the distribution is tempered (each probability
    raised to 1 / temperature and the row normalised again; temperature < 1 narrows it). A model's record
    names the level and the temperature that make the interval hold the true age that often on its
    validation faces (`ModelConfig.age_range`)."""
    if not 0.0 < level < 1.0 or temperature <= 0:
        raise ValueError(f"age_range needs 0 < level < 1 and temperature > 0, got {level}, {temperature}")
    logp = np.log(np.clip(age_probs.astype(np.float64), 1e-300, None)) / temperature
    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    tail = (1.0 - level) / 2
    return np.stack([age_quantile(p, tail, age_min), age_quantile(p, 1.0 - tail, age_min)], axis=1)


def female_probability(gender_probs: np.ndarray, female_index: int = 1) -> np.ndarray:
    """(N, 2) gender probabilities -> (N,) P(female), whichever output index means female."""
    return gender_probs[:, female_index].astype(np.float32)
