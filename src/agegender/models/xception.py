"""TinyXception backbone as face-api.js lays it out (its `ageGenderNet`), for import from TF.js weights.

Entry flow: 3x3 stride-2 conv (32) + ReLU, two reduction blocks (64, 128); middle flow: `main_blocks`
residual blocks of three separable convs (128); exit flow: a reduction block (256) and a separable conv
(512) + ReLU; then a 7x7 stride-2 'valid' average pool, which at face-api's 112x112 input is the global
mean of the 7x7 map. Separable conv = 3x3 depthwise (no bias) then 1x1 pointwise with bias, TF 'SAME'
padding. face-api reads age by regression (one output, years) and gender as a [male, female] softmax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .nets import AgeGenderNet, register_backbone
from .tf_layers import SameConv2d, SameMaxPool2d


class SeparableConv(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.dw = SameConv2d(cin, cin, 3, 1, groups=cin, bias=False)
        self.pw = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class ReductionBlock(nn.Module):
    """[ReLU] sep conv, ReLU, sep conv, 3x3 stride-2 max pool, plus a 1x1 stride-2 conv of the block's input."""

    def __init__(self, cin: int, cout: int, activate_input: bool = True) -> None:
        super().__init__()
        self.activate_input = activate_input
        self.sep0 = SeparableConv(cin, cout)
        self.sep1 = SeparableConv(cout, cout)
        self.pool = SameMaxPool2d(3, 2)
        self.expand = nn.Conv2d(cin, cout, 1, 2)  # 1x1 stride 2: TF 'SAME' pads nothing here

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(x) if self.activate_input else x
        y = self.pool(self.sep1(F.relu(self.sep0(y))))
        return y + self.expand(x)


class MainBlock(nn.Module):
    """Three (ReLU, sep conv) steps plus the identity."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(SeparableConv(c, c) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for conv in self.convs:
            y = conv(F.relu(y))
        return y + x


class TinyXception(nn.Module):
    """(N, 3, S, S) -> (N, 512 * cells) pooled features (512 at S = 112)."""

    def __init__(self, main_blocks: int = 2) -> None:
        super().__init__()
        self.conv_in = SameConv2d(3, 32, 3, 2)
        self.entry = nn.Sequential(ReductionBlock(32, 64, activate_input=False), ReductionBlock(64, 128))
        self.middle = nn.Sequential(*(MainBlock(128) for _ in range(main_blocks)))
        self.exit_block = ReductionBlock(128, 256)
        self.exit_conv = SeparableConv(256, 512)
        self.out_features = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.exit_block(self.middle(self.entry(F.relu(self.conv_in(x)))))
        y = F.relu(self.exit_conv(y))
        return F.avg_pool2d(y, 7, 2).flatten(1)


@register_backbone("tiny_xception")
def _tiny_xception(num_ages: int = 101, main_blocks: int = 2, age_regression: bool = True) -> AgeGenderNet:
    body = TinyXception(main_blocks)
    return AgeGenderNet(body, body.out_features, num_ages, age_regression=age_regression)
