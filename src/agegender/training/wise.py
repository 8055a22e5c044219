"""Weight-space ensembles of a fine-tuned model and its starting point (WiSE-FT, Wortsman et al., CVPR 2022).

theta = (1 - alpha) * theta_init + alpha * theta_finetuned: alpha 1 is the fine-tuned model, 0 the start.
Between them, a model keeps much of what fine-tuning taught on its data and much of the starting point's
robustness on photos unlike that data, at no cost at inference (one network, the same size).

`soup` averages two such fine-tunes (a model soup, Wortsman et al., ICML 2022): runs that started from the
same weights and kept the same frozen layers sit in one basin, so their average behaves like the ensemble
of the two at the cost of one network.

`ensemble` keeps such fine-tunes apart instead: one network (models/ensemble.py) that runs their common
frozen layers once and averages their outputs, at the cost of their upper layers once per member.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch

from ..models.config import ModelConfig
from ..models.ensemble import SharedTrunkEnsemble
from ..models.nets import AgeGenderNet, build_model
from ..models.torch_weights import load_model
from .init_weights import load_init


def wise_interpolate(finetuned: str | os.PathLike[str], init: str, alpha: float) -> tuple[AgeGenderNet, ModelConfig]:
    """The fine-tuned model's weights moved back towards `init` (the --init it was trained from, laid out as
    the run laid it out): its record stays, with `wise_alpha` and `wise_init` added to the card."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within 0..1, got {alpha}")
    tuned, cfg = load_model(finetuned)
    start = build_model(cfg.arch, num_ages=cfg.preprocessing.num_ages, **cfg.arch_kwargs)
    load_init(start, init, cfg.arch, cfg.arch_kwargs, cfg.preprocessing)
    a, b = start.state_dict(), tuned.state_dict()
    mixed = {k: ((1 - alpha) * a[k].float() + alpha * b[k].float()) if b[k].is_floating_point() else b[k] for k in b}
    tuned.load_state_dict(mixed)
    card = dict(cfg.card, wise_alpha=alpha, wise_init=Path(init).name)
    return tuned.eval(), replace(cfg, card=card, age_range=None)  # new weights: the old calibration no longer holds


SOUP_CARD_KEYS = ("name", "recipe", "wise_alpha", "wise_init", "val_metrics")


def _input_values(cfg: ModelConfig) -> tuple:
    """What the network's input numbers mean: channel order, normalisation, the age classes."""
    p = cfg.preprocessing
    return p.color, tuple(p.mean), tuple(p.std), p.age_min, p.age_max


def soup(model: AgeGenderNet, cfg: ModelConfig, other: str | os.PathLike[str],
         weight: float) -> tuple[AgeGenderNet, ModelConfig]:
    """theta = (1 - weight) * theta_model + weight * theta_other, in place on `model`.

    other: a weights file of the same architecture, parameter shapes, channel order, normalisation and age
    classes (e.g. a built-in model, or another run's blend saved as it ships). The record stays `model`'s
    (so do its crop, margin and size), with `soup_weight` and `soup_with` added (the other file's name and,
    from its record, its recipe and WiSE blend), so the soup's provenance travels with it.
    Raises ValueError when weight is outside 0..1 or the two networks differ in architecture or input.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"soup weight must be within 0..1, got {weight}")
    partner, pcfg = load_model(other)
    a, b = model.state_dict(), partner.state_dict()
    if (pcfg.arch, pcfg.arch_kwargs, _input_values(pcfg)) != (cfg.arch, cfg.arch_kwargs, _input_values(cfg)) \
            or {k: v.shape for k, v in a.items()} != {k: v.shape for k, v in b.items()}:
        raise ValueError(f"{other}: cannot be averaged with this model: architecture or input values differ "
                         f"({pcfg.arch} {pcfg.arch_kwargs} {_input_values(pcfg)} against "
                         f"{cfg.arch} {cfg.arch_kwargs} {_input_values(cfg)})")
    model.load_state_dict({k: ((1 - weight) * a[k].float() + weight * b[k].float()) if a[k].is_floating_point()
                           else a[k] for k in a})
    with_card = {k: pcfg.card[k] for k in SOUP_CARD_KEYS if k in pcfg.card}
    card = dict(cfg.card, soup_weight=weight, soup_with={"file": Path(other).name, **with_card})
    return model.eval(), replace(cfg, card=card, age_range=None)


def ensemble(model: AgeGenderNet, cfg: ModelConfig, others: list[str | os.PathLike[str]],
             shared: int) -> tuple[SharedTrunkEnsemble, ModelConfig]:
    """`model` and the networks in the weights files `others` as one output ensemble whose first `shared`
    layers run once (`SharedTrunkEnsemble`); the record is `model`'s, with arch "ensemble" (base
    architecture and options inside) and `ensemble_with` on the card: each other file's name and, from its
    record, its recipe and blend.

    Raises ValueError when a member differs from `model` in architecture, parameter shapes or preprocessing
    (every field: they read one input), or in the values of its first `shared` layers (say, a run that froze
    fewer layers, or started elsewhere).
    """
    members, cards = [model], []
    for other in others:
        partner, pcfg = load_model(other)
        a, b = model.state_dict(), partner.state_dict()
        if (pcfg.arch, pcfg.arch_kwargs, pcfg.preprocessing) != (cfg.arch, cfg.arch_kwargs, cfg.preprocessing) \
                or {k: v.shape for k, v in a.items()} != {k: v.shape for k, v in b.items()}:
            raise ValueError(f"{other}: cannot join this model's ensemble: architecture or preprocessing differ "
                             f"({pcfg.arch} {pcfg.arch_kwargs} {pcfg.preprocessing} against "
                             f"{cfg.arch} {cfg.arch_kwargs} {cfg.preprocessing})")
        if shared and not _same_layers(model, partner, shared):
            raise ValueError(f"{other}: its first {shared} layers differ from this model's, so they cannot be shared")
        members.append(partner)
        cards.append({"file": Path(other).name, **{k: pcfg.card[k] for k in SOUP_CARD_KEYS if k in pcfg.card}})
    net = SharedTrunkEnsemble([m.float() for m in members], shared).eval()
    kwargs = {"base": cfg.arch, "base_kwargs": cfg.arch_kwargs, "members": len(members), "shared": shared}
    card = dict(cfg.card, ensemble_with=cards)
    return net, replace(cfg, arch="ensemble", arch_kwargs=kwargs, card=card, age_range=None)


def _same_layers(a: AgeGenderNet, b: AgeGenderNet, k: int) -> bool:
    """Whether the first k backbone layers of a and b hold the same values to float16's precision (as
    weights ship: a file saved in float16, or a WiSE blend of frozen layers whose float32 sum can round to
    the neighbouring float16, compares equal to the run's float32 weights)."""
    sa, sb = a.split(k)[0].state_dict(), b.split(k)[0].state_dict()
    return sa.keys() == sb.keys() and all(torch.allclose(sa[n].float(), sb[n].float(), rtol=2**-10, atol=1e-7)
                                          for n in sa)
