"""The image task's own callback: train only the head for the first epochs of a fine-tuning run."""

from __future__ import annotations

from typing import Any

import torch

from deepfit.engine.callbacks import Callback

__all__ = ["FreezeFirst"]


class FreezeFirst(Callback):
    """Train only the head (and the table encoder) for the first ``epochs`` epochs, then everything.

    Args:
        model: the model whose layer groups are frozen (:func:`deepfit.models.resnet.freeze`).
        epochs: how many epochs train the last layer group only.
    """

    def __init__(self, model: torch.nn.Module, epochs: int) -> None:
        self.model, self.epochs = model, epochs

    def on_epoch_start(self, learner: Any) -> None:
        from deepfit.models.resnet import freeze, unfreeze

        if learner.epoch < self.epochs:
            freeze(self.model, keep=1)
        else:
            unfreeze(self.model)
