"""Training losses for the two heads: gender cross-entropy and age label-distribution learning.

Age targets are Gaussians around the true age (sigma in years) over the age classes; the loss is the
KL divergence to the predicted softmax plus an L1 term on its expected value (as in DLDL-v2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_age_targets(ages: torch.Tensor, num_ages: int, age_min: int = 0, sigma: float = 2.0) -> torch.Tensor:
    """(B,) ages in years -> (B, num_ages) probability rows (ages clipped into the class range)."""
    a = ages.clamp(age_min, age_min + num_ages - 1).unsqueeze(1)
    grid = torch.arange(age_min, age_min + num_ages, device=ages.device, dtype=torch.float32).unsqueeze(0)
    w = torch.exp(-0.5 * ((grid - a) / sigma) ** 2)
    return w / w.sum(1, keepdim=True)


def age_gender_loss(
    gender_logits: torch.Tensor,
    age_logits: torch.Tensor,
    gender_targets: torch.Tensor,
    age_dist: torch.Tensor,
    age_values: torch.Tensor,
    age_min: int = 0,
    l1_weight: float = 0.05,
    gender_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """gender_targets: (B, 2) probabilities (rows of zeros for unknown gender); age_dist: (B, K) targets
    (zero rows for unknown age); age_values: (B,) target expectations in years. Returns (gender_weight x
    gender loss + age loss, the unweighted parts)."""
    g_known = gender_targets.sum(1) > 0
    a_known = age_dist.sum(1) > 0
    zero = gender_logits.new_zeros(())
    logp_g = F.log_softmax(gender_logits.float(), 1)
    g_loss = -(gender_targets * logp_g).sum(1)[g_known].mean() if g_known.any() else zero
    logp_a = F.log_softmax(age_logits.float(), 1)
    kl = (age_dist * (torch.log(age_dist.clamp_min(1e-12)) - logp_a)).sum(1)
    grid = torch.arange(age_min, age_min + age_logits.shape[1], device=age_logits.device, dtype=torch.float32)
    expect = logp_a.exp() @ grid
    l1 = (expect - age_values).abs()
    a_loss = (kl + l1_weight * l1)[a_known].mean() if a_known.any() else zero
    return gender_weight * g_loss + a_loss, {"gender": g_loss.detach(), "age": a_loss.detach()}
