"""Weight-space ensembles of a fine-tuned model and its starting point (WiSE-FT, Wortsman et al., CVPR 2022).

theta = (1 - alpha) * theta_init + alpha * theta_finetuned: alpha 1 is the fine-tuned model, 0 the start.
Between them, a model keeps much of what fine-tuning taught on its data and much of the starting point's
robustness on photos unlike that data, at no cost at inference (one network, the same size).

`soup` averages two such fine-tunes (a model soup, Wortsman et al., ICML 2022): runs that started from the
same weights and kept the same frozen layers sit in one basin, so their average behaves like the ensemble
of the two at the cost of one network.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ..models.config import ModelConfig
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
    return tuned.eval(), replace(cfg, card=card)


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
    return model.eval(), replace(cfg, card=card)
