"""An output ensemble of fine-tunes that share their lower layers, as one network (`arch: "ensemble"`).

Members are AgeGenderNets of one base architecture. Runs of `train --freeze K --init X` keep X's first K
layers as they were, so every such run computes the same thing there: the ensemble runs those `shared`
layers once and each member's upper layers and heads on their output, then averages the members'
probabilities. It costs the shared part once and the upper part once per member, where a weight average
of the members (a soup) costs one network but, for runs this alike, lands between them rather than below.

The outputs are logits of the averaged distributions, log(mean_i softmax(z_i)), so that the softmax every
consumer applies (DecodedNet, the ONNX graph) gives exactly the members' mean probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .nets import AgeGenderNet, build_model, register_backbone


def mean_probability_logits(logits: list[torch.Tensor]) -> torch.Tensor:
    """M tensors of (N, C) logits -> (N, C) logits whose softmax is the mean of the M softmaxes."""
    logp = torch.stack([F.log_softmax(z.float(), dim=1) for z in logits])
    return torch.logsumexp(logp, dim=0) - math.log(len(logits))


class SharedTrunkEnsemble(nn.Module):
    """(N, 3, S, S) -> (gender logits (N, 2), age logits (N, num_ages)) of the members' mean probabilities.

    members: AgeGenderNets of one architecture (state keys `members.{i}.…`); shared: how many of their
    backbone's layers run once, from member 0 (their backbone must have `split`, e.g. mobilenet_v1); 0 runs
    every member whole. Members' copies of the shared layers are kept in the file (so each member stays a
    complete network) but not computed.
    """

    def __init__(self, members: list[AgeGenderNet], shared: int = 0) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if any(m.age_regression for m in members):
            raise ValueError("an ensemble averages age distributions: members must have an age softmax")
        if shared and not all(hasattr(m.backbone, "split") for m in members):
            raise ValueError(f"shared={shared}: the members' backbone cannot be split")
        self.members = nn.ModuleList(members)
        self.shared = shared
        self.num_ages = members[0].num_ages
        self.age_regression = False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.shared:
            lower, upper = self.split(self.shared)
            return upper(lower(x))
        outs = [m(x) for m in self.members]
        return mean_probability_logits([g for g, _ in outs]), mean_probability_logits([a for _, a in outs])

    def split(self, k: int) -> tuple[nn.Module, Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]]:
        """(lower, upper_forward) with upper_forward(lower(x)) == self(x): lower = member 0's first k layers
        (k <= shared: layers every member holds alike), upper_forward = each member's rest, averaged. What
        `train --freeze K` needs to fine-tune an ensemble on cached features."""
        if not 1 <= k <= self.shared:
            raise ValueError(f"ensemble: split point {k} outside the shared layers 1..{self.shared}")
        lower = self.members[0].split(k)[0]
        uppers = [m.split(k)[1] for m in self.members]

        def upper_forward(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            outs = [up(h) for up in uppers]
            return mean_probability_logits([g for g, _ in outs]), mean_probability_logits([a for _, a in outs])

        return lower, upper_forward

    def member(self, i: int, cfg: ModelConfig) -> tuple[AgeGenderNet, ModelConfig]:
        """Member i on its own, with its record: the ensemble's `cfg` with the base architecture."""
        kw = cfg.arch_kwargs
        return self.members[i], replace(cfg, arch=kw["base"], arch_kwargs=dict(kw.get("base_kwargs") or {}))


@register_backbone("ensemble")
def _ensemble(num_ages: int = 100, base: str = "mobilenet_v1", base_kwargs: dict[str, Any] | None = None,
              members: int = 2, shared: int = 0) -> SharedTrunkEnsemble:
    """`members` networks built as `base` with `base_kwargs`, the first `shared` layers computed once."""
    if base == "ensemble":
        raise ValueError("an ensemble's members cannot be ensembles")
    nets = [build_model(base, num_ages=num_ages, **(base_kwargs or {})) for _ in range(int(members))]
    return SharedTrunkEnsemble(nets, int(shared))
