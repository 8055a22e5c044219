"""Pure numpy decoders from network outputs to ages and genders (no framework needed).

Age is read as the expected value of the age softmax (DEX); gender as P(female).
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


def female_probability(gender_probs: np.ndarray, female_index: int = 1) -> np.ndarray:
    """(N, 2) gender probabilities -> (N,) P(female), whichever output index means female."""
    return gender_probs[:, female_index].astype(np.float32)
