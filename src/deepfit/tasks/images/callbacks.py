"""The image task's own callback: train only the head for the first epochs of a fine-tuning run."""

from __future__ import annotations

from typing import Any

import torch

from deepfit.engine.callbacks import Callback

__all__ = ["FreezeFirst"]


class FreezeFirst(Callback):
    """Train only the head (and the table encoder) for the first ``epochs`` epochs, then everything.

    While frozen, the backbone's BatchNorm layers stay in eval mode (``frozen_bn``): their running
    statistics do not move, so the head learns on the features the pretrained network computes.

    Args:
        model: the model whose layer groups are frozen (:func:`deepfit.models.resnet.freeze`).
        epochs: how many epochs train the last layer group only.
    """

    def __init__(self, model: torch.nn.Module, epochs: int) -> None:
        self.model, self.epochs = model, epochs

    def on_epoch_start(self, learner: Any) -> None:
        from deepfit.models.resnet import freeze, unfreeze

        frozen = learner.epoch < self.epochs
        if frozen:
            freeze(self.model, keep=1)
        else:
            unfreeze(self.model)
        for m in self.model.modules():
            if hasattr(m, "frozen_bn"):
                m.frozen_bn = frozen
