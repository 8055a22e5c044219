"""PyTorch networks: one backbone, two heads (gender: 2 logits; age: one logit per year).

Backbones are registered by name (like a model zoo registry) and built with keyword options:
- "resnet": a compact pre-activation-free ResNet for CPUs (widths, blocks, stem stride);
- "wrn": the original Keras project's WideResNet (depth, width k), laid out so that Keras weights load
  one-to-one: 'same' padding and average pooling reproduced exactly, NHWC flattening, BN eps 1e-3;
- "mobilenet_v1" (models/mobilenet.py) and "tiny_xception" (models/xception.py): the TF.js networks
  that `agegender import-tfjs` brings in;
- "ensemble" (models/ensemble.py): several fine-tunes of one base network that share their lower layers,
  their probabilities averaged.

This module imports torch; the rest of the package reaches it only from training, export and the torch
estimator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .tf_layers import SameConv2d

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _BACKBONES[name] = fn
        return fn

    return wrap


def _register_all() -> None:
    """Import the modules whose builders register themselves (they import this module, so lazily)."""
    from . import ensemble, mobilenet, xception  # noqa: F401


def available_backbones() -> list[str]:
    _register_all()
    return sorted(_BACKBONES)


class AgeGenderNet(nn.Module):
    """backbone(x) -> (N, F) features -> gender logits (N, 2), age output.

    Input: (N, 3, S, S) float32, normalised as the model's Preprocessing says.
    Age output: logits (N, num_ages), one per year of the record's age range (read as the softmax's
    expected value); or, with age_regression, (N, 1) years directly (a network imported as it was trained).
    """

    def __init__(self, backbone: nn.Module, num_features: int, num_ages: int = 101, dropout: float = 0.0,
                 head_bias: bool = True, age_regression: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_ages = num_ages
        self.age_regression = age_regression
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.gender_head = nn.Linear(num_features, 2, bias=head_bias)
        self.age_head = nn.Linear(num_features, 1 if age_regression else num_ages, bias=head_bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.backbone(x))

    def heads(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, F) backbone features -> gender logits, age output."""
        f = self.dropout(f)
        return self.gender_head(f), self.age_head(f)

    def split(self, k: int) -> tuple[nn.Module, Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]]:
        """(lower, upper_forward) with upper_forward(lower(x)) == self(x): lower = the backbone's first k
        layers (what `train --freeze K` freezes and caches), upper_forward = the rest and the heads.
        Raises ValueError for a backbone that cannot be split."""
        split = getattr(self.backbone, "split", None)
        if split is None:
            raise ValueError(f"this backbone ({type(self.backbone).__name__}) cannot be split")
        lower, upper = split(k)
        return lower, lambda f: self.heads(upper(f))


def regression_age_probs(age: torch.Tensor, age_min: int, num_ages: int) -> torch.Tensor:
    """(N,) ages in years -> (N, num_ages) two-hot distributions over age_min.. whose expected value is the
    age clamped to the range: p_k = max(0, 1 - |k - (age - age_min)|). The torch twin of
    `decode.regression_age_probs`."""
    t = (age - age_min).clamp(0, num_ages - 1)[:, None]
    k = torch.arange(num_ages, dtype=age.dtype, device=age.device)[None, :]
    return torch.relu(1.0 - (k - t).abs())


class DecodedNet(nn.Module):
    """Wraps an AgeGenderNet with its decoding: returns (gender_probs (N,2), age_probs (N,K), age (N,))."""

    def __init__(self, net: AgeGenderNet, age_min: int = 0) -> None:
        super().__init__()
        self.net = net
        self.age_min = age_min
        self.register_buffer("ages", torch.arange(age_min, age_min + net.num_ages, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g, a = self.net(x)
        if self.net.age_regression:
            pa = regression_age_probs(a[:, 0].float(), self.age_min, self.net.num_ages)
        else:
            pa = torch.softmax(a.float(), dim=1)
        return torch.softmax(g.float(), dim=1), pa, pa @ self.ages


def build_model(arch: str, num_ages: int = 101, **kwargs: Any) -> AgeGenderNet:
    """Build an AgeGenderNet with the named backbone; unknown names raise ValueError."""
    _register_all()
    try:
        fn = _BACKBONES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(available_backbones())}") from None
    return fn(num_ages=num_ages, **kwargs)


# ----------------------------------------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.short(x), inplace=True)


class CompactResNet(nn.Module):
    """ResNet with a 3x3 stem (stride `stem_stride`), stages of BasicBlocks, global average pooling."""

    def __init__(self, widths: list[int], blocks: list[int], stem_stride: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, widths[0], 3, stem_stride, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        ]
        cin = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w
        self.features = nn.Sequential(*layers)
        self.out_features = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))

    def split(self, k: int) -> tuple[nn.Module, nn.Module]:
        """(lower, upper) sharing this network's modules: the first k layers, and the rest with pooling."""
        if not 1 <= k < len(self.features):
            raise ValueError(f"resnet: split point {k} outside 1..{len(self.features) - 1}")
        return self.features[:k], _PooledTail(self.features[k:])


class _PooledTail(nn.Module):
    def __init__(self, layers: nn.Module) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).mean(dim=(2, 3))


@register_backbone("resnet")
def _resnet(
    num_ages: int = 101,
    widths: list[int] | None = None,
    blocks: list[int] | None = None,
    stem_stride: int = 2,
    dropout: float = 0.2,
) -> AgeGenderNet:
    body = CompactResNet(widths or [32, 64, 128, 256], blocks or [1, 2, 2, 1], stem_stride)
    return AgeGenderNet(body, body.out_features, num_ages, dropout)


# ------------------------------------------------------------------------------------------ WideResNet


class SameConv(SameConv2d):
    """Conv2d with TensorFlow/Keras 'same' padding and no bias (the WideResNet's convolutions)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1) -> None:
        super().__init__(cin, cout, k, stride, bias=False)


class SameAvgPool(nn.Module):
    """Keras AveragePooling2D(pool, strides=1, padding='same'): padded cells are left out of each mean."""

    def __init__(self, pool: int) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.pool - 1
        pads = [total // 2, total - total // 2, total // 2, total - total // 2]
        summed = F.avg_pool2d(F.pad(x, pads), self.pool, 1, divisor_override=1)
        ones = F.pad(torch.ones_like(x[:1, :1]), pads)
        count = F.avg_pool2d(ones, self.pool, 1, divisor_override=1)
        return summed / count


class WideBasic(nn.Module):
    """The Keras project's _wide_basic block (pre-activation, two 3x3 convs, 1x1 projection if needed)."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-3)
        self.conv1 = SameConv(cin, cout, 3, stride)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-3)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = SameConv(cout, cout, 3, 1)
        self.project = cin != cout
        self.short = SameConv(cin, cout, 1, stride) if self.project else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.bn1(x))
        y = self.conv2(self.drop(F.relu(self.bn2(self.conv1(a)))))
        # the Keras block projects the *activated* input when shapes change, the raw input otherwise
        return y + (self.short(a) if self.short is not None else x)


class WideResNet(nn.Module):
    """WRN-depth-k for small inputs; features flattened in NHWC order as Keras' Flatten does."""

    def __init__(self, depth: int = 16, k: int = 8, dropout: float = 0.0, pool: int = 8) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        self.conv1 = SameConv(3, 16, 3, 1)
        blocks: list[nn.Module] = []
        cin = 16
        for cout, stride in ((16 * k, 1), (32 * k, 2), (64 * k, 2)):
            for j in range(n):
                blocks.append(WideBasic(cin, cout, stride if j == 0 else 1, dropout))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin, eps=1e-3)
        self.pool = SameAvgPool(pool)
        self.channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(F.relu(self.bn(self.blocks(self.conv1(x)))))
        return y.permute(0, 2, 3, 1).flatten(1)


@register_backbone("wrn")
def _wrn(num_ages: int = 101, depth: int = 16, width: int = 8, dropout: float = 0.0, input_size: int = 64,
         pool: int = 8) -> AgeGenderNet:
    body = WideResNet(depth, width, dropout, pool)
    side = -(-input_size // 4)
    return AgeGenderNet(body, side * side * body.channels, num_ages, 0.0, head_bias=False)
