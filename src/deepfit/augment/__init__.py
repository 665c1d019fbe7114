"""Data augmentation applied per batch on the device, inside training only."""

from deepfit.augment.signal import Augmented as Augmented
from deepfit.augment.signal import SignalAugment as SignalAugment

__all__ = ["Augmented", "SignalAugment"]
