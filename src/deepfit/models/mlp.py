"""A plain multilayer perceptron with normalised inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from deepfit.errors import ConfigError

__all__ = ["MLP"]


class MLP(nn.Module):
    """``in_features → hidden... → out_features`` with ReLU, optional dropout and input scaling.

    Args:
        in_features: input width.
        out_features: output width (classes, or targets).
        hidden: widths of the hidden layers.
        dropout: dropout after each hidden activation.
        mean, std: per-feature input statistics (from the training data), stored as buffers so
            the model is self-contained: raw inputs in, predictions out.

    Example:
        >>> import torch
        >>> MLP(8, 3, hidden=(16,))(torch.randn(5, 8)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        hidden: Sequence[int] = (256, 256),
        dropout: float = 0.0,
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ConfigError(f"MLP needs positive widths, got in={in_features}, out={out_features}")
        self.register_buffer("mean", torch.zeros(in_features) if mean is None else mean.float().clone())
        # Constant features (std 0 in training) are left unscaled rather than blown up.
        std = torch.ones(in_features) if std is None else torch.where(std > 1e-6, std.float(), torch.ones(()))
        self.register_buffer("std", std.clone())
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1).float()  # (B, in_features)
        return self.net((x - self.mean) / self.std)  # (B, out_features)
