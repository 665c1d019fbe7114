"""Loss functions by name."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from deepfit.errors import ConfigError, unknown_choice

__all__ = ["get_loss", "LOSSES", "infer_loss"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _bce(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(output.reshape(target.shape), target.float())


def _mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(output.reshape(target.shape), target.float())


def _l1(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(output.reshape(target.shape), target.float())


def _huber(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.huber_loss(output.reshape(target.shape), target.float())


LOSSES: dict[str, LossFn] = {
    "cross_entropy": F.cross_entropy,
    "bce": _bce,
    "mse": _mse,
    "l1": _l1,
    "mae": _l1,
    "huber": _huber,
}


def get_loss(loss: str | LossFn, *, label_smoothing: float = 0.0) -> LossFn:
    """A loss by name (``"cross_entropy"``, ``"bce"``, ``"mse"``, ``"l1"``, ``"huber"``) or as given.

    Example:
        >>> import torch
        >>> f = get_loss("mse")
        >>> float(f(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 1.0])))
        2.0
    """
    if callable(loss):
        return loss
    if not isinstance(loss, str):
        raise ConfigError(f"loss must be a name or a callable, got {loss!r}")
    key = loss.lower()
    if key not in LOSSES:
        raise unknown_choice("loss", loss, LOSSES)
    if key == "cross_entropy" and label_smoothing:
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")

        def smoothed(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(output, target, label_smoothing=label_smoothing)

        return smoothed
    return LOSSES[key]


def infer_loss(target: torch.Tensor) -> str:
    """``cross_entropy`` for integer targets, ``mse`` for float targets."""
    if target.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        return "cross_entropy"
    if target.dtype == torch.bool:
        return "bce"
    return "mse"
