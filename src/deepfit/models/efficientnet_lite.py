"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant for mobile CPUs) in plain PyTorch.

The Lite variant of EfficientNet-B0 drops what is slow or awkward on CPUs and in int8: no
squeeze-and-excitation, ReLU6 instead of swish, and a fixed stem (32) and head (1280) width.
What remains is a stack of 16 inverted-residual blocks ("MBConv"):

    1x1 expand conv (x6; not in the first block) -> BN -> ReLU6
    kxk depthwise conv (stride 1 or 2)            -> BN -> ReLU6
    1x1 project conv                              -> BN            (+ input, when shape allows)

The published weights were trained in TensorFlow, so two details follow TensorFlow, not PyTorch:
convolutions use TF "same" padding (for a stride-2 conv on an even input side the extra pixel
goes on the right/bottom: :class:`SameConv2d`) and BatchNorm uses ``eps=1e-3``.

Parameter names are deepfit's own (``stem.conv``, ``blocks.3.depthwise.bn``, ``top.conv``,
``head``); :mod:`deepfit.pretrained.efficientnet` maps the published names onto them.
The interface is that of the other image backbones (:mod:`deepfit.models.resnet`):
``features(x) -> (B, 1280)``, a replaceable ``head`` (a Linear; ``n_outputs=0`` for none),
``config()``, ``layer_groups()`` (stem, 7 stages, top, head) for freezing and discriminative
learning rates, and ``frozen_bn``: when set, BatchNorm layers whose parameters are frozen stay in
eval mode during training (their running statistics do not move).

Example:
    >>> import torch
    >>> net = EfficientNetLite0(n_outputs=10)
    >>> net(torch.randn(2, 3, 64, 64)).shape
    torch.Size([2, 10])
    >>> sum(p.numel() for p in EfficientNetLite0(n_outputs=1000).parameters())
    4652008
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepfit.errors import ConfigError
from deepfit.models.resnet import keep_bn_frozen

__all__ = ["EfficientNetLite0", "SameConv2d", "STAGES", "BN_EPS"]

BN_EPS = 1e-3  # TensorFlow's default (PyTorch's is 1e-5): the weights were trained with it

# (expansion, kernel, stride of the first block, output channels, blocks) per stage: EfficientNet-B0's.
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM, TOP = 32, 1280


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "same" padding of one side of length ``size``: (before, after); the odd pixel goes after."""
    out = -(-size // stride)  # ceil
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A bias-free ``Conv2d`` with TensorFlow "same" padding, computed from the input's size.

    With stride 1 (odd kernel) that is the symmetric ``kernel // 2`` PyTorch pads by itself; with
    stride 2 it depends on whether the side is even (asymmetric) or odd (symmetric).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, *, stride: int = 1, groups: int = 1) -> None:
        pad = kernel // 2 if stride == 1 else 0
        super().__init__(c_in, c_out, kernel, stride=stride, padding=pad, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        k, s = self.kernel_size[0], self.stride[0]
        top, bottom = same_padding(x.shape[-2], k, s)
        left, right = same_padding(x.shape[-1], k, s)
        return super().forward(F.pad(x, (left, right, top, bottom)))


class ConvBN(nn.Module):
    """``SameConv2d`` -> BatchNorm (eps 1e-3) -> ReLU6 (unless ``act=False``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, *, stride: int = 1, groups: int = 1,
                 act: bool = True) -> None:
        super().__init__()
        self.conv = SameConv2d(c_in, c_out, kernel, stride=stride, groups=groups)
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.act else x


class MBConv(nn.Module):
    """Inverted residual without squeeze-excitation: expand (1x1) -> depthwise (kxk) -> project (1x1)."""

    def __init__(self, c_in: int, c_out: int, *, expansion: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = c_in * expansion
        self.expand = ConvBN(c_in, mid) if expansion != 1 else None
        self.depthwise = ConvBN(mid, mid, kernel, stride=stride, groups=mid)
        self.project = ConvBN(mid, c_out, act=False)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        h = self.expand(x) if self.expand is not None else x  # (B, C*e, H, W)
        h = self.project(self.depthwise(h))  # (B, C_out, H/s, W/s)
        return x + h if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (see the module docstring); 4.65 M parameters with a 1000-class head.

    Args:
        n_outputs: classes (0: no head; ``forward`` returns the 1280 pooled features).
        dropout: before the head (the published model: 0.2).
        channels_last: keep activations NHWC.
    """

    name = "efficientnet_lite0"

    def __init__(self, n_outputs: int, *, dropout: float = 0.2, channels_last: bool = False) -> None:
        super().__init__()
        if n_outputs < 0:
            raise ConfigError(f"n_outputs must be >= 0 (0 = features only), got {n_outputs}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.n_outputs, self.dropout_p, self.channels_last = n_outputs, dropout, channels_last
        self.frozen_bn = False
        self.stem = ConvBN(3, STEM, 3, stride=2)  # (B, 3, H, W) -> (B, 32, H/2, W/2)
        blocks, self.stage_ends, c = [], [], STEM
        for expansion, kernel, stride, width, repeats in STAGES:
            for j in range(repeats):
                blocks.append(MBConv(c, width, expansion=expansion, kernel=kernel, stride=stride if j == 0 else 1))
                c = width
            self.stage_ends.append(len(blocks))
        self.blocks = nn.ModuleList(blocks)  # -> (B, 320, H/32, W/32)
        self.top = ConvBN(c, TOP)  # -> (B, 1280, H/32, W/32)
        self.n_features = TOP
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(TOP, n_outputs) if n_outputs else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def body(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # (B, 32, H/2, W/2)
        for block in self.blocks:
            x = block(x)
        return self.top(x)  # (B, 1280, H/32, W/32)

    def features(self, x: Tensor) -> Tensor:
        """Pooled features ``(B, 1280)`` of a normalised float batch ``(B, 3, H, W)``."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.body(x).mean(dim=(2, 3))  # (B, 1280): global average pool

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.drop(self.features(x)))  # (B, n_outputs)

    def train(self, mode: bool = True) -> EfficientNetLite0:
        """As ``nn.Module.train``; with ``frozen_bn``, BatchNorm layers with frozen parameters stay in eval mode."""
        super().train(mode)
        if mode and self.frozen_bn:
            keep_bn_frozen(self)
        return self

    def config(self) -> dict[str, Any]:
        return {"dropout": self.dropout_p, "channels_last": self.channels_last}

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Stem, the 7 stages, the top 1x1 conv, the head: from input to output."""
        groups, start = [list(self.stem.parameters())], 0
        for end in self.stage_ends:
            groups.append([p for b in self.blocks[start:end] for p in b.parameters()])
            start = end
        return [*groups, list(self.top.parameters()), list(self.head.parameters())]

