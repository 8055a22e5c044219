"""Layers that reproduce TensorFlow's 'SAME' padding exactly, for networks imported from Keras and TF.js.

TensorFlow pads 'SAME' so that the output has ceil(size / stride) cells, putting the odd extra pixel on the
right and bottom; PyTorch's symmetric `padding=` cannot express that for stride 2 on even sizes, so these
layers pad explicitly from the input's shape (fixed per input size, which ONNX export bakes in).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) pixels TF 'SAME' pads on an axis of `size` cells for this kernel and stride."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def same_pads(x: torch.Tensor, kernel: int, stride: int) -> list[int]:
    """F.pad's [left, right, top, bottom] for an (N, C, H, W) input, as plain ints: an exported graph gets
    constant pads (fixed for its input size) that ONNX Runtime folds into the convolution."""
    h, w = int(x.shape[2]), int(x.shape[3])
    return [*same_padding(w, kernel, stride), *same_padding(h, kernel, stride)]


class SameConv2d(nn.Conv2d):
    """Conv2d (square kernel, optional groups and bias) with TF 'SAME' padding."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, bias: bool = True) -> None:
        super().__init__(cin, cout, k, stride, padding=0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = same_pads(x, self.kernel_size[0], self.stride[0])
        return super().forward(F.pad(x, pads) if any(pads) else x)


class SameMaxPool2d(nn.Module):
    """MaxPool2d with TF 'SAME' padding (padded cells never win)."""

    def __init__(self, k: int, stride: int) -> None:
        super().__init__()
        self.k, self.stride = k, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = same_pads(x, self.k, self.stride)
        if any(pads):
            x = F.pad(x, pads, value=float("-inf"))
        return F.max_pool2d(x, self.k, self.stride)
