"""Batched augmentation of signals: random shift, amplitude scale and Gaussian noise.

Everything is drawn per sample but computed for the whole batch at once on the batch's device
(no per-sample Python). Randomness comes from torch's generator for that device (or one you
pass), which ``Learner`` seeds and stores in checkpoints, so augmented runs are reproducible and
resume exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from deepfit.errors import ConfigError

__all__ = ["SignalAugment", "Augmented"]


class SignalAugment(nn.Module):
    """Random shift with zero padding, amplitude scaling and additive Gaussian noise.

    For each sample ``b`` of a ``(B, C, L)`` or ``(B, L)`` batch, with ``s_b`` uniform on the
    integers ``[-max_shift, max_shift]``, ``a_b`` uniform on ``scale`` and ``n`` standard normal::

        out[b, c, t] = a_b * x[b, c, t - s_b] + noise * n[b, c, t]    (x = 0 outside [0, L))

    All channels of a sample share its shift and scale. The module always augments when called;
    wrap the model in :class:`Augmented` to apply it in training mode only.

    Args:
        max_shift: largest shift in samples (0 turns shifting off).
        scale: ``(low, high)`` range of the amplitude factor (``(1, 1)`` turns it off).
        noise: standard deviation of the noise, in input units (0 turns it off).
        generator: a ``torch.Generator`` on the data's device; default: torch's global one.

    Example:
        >>> import torch
        >>> aug = SignalAugment(max_shift=5, scale=(0.8, 1.2), noise=0.05)
        >>> aug(torch.randn(8, 40)).shape
        torch.Size([8, 40])
    """

    def __init__(
        self,
        *,
        max_shift: int = 5,
        scale: tuple[float, float] = (0.8, 1.2),
        noise: float = 0.05,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(max_shift, int) or max_shift < 0:
            raise ConfigError(f"max_shift must be a non-negative int, got {max_shift!r}")
        if len(scale) != 2 or not 0 <= scale[0] <= scale[1]:
            raise ConfigError(f"scale must be (low, high) with 0 <= low <= high, got {scale!r}")
        if noise < 0:
            raise ConfigError(f"noise must be >= 0, got {noise}")
        self.max_shift = max_shift
        self.scale = (float(scale[0]), float(scale[1]))
        self.noise = float(noise)
        self.generator = generator

    def extra_repr(self) -> str:
        return f"max_shift={self.max_shift}, scale={self.scale}, noise={self.noise}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (2, 3):
            raise ConfigError(f"SignalAugment expects (B, L) or (B, C, L), got shape {tuple(x.shape)}")
        squeeze = x.dim() == 2
        if squeeze:
            x = x.unsqueeze(1)  # (B, L) → (B, 1, L)
        x = x.float()
        B, C, L = x.shape
        g, dev = self.generator, x.device
        if self.max_shift:
            s = self.max_shift
            shift = torch.randint(-s, s + 1, (B, 1, 1), device=dev, generator=g)  # (B, 1, 1)
            # Pad s zeros on both sides, then read position t - shift + s of the padded signal:
            # always inside it, so one gather does every sample's shift.
            padded = nn.functional.pad(x, (s, s))  # (B, C, L + 2s)
            index = torch.arange(L, device=dev).view(1, 1, L) - shift + s  # (B, 1, L)
            x = padded.gather(2, index.expand(B, C, L))  # (B, C, L)
        low, high = self.scale
        if high > low or low != 1.0:
            amp = torch.rand((B, 1, 1), device=dev, generator=g) * (high - low) + low  # (B, 1, 1)
            x = x * amp
        if self.noise:
            x = x + self.noise * torch.randn(x.shape, device=dev, generator=g)  # (B, C, L)
        return x.squeeze(1) if squeeze else x


class Augmented(nn.Module):
    """``model(augment(x))`` in training mode, ``model(x)`` in eval mode.

    The augmentation holds no parameters or buffers (checked), so the state dict is exactly the
    inner model's with a ``model.`` prefix; ``.model`` is the bare model to save or deploy.
    A wrapper rather than a forward hook so the augmentation is visible in ``print(model)``
    and the bare model stays free of training-only code.

    Args:
        model: the model to train.
        augment: a module or callable mapping an input batch to an augmented batch of the same
            shape.

    Example:
        >>> import torch
        >>> net = Augmented(torch.nn.Flatten(), SignalAugment())
        >>> net.eval()(torch.ones(2, 3, 4)).sum().item()
        24.0
    """

    def __init__(self, model: nn.Module, augment: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ConfigError(f"Augmented needs an nn.Module to wrap, got {type(model).__name__}")
        if isinstance(augment, nn.Module) and (any(True for _ in augment.parameters()) or any(True for _ in augment.buffers())):
            raise ConfigError("the augmentation must hold no parameters or buffers (it is not saved with the model)")
        self.model = model
        self.augment = augment

    def forward(self, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        if self.training:
            x = self.augment(x)
        return self.model(x, *rest)
