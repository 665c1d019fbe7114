"""Image backbones: a ResNet family with the "bag of tricks" tweaks, and a small fast CNN.

``ResNet`` follows He et al. 2016 with the ResNet-D changes of Bag of Tricks (He et al. 2019):

* stem of three 3x3 convolutions (the first with stride 2) instead of one 7x7;
* downsampling shortcuts average-pool first (2x2, stride 2), then a stride-1 1x1 conv, so the
  shortcut sees every pixel;
* in bottleneck blocks the stride sits on the 3x3 conv, not the first 1x1;
* the last BatchNorm of every residual branch starts with gamma = 0, so each block starts as
  the identity and deep nets train like shallow ones at first.

``resnet18``/``resnet34`` use basic blocks (2-2-2-2 and 3-4-6-3), ``resnet50`` bottlenecks
(3-4-6-3, 4x expansion). ``stem_stride`` (4 = the classic stride-2 stem + max-pool) can be
lowered to 2 or 1 for small images. ``SmallCNN`` is for tiny images (<= 32 px): three stages of
two 3x3 conv-BN-ReLU with max-pool between, global average pool, linear head — about 0.3 M
parameters at the default widths.

Every backbone has ``features(x) -> (B, n_features)`` and ``head`` (a Linear), ``forward =
head(dropout(features))``, ``config()`` (plain JSON for the artifact) and ``layer_groups()``
(parameter groups from input to output, for discriminative learning rates and freezing).
Weights load from a local safetensors file (:func:`load_weights`), so transfer learning needs
no network.

Example:
    >>> import torch
    >>> net = resnet18(n_outputs=10, widths=(16, 32, 64, 128), stem_width=16)
    >>> net(torch.randn(2, 3, 64, 64)).shape
    torch.Size([2, 10])
    >>> SmallCNN(n_outputs=10)(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from deepfit.errors import ConfigError, DataError

__all__ = ["ResNet", "SmallCNN", "resnet18", "resnet34", "resnet50", "build_backbone", "BACKBONES",
           "load_weights", "freeze", "unfreeze", "keep_bn_frozen", "discriminative_groups"]


def _conv_bn(c_in: int, c_out: int, *, kernel: int = 3, stride: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
                               nn.BatchNorm2d(c_out)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    """Identity, or (ResNet-D) average-pool then a 1x1 conv + BN."""
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    layers: list[nn.Module] = []
    if stride > 1:
        layers.append(nn.AvgPool2d(stride, stride=stride, ceil_mode=True, count_include_pad=False))
    layers += [nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 convs; the residual branch's last BN starts at gamma = 0."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.branch = nn.Sequential(_conv_bn(c_in, width, stride=stride), _conv_bn(width, c_out, act=False))
        nn.init.zeros_(self.branch[-1][1].weight)
        self.shortcut = _shortcut(c_in, c_out, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.branch(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand (x4); last BN starts at gamma = 0."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.branch = nn.Sequential(_conv_bn(c_in, width, kernel=1), _conv_bn(width, width, stride=stride),
                                    _conv_bn(width, c_out, kernel=1, act=False))
        nn.init.zeros_(self.branch[-1][1].weight)
        self.shortcut = _shortcut(c_in, c_out, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.branch(x) + self.shortcut(x))


class _Backbone(nn.Module):
    """Shared plumbing: head, dropout, channels-last, layer groups."""

    name: str
    head: nn.Linear
    n_features: int

    frozen_bn = False  # True: BatchNorm layers with frozen parameters stay in eval mode in train()

    def train(self, mode: bool = True) -> _Backbone:
        super().train(mode)
        if mode and self.frozen_bn:
            keep_bn_frozen(self)
        return self

    def _finish(self, n_outputs: int, dropout: float, channels_last: bool) -> None:
        if n_outputs < 0:
            raise ConfigError(f"n_outputs must be >= 0 (0 = features only), got {n_outputs}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.n_outputs, self.dropout_p, self.channels_last = n_outputs, dropout, channels_last
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(self.n_features, n_outputs) if n_outputs else nn.Identity()  # type: ignore[assignment]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def body(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, F, h, w)
        raise NotImplementedError

    def features(self, x: Tensor) -> Tensor:
        """Pooled features ``(B, n_features)`` of a normalised float batch ``(B, C, H, W)``."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.body(x).mean(dim=(2, 3))  # (B, F): global average pool

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.drop(self.features(x)))  # (B, n_outputs)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters from input to output in groups (stem, stages..., head)."""
        raise NotImplementedError


class ResNet(_Backbone):
    """ResNet-D (see the module docstring).

    Args:
        n_outputs: classes (0: no head; ``forward`` returns the features).
        depths: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        block: ``"basic"`` or ``"bottleneck"``.
        widths: width of each stage (bottleneck output is 4x).
        stem_width: channels of the stem's first two convs (the third has ``widths[0]``).
        stem_stride: 4 (stride-2 conv + max-pool), 2 (no max-pool) or 1 (for tiny images).
        in_channels: 3 for RGB.
        dropout: before the head.
        channels_last: keep activations NHWC (faster convolutions on most CPUs and GPUs).
    """

    def __init__(self, n_outputs: int, *, depths: tuple[int, ...] = (2, 2, 2, 2), block: str = "basic",
                 widths: tuple[int, ...] = (64, 128, 256, 512), stem_width: int = 32, stem_stride: int = 4,
                 in_channels: int = 3, dropout: float = 0.0, channels_last: bool = False) -> None:
        super().__init__()
        if block not in ("basic", "bottleneck"):
            raise ConfigError(f"block must be 'basic' or 'bottleneck', got {block!r}")
        if len(depths) != len(widths) or not depths or min(depths) < 1 or min(widths) < 1:
            raise ConfigError(f"depths and widths need one positive entry per stage, got {depths} and {widths}")
        if stem_stride not in (1, 2, 4):
            raise ConfigError(f"stem_stride must be 1, 2 or 4, got {stem_stride}")
        self.name = "resnet"
        self.depths, self.block, self.widths = tuple(depths), block, tuple(widths)
        self.stem_width, self.stem_stride, self.in_channels = stem_width, stem_stride, in_channels
        cls = BasicBlock if block == "basic" else Bottleneck
        s1 = 2 if stem_stride >= 2 else 1
        stem: list[nn.Module] = [_conv_bn(in_channels, stem_width, stride=s1), _conv_bn(stem_width, stem_width),
                                 _conv_bn(stem_width, widths[0])]
        if stem_stride == 4:
            stem.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        stages, c = [], widths[0]
        for i, (depth, width) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                blocks.append(cls(c, width, 2 if (j == 0 and i > 0) else 1))
                c = width * cls.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.n_features = c
        self._finish(n_outputs, dropout, channels_last)

    def body(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))  # (B, C, H, W) -> (B, F, H/(stride*2^(n-1)), ...)

    def config(self) -> dict[str, Any]:
        return {"depths": list(self.depths), "block": self.block, "widths": list(self.widths),
                "stem_width": self.stem_width, "stem_stride": self.stem_stride, "in_channels": self.in_channels,
                "dropout": self.dropout_p, "channels_last": self.channels_last}

    def layer_groups(self) -> list[list[nn.Parameter]]:
        return [list(self.stem.parameters()), *(list(s.parameters()) for s in self.stages), list(self.head.parameters())]


class SmallCNN(_Backbone):
    """A small fast CNN for tiny images: ``len(widths)`` stages of two 3x3 conv-BN-ReLU, 2x2 max-pool
    between stages, global average pool, linear head.

    Args:
        n_outputs: classes (0: no head).
        widths: channels per stage.
        in_channels: 3 for RGB.
        stem_stride: 2 halves the resolution in the first conv (cheap for upscaled tiny images).
        dropout: before the head.
        channels_last: keep activations NHWC.
    """

    def __init__(self, n_outputs: int, *, widths: tuple[int, ...] = (32, 64, 128), in_channels: int = 3,
                 stem_stride: int = 1, dropout: float = 0.0, channels_last: bool = False) -> None:
        super().__init__()
        if not widths or min(widths) < 1:
            raise ConfigError(f"widths need one positive entry per stage, got {widths}")
        if stem_stride not in (1, 2):
            raise ConfigError(f"stem_stride must be 1 or 2, got {stem_stride}")
        self.name = "small_cnn"
        self.widths, self.in_channels, self.stem_stride = tuple(widths), in_channels, stem_stride
        stages, c = [], in_channels
        for i, width in enumerate(widths):
            layers: list[nn.Module] = [nn.MaxPool2d(2)] if i > 0 else []
            layers += [_conv_bn(c, width, stride=stem_stride if i == 0 else 1), _conv_bn(width, width)]
            stages.append(nn.Sequential(*layers))
            c = width
        self.stages = nn.Sequential(*stages)
        self.n_features = c
        self._finish(n_outputs, dropout, channels_last)

    def body(self, x: Tensor) -> Tensor:
        return self.stages(x)  # (B, C, H, W) -> (B, F, H / 2^(n-1), W / 2^(n-1))

    def config(self) -> dict[str, Any]:
        return {"widths": list(self.widths), "in_channels": self.in_channels, "stem_stride": self.stem_stride,
                "dropout": self.dropout_p, "channels_last": self.channels_last}

    def layer_groups(self) -> list[list[nn.Parameter]]:
        return [*(list(s.parameters()) for s in self.stages), list(self.head.parameters())]


def resnet18(n_outputs: int, **kwargs: Any) -> ResNet:
    """ResNet-18-D: basic blocks 2-2-2-2."""
    return ResNet(n_outputs, depths=(2, 2, 2, 2), block="basic", **kwargs)


def resnet34(n_outputs: int, **kwargs: Any) -> ResNet:
    """ResNet-34-D: basic blocks 3-4-6-3."""
    return ResNet(n_outputs, depths=(3, 4, 6, 3), block="basic", **kwargs)


def resnet50(n_outputs: int, **kwargs: Any) -> ResNet:
    """ResNet-50-D: bottleneck blocks 3-4-6-3."""
    return ResNet(n_outputs, depths=(3, 4, 6, 3), block="bottleneck", **kwargs)


BACKBONES = {"resnet": ResNet, "small_cnn": SmallCNN}


def build_backbone(name: str, n_outputs: int, config: dict[str, Any]) -> _Backbone:
    """Rebuild a backbone from its ``name`` and ``config()`` (e.g. from an artifact's JSON);
    ``"efficientnet_lite0"`` is :class:`deepfit.models.efficientnet_lite.EfficientNetLite0`."""
    if name == "efficientnet_lite0":
        from deepfit.models.efficientnet_lite import EfficientNetLite0

        return EfficientNetLite0(n_outputs, **config)  # type: ignore[return-value]
    if name not in BACKBONES:
        raise ConfigError(f"unknown image backbone {name!r}; deepfit knows {', '.join(BACKBONES)}")
    cfg = dict(config)
    for key in ("depths", "widths"):
        if key in cfg:
            cfg[key] = tuple(cfg[key])
    return BACKBONES[name](n_outputs, **cfg)


def load_weights(model: nn.Module, path: str | os.PathLike, *, prefix: str = "", skip_mismatched: bool = True
                 ) -> dict[str, list[str]]:
    """Load weights from a local ``.safetensors`` file into ``model`` (transfer learning, no network).

    Tensors are matched by name (after stripping ``prefix`` from the file's names). With
    ``skip_mismatched`` (default), tensors whose shape differs — typically the head, when the
    number of classes changes — are left at their fresh initialisation; otherwise that is an
    error. Returns ``{"loaded": [...], "skipped": [...], "missing": [...]}`` (names).

    Example:
        >>> import tempfile, torch                                         # doctest: +SKIP
        >>> from safetensors.torch import save_file                         # doctest: +SKIP
        >>> save_file(resnet18(10).state_dict(), "r18.safetensors")         # doctest: +SKIP
        >>> load_weights(resnet18(3), "r18.safetensors")["skipped"]         # doctest: +SKIP
        ['head.weight', 'head.bias']
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise DataError(f"weights file {path} does not exist; pass a local .safetensors file")
    try:
        weights = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(f"{path} is not a readable safetensors file: {e}") from e
    if prefix:
        weights = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    own = model.state_dict()
    loaded, skipped = [], []
    update = {}
    for name, tensor in weights.items():
        if name not in own:
            continue
        if own[name].shape != tensor.shape:
            if not skip_mismatched:
                raise DataError(f"{path}: tensor {name!r} has shape {tuple(tensor.shape)}, the model needs "
                                f"{tuple(own[name].shape)}; pass skip_mismatched=True to keep it fresh")
            skipped.append(name)
            continue
        update[name] = tensor
        loaded.append(name)
    if not loaded:
        raise DataError(f"{path} holds no tensor matching this model's names (e.g. {next(iter(own), '')!r}); "
                        f"is it the right architecture, or does it need prefix=...?")
    model.load_state_dict(update, strict=False)
    missing = [k for k in own if k not in update and k not in skipped]
    return {"loaded": loaded, "skipped": skipped, "missing": missing}


def freeze(model: nn.Module, *, keep: int = 1) -> None:
    """Stop gradients to every layer group but the last ``keep`` (default: train the head only).

    BatchNorm layers of frozen groups keep updating their statistics in train mode unless the
    backbone's ``frozen_bn`` is set (:class:`~deepfit.tasks.images.callbacks.FreezeFirst` sets it).
    Works on any module with ``layer_groups()``.
    """
    groups = _groups(model)
    if not 0 <= keep <= len(groups):
        raise ConfigError(f"keep must be in 0..{len(groups)}, got {keep}")
    for i, params in enumerate(groups):
        for p in params:
            p.requires_grad_(i >= len(groups) - keep)


def keep_bn_frozen(model: nn.Module) -> None:
    """Put every BatchNorm whose parameters do not train into eval mode: its running statistics stay
    as they are (a backbone with ``frozen_bn`` set calls this from ``train()``)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None and not m.weight.requires_grad:
            m.eval()


def unfreeze(model: nn.Module) -> None:
    """Train every parameter again."""
    for p in model.parameters():
        p.requires_grad_(True)


def discriminative_groups(model: nn.Module, *, lr_ratio: float = 0.1, weight_decay: float = 0.0
                          ) -> list[dict[str, Any]]:
    """Optimizer parameter groups whose ``lr_scale`` grows geometrically from ``lr_ratio`` (first
    layer group) to 1 (head): pretrained early layers move slowly. ``Learner`` multiplies each
    group's learning rate by its ``lr_scale`` at every step. Biases and norm gains get no decay.
    Frozen parameters are included (they simply have no gradient) so :func:`unfreeze` works
    without rebuilding the optimizer.

    Example:
        >>> [round(g["lr_scale"], 3) for g in discriminative_groups(SmallCNN(10), lr_ratio=0.01)][::2]
        [0.01, 0.046, 0.215, 1.0]
    """
    if not 0 < lr_ratio <= 1:
        raise ConfigError(f"lr_ratio must be in (0, 1], got {lr_ratio}")
    groups = _groups(model)
    n = len(groups)
    out = []
    for i, params in enumerate(groups):
        scale = lr_ratio ** ((n - 1 - i) / max(n - 1, 1))
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        if decay:
            out.append({"params": decay, "weight_decay": weight_decay, "lr_scale": scale})
        if no_decay:
            out.append({"params": no_decay, "weight_decay": 0.0, "lr_scale": scale})
    return out


def _groups(model: nn.Module) -> list[list[nn.Parameter]]:
    if not hasattr(model, "layer_groups"):
        raise ConfigError(f"{type(model).__name__} has no layer_groups(); freeze/discriminative LRs need one")
    groups = [g for g in model.layer_groups() if g]
    seen = {id(p) for g in groups for p in g}
    rest = [p for p in model.parameters() if id(p) not in seen]
    if rest:  # parameters outside the listed groups train with the head
        groups[-1] = [*groups[-1], *rest]
    return groups
