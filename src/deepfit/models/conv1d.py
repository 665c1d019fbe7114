"""A plain 1-D ResNet for signals and time series: raw ``(B, C, L)`` or ``(B, L)`` in, logits out.

Stem conv (kernel 5) → one basic residual block per stage (two kernel-3 convs with BatchNorm and
ReLU, a 1x1 projection on the shortcut when the shape changes) → global average pool → linear.
With the defaults (stages 64/64/128, strides 1/2/2) it has ~138k parameters; on MNIST-1D
(length 40) the stages see lengths 40, 20 and 10.

Why the convolutions are matmuls: the weights live in ordinary ``nn.Conv1d`` modules (so the
state dict is that of any 1-D ResNet), but the forward pass keeps activations as ``(B, L, C)``
and runs each convolution as one matrix product over the ``k`` shifted copies of its input
(``(B*L', k*C) @ (k*C, C_out)``), and BatchNorm on the ``(B*L, C)`` view. For these short
signals and narrow layers oneDNN's conv1d spends most of its time outside the arithmetic:
measured at one thread on the 2-core CPU machines (torch 2.13, batch 128, length 40), a training
step took 70-89 ms through ``nn.Conv1d`` and 46 ms this way, with outputs equal to float
rounding (checked in ``tests/models/test_conv1d.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepfit.errors import ConfigError

__all__ = ["ResNet1d", "BasicBlock1d"]


class BasicBlock1d(nn.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))`` with kernel-3 convs.

    The second BatchNorm's gain starts at zero, so every block starts as the identity (plus a
    projection where the shape changes): the network trains like a shallow one at first
    ("Bag of Tricks", He et al. 2019; Goyal et al. 2017).
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(out_channels)
        nn.init.zeros_(self.bn2.weight)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm1d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, L, C_in)`` (length before channels, see the module docstring)."""
        out = F.relu(_bn(_conv(x, self.conv1), self.bn1))  # (B, L', C_out), L' = ceil(L / stride)
        out = _bn(_conv(out, self.conv2), self.bn2)  # (B, L', C_out)
        if isinstance(self.shortcut, nn.Identity):
            short = x  # (B, L, C_in), here L' = L and C_in = C_out
        else:
            conv, bn = self.shortcut
            short = _bn(_conv(x, conv), bn)  # (B, L', C_out)
        return F.relu(out + short)  # (B, L', C_out)


class ResNet1d(nn.Module):
    """A 1-D ResNet classifier (or regressor) that takes raw signals.

    Args:
        in_channels: channels of the signal (1 for a ``(B, L)`` input).
        out_features: classes (or regression targets); 0 = no head (use :meth:`features`).
        widths: channels of each stage; the stem outputs ``widths[0]``.
        strides: stride of each stage's first conv (one entry per stage).
        stem_kernel: kernel size of the stem conv.
        mean, std: per-channel input statistics from the training data, shape ``(C,)`` or
            scalars, stored as buffers so raw signals go in.

    Example:
        >>> import torch
        >>> ResNet1d(1, 10)(torch.randn(4, 40)).shape
        torch.Size([4, 10])
    """

    def __init__(
        self,
        in_channels: int,
        out_features: int,
        *,
        widths: Sequence[int] = (64, 64, 128),
        strides: Sequence[int] = (1, 2, 2),
        stem_kernel: int = 5,
        mean: torch.Tensor | float | None = None,
        std: torch.Tensor | float | None = None,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_features < 0:
            raise ConfigError(f"ResNet1d needs positive sizes, got in_channels={in_channels}, out_features={out_features}")
        if not widths or len(widths) != len(strides):
            raise ConfigError(f"ResNet1d needs one stride per stage, got widths={tuple(widths)}, strides={tuple(strides)}")
        if stem_kernel < 1 or stem_kernel % 2 == 0:
            raise ConfigError(f"stem_kernel must be odd and positive (so 'same' padding exists), got {stem_kernel}")
        self.in_channels = in_channels
        mean_t = torch.zeros(in_channels) if mean is None else torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.ones(in_channels) if std is None else torch.as_tensor(std, dtype=torch.float32).flatten()
        # Constant channels (std 0) are left unscaled rather than blown up.
        std_t = torch.where(std_t > 1e-6, std_t, torch.ones(()))
        self.register_buffer("mean", mean_t.expand(in_channels).reshape(in_channels, 1).clone())  # (C, 1)
        self.register_buffer("std", std_t.expand(in_channels).reshape(in_channels, 1).clone())  # (C, 1)
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, widths[0], stem_kernel, padding=stem_kernel // 2, bias=False),
            nn.BatchNorm1d(widths[0]),
            nn.ReLU(),
        )
        blocks, width = [], widths[0]
        for w, s in zip(widths, strides):
            blocks.append(BasicBlock1d(width, w, stride=s))
            width = w
        self.blocks = nn.Sequential(*blocks)
        self.n_features = width
        self.head = nn.Linear(width, out_features) if out_features else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)  # (B, L) → (B, 1, L)
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ConfigError(f"ResNet1d expects (B, {self.in_channels}, L) or (B, L) for one channel, got {tuple(x.shape)}")
        x = ((x.float() - self.mean) / self.std).transpose(1, 2)  # (B, L, C)
        conv, bn, _ = self.stem
        x = F.relu(_bn(_conv(x, conv), bn))  # (B, L, W0)
        x = self.blocks(x)  # (B, L / prod(strides), W_last)
        return self.head(x.mean(1))  # (B, out_features)

    def features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled features ``(B, n_features)`` before the head; with ``mask`` (B, L) (1 = data,
        0 = padding) the average pool covers only the data positions (the mask is subsampled
        with the strides)."""
        if x.dim() == 2:
            x = x.unsqueeze(1)  # (B, L) → (B, 1, L)
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ConfigError(f"ResNet1d expects (B, {self.in_channels}, L) or (B, L) for one channel, "
                              f"got {tuple(x.shape)}")
        x = ((x.float() - self.mean) / self.std).transpose(1, 2)  # (B, L, C)
        conv, bn, _ = self.stem
        x = F.relu(_bn(_conv(x, conv), bn))  # (B, L, W0)
        x = self.blocks(x)  # (B, L', W_last)
        if mask is None:
            return x.mean(1)  # (B, W_last)
        m = mask.float()
        for block in self.blocks:
            stride = block.conv1.stride[0]
            m = m[:, ::stride]  # (B, L'): the positions a stride-s conv (padding 1, kernel 3) centres on
        w = m[:, : x.shape[1], None]  # (B, L', 1)
        return (x * w).sum(1) / w.sum(1).clamp(min=1.0)  # (B, W_last)


def _conv(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """``conv`` applied to a ``(B, L, C)`` input as one matmul; returns ``(B, L', C_out)``."""
    weight = conv.weight  # (C_out, C, k)
    c_out, c_in, k = weight.shape
    (stride,), (pad,) = conv.stride, conv.padding
    if k == 1 and pad == 0:
        return x[:, ::stride] @ weight.view(c_out, c_in).t()  # (B, L', C_out)
    length = x.shape[1] + 2 * pad - k + 1  # output length at stride 1
    x = F.pad(x, (0, 0, pad, pad))  # (B, L + 2 pad, C)
    # Column j of tap i is x[t * stride + i]: the k shifted views side by side.
    taps = torch.cat([x[:, i : i + length : stride] for i in range(k)], dim=-1)  # (B, L', k*C)
    return taps @ weight.permute(2, 1, 0).reshape(k * c_in, c_out)  # (B, L', C_out)


def _bn(x: torch.Tensor, bn: nn.BatchNorm1d) -> torch.Tensor:
    """``bn`` over the channels of a ``(B, L, C)`` input (statistics over B and L, as in Conv1d nets)."""
    b, length, c = x.shape
    return bn(x.reshape(b * length, c)).view(b, length, c)  # (B, L, C)
