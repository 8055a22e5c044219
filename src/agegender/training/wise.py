"""Weight-space ensembles of a fine-tuned model and its starting point (WiSE-FT, Wortsman et al., CVPR 2022).

theta = (1 - alpha) * theta_init + alpha * theta_finetuned: alpha 1 is the fine-tuned model, 0 the start.
Between them, a model keeps much of what fine-tuning taught on its data and much of the starting point's
robustness on photos unlike that data, at no cost at inference (one network, the same size).
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

